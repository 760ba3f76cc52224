package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	headless "github.com/oidc-session/oidc_session/internal/browser"
	"github.com/oidc-session/oidc_session/internal/testcaddy"
	"github.com/oidc-session/oidc_session/internal/testenv"
	"github.com/oidc-session/oidc_session/internal/testidp"
)

// chromeTokenTTL is Dex's token lifetime in the browser tests: short, so a
// refresh (in the last third of it) and the first token's expiry happen
// within a few seconds.
const chromeTokenTTL = 6 * time.Second

// chromePage is the protected page: the signed-in user, a sign-out link and
// (hidden) the access token the handler passes on, which changes when the
// tokens are refreshed.
const chromePage = "<!doctype html>\n" +
	`<html><head><title>oidc_session browser test</title></head>` +
	`<body style="font-family: sans-serif; margin: 2em">` +
	`<h1>Protected page</h1>` +
	`<p>Signed in as <b id="email">{http.auth.user.email}</b> (<span id="name">{http.auth.user.name}</span>), store <span id="store">%s</span>.</p>` +
	`<p><a id="signout" href="/oauth2/sign_out">Sign out</a></p>` +
	`<p id="at" hidden>{header.X-Test-Access-Token}</p>` +
	`</body></html>`

// TestBrowser logs a real (headless) Chromium in through Dex's password
// form for each session store, then checks what a user does next: reload,
// a second tab, a silent refresh, sign-out and the back button.
func TestBrowser(t *testing.T) {
	headless.ExecPath(t) // skip (or fail in CI) before starting anything
	for _, st := range testcaddy.Stores {
		t.Run(st.Name, func(t *testing.T) {
			chromeLoginFlow(t, st.Name, st.ServerSide, st.Config(t))
		})
	}
}

