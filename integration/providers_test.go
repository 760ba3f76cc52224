package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	headless "github.com/oidc-session/oidc_session/internal/browser"
	"github.com/oidc-session/oidc_session/internal/testcaddy"
	"github.com/oidc-session/oidc_session/internal/testenv"
	"github.com/oidc-session/oidc_session/internal/testidp"
)

// providerBlock is a provider block for a mock IdP.
func providerBlock(name string, idp *testcaddy.MockIdP, extra string) string {
	return clientBlock(name, idp.Issuer(), idp.ClientID, idp.ClientSecret, extra)
}

// clientBlock is a provider block for a client of an IdP.
func clientBlock(name, issuer, clientID, secret, extra string) string {
	return fmt.Sprintf(`		provider %s {
			issuer %s
			client_id %s
			client_secret %s
			%s
		}
`, name, issuer, clientID, secret, extra)
}

// providersSite is a site whose oidc_session has the given provider blocks.
func providersSite(blocks, extra string) string {
	return fmt.Sprintf(`	oidc_session {
%s		cookie {
			secret %s
			secure off
		}
		%s
	}
	respond "id={http.auth.user.id} provider={http.auth.user.provider}" 200
`, blocks, testcaddy.TestSecret, extra)
}

// loginAt logs a new browser in as sub through the named provider.
func loginAt(t *testing.T, idp *testcaddy.MockIdP, base, provider, sub string) *testcaddy.Browser {
	t.Helper()
	b := testcaddy.NewBrowser(t)
	idp.QueueUser(&mockoidc.MockUser{Subject: sub, Email: sub + "@example.com", EmailVerified: true})
	resp, body := b.Login(base + "/oauth2/start?provider=" + provider + "&rd=/page")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "id="+sub+" provider="+provider) {
		t.Fatalf("login as %s at %s: %d %s", sub, provider, resp.StatusCode, body)
	}
	return b
}

// loggedIn reports whether b's session still lets it in (a browser
// without one gets the chooser).
func loggedIn(t *testing.T, b *testcaddy.Browser, base string) bool {
	t.Helper()
	resp, body := b.Navigate(base + "/page")
	return resp.StatusCode == http.StatusOK && strings.HasPrefix(body, "id=")
}

// mockIdPWithKey starts a mock IdP with a signing key of its own (mockoidc
// gives every server the same one by default).
func mockIdPWithKey(t *testing.T, endSession bool) *testcaddy.MockIdP {
	t.Helper()
	idp := testcaddy.NewMockIdP(t, 0, endSession)
	key, err := mockoidc.RandomKeypair(2048)
	if err != nil {
		t.Fatal(err)
	}
	idp.Keypair = key
	return testcaddy.StartIdP(t, idp)
}

// TestProvidersIsolation: two IdPs on one site, the same subject at both.
// Each session belongs to its IdP: a back-channel logout of one ends none
// of the other's, a token of one claiming to be the other is refused, the
// admin API lists and ends by provider, sign_out goes to the session's own
// IdP, and an authorization response naming the other IdP is refused.
func TestProvidersIsolation(t *testing.T) {
	for _, st := range testcaddy.ServerSideStores() {
		t.Run(st.Name, func(t *testing.T) { testProvidersIsolation(t, st.Config(t)) })
	}
}

func testProvidersIsolation(t *testing.T, store string) {
	corp := mockIdPWithKey(t, true)
	partners := mockIdPWithKey(t, false)
	base := testcaddy.StartCaddy(t, providersSite(providerBlock("corp", corp, "")+providerBlock("partners", partners, ""), store))

	loginsAt := func(provider string) float64 {
		var v float64
		prefix := `caddy_oidc_session_logins_total{provider="` + provider + `"} `
		for _, line := range strings.Split(testcaddy.Running().Scrape(t), "\n") {
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				fmt.Sscan(rest, &v)
			}
		}
		return v
	}
	corpBefore, partnersBefore := loginsAt("corp"), loginsAt("partners")
	aliceCorp := loginAt(t, corp, base, "corp", "alice")
	alicePartners := loginAt(t, partners, base, "partners", "alice")
	bobPartners := loginAt(t, partners, base, "partners", "bob")

	// The session endpoint and the admin API say whose each session is.
	_, body := aliceCorp.Do("GET", base+"/oauth2/session")
	if !strings.Contains(body, `"provider":"corp"`) {
		t.Errorf("session endpoint: %s", body)
	}
	if code, body := adminDo(t, "GET", "/oidc_session/sessions?provider=partners"); code != 200 || !strings.Contains(body, `"count":2`) || strings.Contains(body, `"provider":"corp"`) {
		t.Errorf("admin list of partners: %d %s", code, body)
	}
	if code, body := adminDo(t, "GET", "/oidc_session/sessions?sub=alice"); code != 200 || !strings.Contains(body, `"provider":"corp"`) || !strings.Contains(body, `"provider":"partners"`) {
		t.Errorf("admin list of alice: %d %s", code, body)
	}

	// Signed by partners, claiming to be corp: verified with corp's keys,
	// refused, nothing ends.
	forged := logoutToken(t, corp, partners.Keypair, "alice", func(c jwt.MapClaims) { c["aud"] = corp.ClientID })
	if code, body := postLogout(t, base, forged); code == http.StatusOK {
		t.Errorf("partners' key accepted for corp: %d %s", code, body)
	}
	// Partners' own logout of alice ends her partners session only.
	if code, body := postLogout(t, base, logoutToken(t, partners, partners.Keypair, "alice", nil)); code != http.StatusOK {
		t.Fatalf("partners' logout token: %d %s", code, body)
	}
	if loggedIn(t, alicePartners, base) {
		t.Error("alice's partners session survived partners' back-channel logout")
	}
	if !loggedIn(t, aliceCorp, base) {
		t.Error("partners' back-channel logout of alice ended her corp session")
	}
	if !loggedIn(t, bobPartners, base) {
		t.Error("partners' back-channel logout of alice ended bob's")
	}
	// A token of an issuer the site does not have.
	stranger := mockIdPWithKey(t, false)
	if code, body := postLogout(t, base, logoutToken(t, stranger, stranger.Keypair, "alice", nil)); code != http.StatusBadRequest || !strings.Contains(body, "not one of this site's") {
		t.Errorf("logout token of another issuer: %d %s", code, body)
	}

	// sign_out of the corp session goes to corp's end_session_endpoint,
	// with corp's client id; partners' users stay.
	resp, body := aliceCorp.Navigate(base + "/oauth2/sign_out?rd=/bye")
	form := testcaddy.EndSessionForm(t, resp, body)
	if !strings.HasPrefix(form.Action, corp.Issuer()) || form.Fields.Get("client_id") != corp.ClientID {
		t.Errorf("sign_out sent to %s with client_id %q; want corp's", form.Action, form.Fields.Get("client_id"))
	}
	if loggedIn(t, aliceCorp, base) || !loggedIn(t, bobPartners, base) {
		t.Error("sign_out: wrong sessions ended")
	}

	// The admin API ends one provider's sessions.
	carol := loginAt(t, corp, base, "corp", "carol")
	if code, body := adminDo(t, "DELETE", "/oidc_session/sessions?provider=partners"); code != 200 || !strings.Contains(body, `"ended":1`) {
		t.Errorf("admin end partners: %d %s", code, body)
	}
	if loggedIn(t, bobPartners, base) || !loggedIn(t, carol, base) {
		t.Error("admin end of partners: wrong sessions ended")
	}

	// Mix-up: corp's authorization response saying it comes from
	// partners is refused before its code is used.
	b := testcaddy.NewBrowser(t)
	corp.QueueUser(&mockoidc.MockUser{Subject: "mallory", Email: "m@example.com", EmailVerified: true})
	resp, _ = b.Navigate(base + "/oauth2/start?provider=corp&rd=/page")
	cb := b.Authorize(resp.Header.Get("Location"))
	u, _ := url.Parse(cb)
	q := u.Query()
	q.Set("iss", partners.Issuer())
	u.RawQuery = q.Encode()
	if resp, body := b.Navigate(u.String()); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("callback of a corp login naming partners as iss: %d %s", resp.StatusCode, body)
	}

	// Metrics count logins by provider.
	if c, p := loginsAt("corp")-corpBefore, loginsAt("partners")-partnersBefore; c != 2 || p != 2 {
		t.Errorf("logins_total: corp +%v, partners +%v; want 2 each", c, p)
	}
}