func chromeLoginFlow(t *testing.T, storeName string, serverSide bool, storeConfig string) {
	start := time.Now()
	_, port, _ := net.SplitHostPort(testenv.FreeAddr(t))
	host := "localhost:" + port
	base := "http://" + host
	dex := testidp.StartDex(t, testidp.DexOptions{
		RedirectURIs: []string{base + "/oauth2/callback"},
		IDTokenTTL:   chromeTokenTTL,
	})
	testcaddy.StartCaddySites(t, map[string]string{host: fmt.Sprintf(`	oidc_session {
		issuer %s
		client_id %s
		client_secret %s
		scopes openid email profile offline_access
		cookie {
			secret %s
			secure off
		}
		headers {
			access_token X-Test-Access-Token
		}
		%s
	}
	header Content-Type "text/html; charset=utf-8"
	respond %s 200
`, dex.Issuer, dex.ClientID, dex.ClientSecret, testcaddy.TestSecret, storeConfig, "`"+fmt.Sprintf(chromePage, storeName)+"`")})
	t.Logf("dex and caddy up in %s", time.Since(start).Round(time.Millisecond))

	b := headless.Start(t, 60*time.Second)
	tab := b.First
	steps := func(tab *headless.Tab) *headless.Steps { return b.Steps(tab, 15*time.Second) }
	fatalf := func(tab *headless.Tab, format string, args ...any) {
		t.Helper()
		steps(tab).Fatalf(format, args...)
	}
	atDex := func(p headless.Page) bool {
		return p.Host() == dex.Addr && strings.Contains(p.HTML, `name="login"`) && strings.Contains(p.HTML, `name="password"`)
	}
	protected := base + "/app/page"
	atProtected := func(p headless.Page) bool {
		return p.URL == protected && strings.Contains(p.Text, "Signed in as "+dex.Email)
	}
	waitFor := func(tab *headless.Tab, what string, ok func(headless.Page) bool) headless.Page {
		t.Helper()
		return steps(tab).WaitFor(what, ok)
	}
	run := func(tab *headless.Tab, what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		steps(tab).Run(what, actions...)
	}
	cookies := func(tab *headless.Tab) map[string]*network.Cookie {
		t.Helper()
		cs, err := headless.Cookies(tab.Ctx, base+"/")
		if err != nil {
			fatalf(tab, "cookies: %v", err)
		}
		m := map[string]*network.Cookie{}
		for _, c := range cs {
			m[c.Name] = c
		}
		return m
	}
	accessToken := func(tab *headless.Tab) string {
		t.Helper()
		at, err := chromedp.Run(tab.Ctx, chromedp.TextContent(chromedp.CSS("#at")))
		if err != nil || strings.Count(at, ".") != 2 {
			fatalf(tab, "access token on the page: %q %v", at, err)
		}
		return at
	}

	dexHits, err := headless.CountRequests(tab.Ctx, dex.Addr)
	if err != nil {
		t.Fatal(err)
	}

	// 1. The protected page sends Chromium to Dex's login form, with a
	// flow cookie for this login set on the site.
	run(tab, "open the protected page", chromedp.Navigate(protected))
	waitFor(tab, "Dex's login form", atDex)
	flows := 0
	for name := range cookies(tab) {
		if strings.HasPrefix(name, "_oauth2_proxy_flow") {
			flows++
		}
	}
	if flows != 1 {
		t.Errorf("flow cookies while at Dex: %d, want 1: %v", flows, cookies(tab))
	}

	// 2. Log in with the password form.
	run(tab, "fill Dex's login form",
		chromedp.SendKeys(chromedp.CSS(`input[name="login"]`), dex.Email),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), dex.Password),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
	)
	waitFor(tab, "the protected page after login", atProtected)
	loggedIn := time.Now()
	t.Logf("logged in through Dex after %s", loggedIn.Sub(start).Round(time.Millisecond))
	if shot, err := b.Screenshot(tab, "protected-"+storeName+".png"); err != nil {
		t.Errorf("screenshot: %v", err)
	} else {
		t.Logf("screenshot of the protected page: %s", shot)
	}

	jar := cookies(tab)
	session := jar["_oauth2_proxy"]
	if session == nil {
		fatalf(tab, "no _oauth2_proxy cookie after login: %v", jar)
	}
	if !session.HTTPOnly || session.SameSite != network.CookieSameSiteLax || session.Path != "/" || session.Domain != "localhost" {
		t.Errorf("session cookie: httpOnly=%v sameSite=%q path=%q domain=%q, want HttpOnly, Lax, /, host-only localhost",
			session.HTTPOnly, session.SameSite, session.Path, session.Domain)
	}
	for name := range jar {
		if name != "_oauth2_proxy" && strings.HasPrefix(name, "_oauth2_proxy") {
			t.Errorf("cookie %s still there after login", name)
		}
	}
	t.Logf("session cookie: %d bytes", len(session.Value))
	if serverSide {
		if n := chromeSessionsOf(t, dex.Email); n != 1 {
			t.Errorf("admin API: %d sessions of %s after login, want 1", n, dex.Email)
		}
	}
	firstToken := accessToken(tab)
	dexAfterLogin := dexHits.N()

	// 3. Reload: still logged in, Dex not visited.
	run(tab, "reload", chromedp.Reload())
	waitFor(tab, "the protected page after reload", atProtected)
	if n := dexHits.N(); n != dexAfterLogin {
		t.Errorf("reload went to Dex: %v", dexHits.URLs()[dexAfterLogin:])
	}

	// 4. A second tab of the same browser shares the session.
	tab2 := b.NewTab()
	dexHits2, err := headless.CountRequests(tab2.Ctx, dex.Addr)
	if err != nil {
		t.Fatal(err)
	}
	run(tab2, "open the protected page in a second tab", chromedp.Navigate(protected))
	waitFor(tab2, "the protected page in the second tab", atProtected)
	if n := dexHits2.N(); n != 0 {
		t.Errorf("second tab went to Dex: %v", dexHits2.URLs())
	}
	if err := chromedp.Cancel(tab2.Ctx); err != nil {
		t.Logf("close the second tab: %v", err)
	}

	// 5. In the last third of the token's life a reload refreshes it in the
	// request path: same page, new access token, no trip to Dex.
	time.Sleep(time.Until(loggedIn.Add(chromeTokenTTL * 3 / 4)))
	run(tab, "reload at refresh time", chromedp.Reload())
	waitFor(tab, "the protected page at refresh time", atProtected)
	if accessToken(tab) == firstToken {
		t.Errorf("access token unchanged %s after login: no refresh", time.Since(loggedIn).Round(time.Millisecond))
	}
	refreshed := cookies(tab)["_oauth2_proxy"]
	switch {
	case refreshed == nil:
		fatalf(tab, "session cookie gone after the refresh")
	case !serverSide && refreshed.Value == session.Value:
		t.Errorf("cookie store: session cookie unchanged after the refresh")
	case serverSide && refreshed.Value != session.Value:
		t.Errorf("%s store: the ticket cookie changed on refresh (a refresh keeps the ticket)", storeName)
	}

	// 6. Past the first token's expiry: still logged in, still no Dex.
	time.Sleep(time.Until(loggedIn.Add(chromeTokenTTL + 500*time.Millisecond)))
	run(tab, "reload after the first token expired", chromedp.Reload())
	waitFor(tab, "the protected page after the first token expired", atProtected)
	if n := dexHits.N(); n != dexAfterLogin {
		t.Errorf("browsing while logged in went to Dex: %v", dexHits.URLs()[dexAfterLogin:])
	}

	// 7. Sign out through the link: back at / which sends the browser to
	// Dex's login (Dex has no end_session_endpoint).
	run(tab, "click sign out", chromedp.Click(chromedp.CSS("#signout")))
	waitFor(tab, "Dex's login form after sign out", atDex)
	if c := cookies(tab)["_oauth2_proxy"]; c != nil {
		t.Errorf("session cookie still set after sign out")
	}
	if serverSide {
		if n := chromeSessionsOf(t, dex.Email); n != 0 {
			t.Errorf("admin API: %d sessions of %s after sign out, want 0", n, dex.Email)
		}
	}

	// 8. Back: the protected page is asked for again, and the browser
	// lands at Dex again; the signed-in page must not come back from the
	// back/forward cache or the HTTP cache.
	dexBeforeBack := dexHits.N()
	backCtx, cancelBack := context.WithTimeout(tab.Ctx, 5*time.Second)
	err = chromedp.Do(backCtx, chromedp.NavigateBack())
	cancelBack()
	if err != nil {
		// A page restored from the back/forward cache fires no load event.
		t.Logf("back: %v (checking the page anyway)", err)
	}
	p, err := headless.WaitPage(tab.Ctx, 10*time.Second, func(p headless.Page) bool {
		return atDex(p) || strings.Contains(p.Text, dex.Email)
	})
	if shot, serr := b.Screenshot(tab, "after-back-"+storeName+".png"); serr == nil {
		t.Logf("screenshot after back: %s", shot)
	}
	switch {
	case err != nil:
		fatalf(tab, "after back: %v", err)
	case strings.Contains(p.Text, dex.Email):
		// How the page came back: a restore from the back/forward cache
		// keeps the old document's navigation entry (type "reload" here).
		nav, _ := chromedp.Run(tab.Ctx, chromedp.Evaluate[string](
			`JSON.stringify(performance.getEntriesByType("navigation").map(e => e.type + " " + e.name))`))
		fatalf(tab, "after sign out, back shows the signed-in page again (%s, navigation entry %s, %d requests to Dex); "+
			"the protected response was kept by the browser (it has no Cache-Control: no-store)", p.URL, nav, dexHits.N()-dexBeforeBack)
	case dexHits.N() == dexBeforeBack:
		t.Errorf("after back: at Dex's login without a request to Dex (page from cache?)")
	}
	t.Logf("%s store: whole flow %s", storeName, time.Since(start).Round(time.Millisecond))
}

// chromeSessionsOf counts the live sessions of email through the admin API
// of the running test Caddy.
func chromeSessionsOf(t *testing.T, email string) int {
	t.Helper()
	resp, err := http.Get(testcaddy.Running().AdminURL + "/oidc_session/sessions")
	if err != nil {
		t.Fatalf("admin API: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var list struct {
		Sessions []struct {
			Email string `json:"email"`
		} `json:"sessions"`
		Error string `json:"error"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &list) != nil || list.Error != "" {
		t.Fatalf("admin API: %d %s", resp.StatusCode, body)
	}
	n := 0
	for _, s := range list.Sessions {
		if s.Email == email {
			n++
		}
	}
	return n
}