// TestProvidersChooserAndReload: a site with one IdP moves it into a
// provider block and adds a second one: everyone stays logged in. Without a
// provider the login shows the chooser; a login_hint of a provider's
// domain skips it; API calls get 401 naming the providers.
func TestProvidersChooserAndReload(t *testing.T) {
	for _, st := range testcaddy.Stores {
		t.Run(st.Name, func(t *testing.T) { testProvidersChooserAndReload(t, st.Config(t)) })
	}
}

func testProvidersChooserAndReload(t *testing.T, store string) {
	corp := testcaddy.StartMockIdP(t, 0, false)
	partners := testcaddy.StartMockIdP(t, 0, false)
	addr := testenv.FreeAddr(t)
	base := "http://" + addr
	testcaddy.StartCaddyOn(t, addr, testcaddy.SiteConfig(corp, store))
	before := testcaddy.LoginAs(t, corp, base, "alice")

	// A reload closes the connections of the config before: a browser's
	// kept-alive one would answer its next request with EOF.
	reload := func(site string, browsers ...*testcaddy.Browser) {
		t.Helper()
		testcaddy.StartCaddyOn(t, addr, site)
		for _, b := range browsers {
			b.Client.CloseIdleConnections()
		}
	}
	reload(providersSite(
		providerBlock("corp", corp, `label "Staff sign-in"
			domains corp.example`)+providerBlock("partners", partners, "label Partners"), store), before)
	resp, body := before.Navigate(base + "/page")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "id=alice provider=corp") {
		t.Fatalf("the session of before the reload: %d %s", resp.StatusCode, body)
	}

	b := testcaddy.NewBrowser(t)
	resp, body = b.Navigate(base + "/reports?x=1")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="rd" value="/reports?x=1"`) ||
		!strings.Contains(body, `value="corp">Staff sign-in</button>`) || !strings.Contains(body, `value="partners">Partners</button>`) {
		t.Fatalf("chooser: %d %s", resp.StatusCode, body)
	}
	resp, _ = b.Navigate(base + "/oauth2/start?login_hint=bob@corp.example&rd=/page")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), corp.Issuer()) {
		t.Errorf("login_hint of corp's domain: %d to %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = b.Do("GET", base+"/api", "Accept: application/json")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `providers="corp partners"`) {
		t.Errorf("API call: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	_, body = b.Do("GET", base+"/oauth2/session")
	var status struct {
		Providers []struct{ Name string } `json:"providers"`
	}
	if json.Unmarshal([]byte(body), &status) != nil || len(status.Providers) != 2 {
		t.Errorf("session endpoint without a session: %s", body)
	}
	bob := loginAt(t, partners, base, "partners", "bob")

	// Back to corp alone (the top-level form): corp's sessions go on,
	// partners' are no session here (a login at corp).
	reload(testcaddy.SiteConfig(corp, store), before, bob)
	if resp, body := before.Navigate(base + "/page"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "id=alice ") {
		t.Errorf("corp's session after partners was removed: %d %s", resp.StatusCode, body)
	}
	if resp, _ := bob.Navigate(base + "/page"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), corp.Issuer()) {
		t.Errorf("partners' session after partners was removed: %d to %s; want a login at corp", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestProvidersBrowserDex: two real Dex instances on one site, in headless
// Chromium: the chooser (screenshot in the test output), a login through
// each (the same user, the same sub at both), a refresh at the session's
// own Dex, sign-out, and a login_hint of one's domain that skips the
// chooser.
func TestProvidersBrowserDex(t *testing.T) {
	headless.ExecPath(t) // skip (or fail in CI) before starting anything
	_, port, _ := net.SplitHostPort(testenv.FreeAddr(t))
	host := "localhost:" + port
	base := "http://" + host
	corp := testidp.StartDex(t, testidp.DexOptions{RedirectURIs: []string{base + "/oauth2/callback"}, IDTokenTTL: chromeTokenTTL})
	// partners' user has the same sub, and an address of another domain
	// (one of corp's domains would be refused from partners).
	partners := testidp.StartDex(t, testidp.DexOptions{RedirectURIs: []string{base + "/oauth2/partners/callback"}, IDTokenTTL: chromeTokenTTL, Email: "admin@partner.example"})
	testcaddy.StartCaddySites(t, map[string]string{host: fmt.Sprintf(`	oidc_session {
		provider corp {
			issuer %s
			client_id %s
			client_secret %s
			scopes openid email profile offline_access
			label "Staff sign-in"
			domains example.com
		}
		provider partners {
			issuer %s
			client_id %s
			client_secret %s
			scopes openid email profile offline_access
			redirect_url /oauth2/partners/callback
			label "Partners"
		}
		cookie {
			secret %s
			secure off
		}
		headers {
			access_token X-Test-Access-Token
		}
	}
	header Content-Type "text/html; charset=utf-8"
	respond "<!doctype html><title>app</title><p>Signed in as <b id=email>{http.auth.user.email}</b> at <b id=provider>{http.auth.user.provider}</b></p><p id=at hidden>{header.X-Test-Access-Token}</p>" 200
`, corp.Issuer, corp.ClientID, corp.ClientSecret, partners.Issuer, partners.ClientID, partners.ClientSecret, testcaddy.TestSecret)})

	b := headless.Start(t, 90*time.Second)
	tab := b.First
	steps := b.Steps(tab, 15*time.Second)
	fatalf, run, waitFor := steps.Fatalf, steps.Run, steps.WaitFor
	atDex := func(d *testidp.Dex) func(headless.Page) bool {
		return func(p headless.Page) bool { return p.Host() == d.Addr && strings.Contains(p.HTML, `name="password"`) }
	}
	protected := base + "/app/page"
	signedInAt := func(provider string) func(headless.Page) bool {
		return func(p headless.Page) bool {
			email := map[string]string{"corp": corp.Email, "partners": partners.Email}[provider]
			return p.URL == protected && strings.Contains(p.Text, "Signed in as "+email+" at "+provider)
		}
	}
	loginAtDex := func(d *testidp.Dex) {
		t.Helper()
		waitFor("the login form of "+d.Issuer, atDex(d))
		run("log in at "+d.Issuer,
			chromedp.SendKeys(chromedp.CSS(`input[name="login"]`), d.Email),
			chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), d.Password),
			chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		)
	}

	// 1. The protected page shows the chooser, which works without
	// scripts and is labelled for assistive technology.
	run("open the protected page", chromedp.Navigate(protected))
	chooser := waitFor("the chooser", func(p headless.Page) bool { return strings.Contains(p.Text, "Staff sign-in") })
	if !strings.Contains(chooser.Text, "Partners") || chooser.Host() != host {
		t.Errorf("chooser: %s %q", chooser.URL, chooser.Text)
	}
	if shot, err := b.Screenshot(tab, "chooser.png"); err != nil {
		t.Errorf("screenshot: %v", err)
	} else {
		t.Logf("screenshot of the chooser: %s", shot)
	}
	if n, err := chromedp.Run(tab.Ctx, chromedp.Evaluate[int](`document.querySelectorAll("script").length`)); err != nil || n != 0 {
		t.Errorf("chooser scripts: %d %v", n, err)
	}

	// 2. Staff sign-in: corp's Dex, back at the page.
	run("choose corp", chromedp.Click(chromedp.CSS(`button[value="corp"]`)))
	loginAtDex(corp)
	waitFor("the page after logging in at corp", signedInAt("corp"))

	// 3. Sign out, then partners (its own callback URL): the same sub at
	// another IdP is another session, of partners.
	run("sign out", chromedp.Navigate(base+"/oauth2/sign_out?rd=/app/page"))
	waitFor("the chooser after sign out", func(p headless.Page) bool { return strings.Contains(p.Text, "Staff sign-in") })
	run("choose partners", chromedp.Click(chromedp.CSS(`button[value="partners"]`)))
	loginAtDex(partners)
	waitFor("the page after logging in at partners", signedInAt("partners"))
	loggedInAt := time.Now()
	token := func() string {
		at, err := chromedp.Run(tab.Ctx, chromedp.TextContent(chromedp.CSS("#at")))
		if err != nil {
			fatalf("access token: %v", err)
		}
		return at
	}
	first := token()

	// 4. In the token's last third, a reload refreshes it at partners'
	// Dex (corp's would refuse its refresh token): still signed in there.
	corpHits, err := headless.CountRequests(tab.Ctx, corp.Addr)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(loggedInAt.Add(chromeTokenTTL * 3 / 4)))
	run("reload at refresh time", chromedp.Reload())
	waitFor("the page at refresh time", signedInAt("partners"))
	if token() == first {
		t.Error("access token not refreshed")
	}
	if corpHits.N() != 0 {
		t.Errorf("the browser went to corp: %v", corpHits.URLs())
	}

	// 5. An email of corp's domain, typed into the chooser, goes to corp;
	// so does a login_hint of its domain.
	run("sign out again", chromedp.Navigate(base+"/oauth2/sign_out?rd=/app/page"))
	waitFor("the chooser after the second sign out", func(p headless.Page) bool { return strings.Contains(p.Text, "email address") })
	run("enter the email", chromedp.SendKeys(chromedp.CSS(`#email`), corp.Email), chromedp.Submit(chromedp.CSS(`#email`)))
	loginAtDex(corp)
	waitFor("the page after the login by email", signedInAt("corp"))
	run("sign out a third time", chromedp.Navigate(base+"/oauth2/sign_out"))
	run("start with a login_hint", chromedp.Navigate(base+"/oauth2/start?login_hint="+url.QueryEscape(corp.Email)+"&rd=/app/page"))
	loginAtDex(corp)
	waitFor("the page after the hinted login", signedInAt("corp"))
}

// TestProvidersDexAndZitadel: Dex and the zitadel OP (which has RP-initiated
// logout) on one site: a user of each logs in, and signing the zitadel user
// out goes to zitadel's end_session_endpoint with its client id and leaves
// the Dex user logged in.
func TestProvidersDexAndZitadel(t *testing.T) {
	addr := testenv.FreeAddr(t)
	base := "http://" + addr
	dex := testidp.StartDex(t, testidp.DexOptions{RedirectURIs: []string{base + "/oauth2/callback"}})
	z := testidp.StartZitadel(t, testidp.ZitadelOptions{RedirectURIs: []string{base + "/oauth2/callback?provider=zitadel"}, PostLogoutRedirectURIs: []string{base + "/bye"}})
	testcaddy.StartCaddyOn(t, addr, providersSite(clientBlock("dex", dex.Issuer, dex.ClientID, dex.ClientSecret, "")+
		clientBlock("zitadel", z.Issuer, z.ClientID, z.ClientSecret, ""), "store memory"))

	login := func(provider string, do func(*http.Client, string, string, string) (*http.Response, error), user, password string) *testcaddy.Browser {
		t.Helper()
		b := testcaddy.NewBrowser(t)
		resp, err := do(b.Client, base+"/oauth2/start?provider="+provider+"&rd=/page", user, password)
		if err != nil {
			t.Fatalf("login at %s: %v", provider, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/page" {
			t.Fatalf("callback of %s: %d to %q", provider, resp.StatusCode, resp.Header.Get("Location"))
		}
		if _, body := b.Navigate(base + "/page"); !strings.HasPrefix(body, "id=") || !strings.HasSuffix(body, " provider="+provider) {
			t.Fatalf("page after the %s login: %s", provider, body)
		}
		return b
	}
	atDex := login("dex", testidp.LoginDex, dex.Email, dex.Password)
	atZitadel := login("zitadel", testidp.LoginZitadel, z.Username, z.Password)

	resp, body := atZitadel.Navigate(base + "/oauth2/sign_out?rd=/bye")
	form := testcaddy.EndSessionForm(t, resp, body)
	if !strings.HasPrefix(form.Action, strings.TrimSuffix(z.Issuer, "/")) || form.Fields.Get("client_id") != z.ClientID || form.Fields.Get("id_token_hint") == "" {
		t.Errorf("sign_out of the zitadel user: to %s with %v", form.Action, form.Fields)
	}
	if loggedIn(t, atZitadel, base) {
		t.Error("zitadel user still logged in after sign_out")
	}
	if !loggedIn(t, atDex, base) {
		t.Error("the zitadel user's sign_out ended the Dex user's session")
	}
	// Dex has no end_session_endpoint: a local sign-out.
	if resp, _ := atDex.Navigate(base + "/oauth2/sign_out?rd=/bye"); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/bye" {
		t.Errorf("sign_out of the Dex user: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestProvidersMixUpCodeInjection: the IdP mix-up (OAuth 2.0 Security BCP
// 4.4) where partners is the attacker's IdP and corp sends no RFC 9207
// iss (mockoidc, like Dex, Google, Entra). The victim is made to start a
// login with partners; partners sends the browser on to corp with the
// attacker's own corp authorization request but the victim's state. corp's
// answer comes to corp's callback URL, which is not the one of the
// victim's flow (partners'): it is refused before its code goes anywhere,
// so partners' token endpoint never sees it and the attacker has nothing
// to inject into its own flow. Without redirect_url (partners' callback is
// <prefix>/callback?provider=partners) as with one.
func TestProvidersMixUpCodeInjection(t *testing.T) {
	for _, c := range []struct{ name, partners string }{
		{"default callback URLs", ""},
		{"partners with its own redirect_url", "redirect_url /oauth2/partners/callback"},
	} {
		t.Run(c.name, func(t *testing.T) {
			corp := mockIdPWithKey(t, false)
			partners := testcaddy.NewMockIdP(t, 0, false)
			var mu sync.Mutex
			var stolenCode, stolenVerifier string
			if err := partners.AddMiddleware(func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if strings.HasSuffix(r.URL.Path, mockoidc.TokenEndpoint) {
						_ = r.ParseForm()
						mu.Lock()
						stolenCode, stolenVerifier = r.Form.Get("code"), r.Form.Get("code_verifier")
						mu.Unlock()
					}
					next.ServeHTTP(w, r)
				})
			}); err != nil {
				t.Fatal(err)
			}
			key, _ := mockoidc.RandomKeypair(2048)
			partners.Keypair = key
			testcaddy.StartIdP(t, partners)
			base := testcaddy.StartCaddy(t, providersSite(providerBlock("corp", corp, "")+providerBlock("partners", partners, c.partners), "store memory"))

			// 1. The attacker starts its own login with corp.
			mallory := testcaddy.NewBrowser(t)
			resp, _ := mallory.Navigate(base + "/oauth2/start?provider=corp&rd=/page")
			attackerAuth, err := url.Parse(resp.Header.Get("Location"))
			if err != nil || resp.StatusCode != http.StatusFound {
				t.Fatalf("attacker's start: %d %v", resp.StatusCode, err)
			}
			attackerState := attackerAuth.Query().Get("state")

			// 2. The victim follows a link that starts a login with partners.
			victim := testcaddy.NewBrowser(t)
			resp, _ = victim.Navigate(base + "/oauth2/start?provider=partners&rd=/page")
			toPartners, _ := url.Parse(resp.Header.Get("Location"))
			victimState := toPartners.Query().Get("state")
			if got, want := toPartners.Query().Get("redirect_uri"), base+"/oauth2/callback?provider=partners"; c.partners == "" && got != want {
				t.Errorf("partners' redirect_uri %q, want %q", got, want)
			}

			// 3. partners redirects the victim to corp with the attacker's
			// request and the victim's state; the victim signs in at corp.
			q := attackerAuth.Query()
			q.Set("state", victimState)
			attackerAuth.RawQuery = q.Encode()
			corp.QueueUser(&mockoidc.MockUser{Subject: "victim-at-corp", Email: "ceo@corp.example", EmailVerified: true})
			cb := victim.Authorize(attackerAuth.String())
			if resp, body := victim.Navigate(cb); resp.StatusCode != http.StatusBadRequest {
				t.Errorf("corp's answer to the victim's partners flow: %d %s; want 400", resp.StatusCode, body)
			}
			mu.Lock()
			code, verifier := stolenCode, stolenVerifier
			mu.Unlock()
			if code != "" || verifier != "" {
				t.Errorf("partners' token endpoint got code %q and code_verifier %q", code, verifier)
			}

			// 4. The attacker injects what it has into its own corp flow.
			inj := base + "/oauth2/callback?code=" + url.QueryEscape(code) + "&state=" + url.QueryEscape(attackerState)
			resp, body := mallory.Navigate(inj)
			if resp.StatusCode == http.StatusFound {
				_, body = mallory.Navigate(base + "/page")
			}
			if strings.Contains(body, "id=victim-at-corp provider=corp") {
				t.Errorf("account takeover: the attacker is logged in as the victim (%q)", body)
			}
		})
	}
}
