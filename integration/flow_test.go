package integration

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/internal/testcaddy"
	"github.com/oidc-session/oidc_session/internal/testenv"
)

func TestLoginFlow(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	b := testcaddy.NewBrowser(t)

	resp, _ := b.Navigate(base + "/app/page?x=1")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("unauthenticated navigation: want 302, got %d", resp.StatusCode)
	}
	auth, _ := url.Parse(resp.Header.Get("Location"))
	q := auth.Query()
	if !strings.HasPrefix(auth.String(), idp.AuthorizationEndpoint()) {
		t.Fatalf("redirected to %s, not the IdP", auth)
	}
	for _, p := range []string{"state", "nonce", "code_challenge"} {
		if q.Get(p) == "" {
			t.Errorf("authorization request lacks %s", p)
		}
	}
	if q.Get("code_challenge_method") != "S256" {
		t.Errorf("code_challenge_method = %q, want S256", q.Get("code_challenge_method"))
	}
	if want := base + "/oauth2/callback"; q.Get("redirect_uri") != want {
		t.Errorf("redirect_uri = %q, want %q", q.Get("redirect_uri"), want)
	}
	flow := testcaddy.SetCookieNamed(resp, "_oauth2_proxy_flow_"+q.Get("state")[:10])
	if flow == nil || !flow.HttpOnly || flow.MaxAge <= 0 {
		t.Fatalf("no HttpOnly flow cookie named after the state: %v", resp.Header["Set-Cookie"])
	}

	cb := b.Authorize(auth.String())
	resp, body := b.Navigate(cb)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/app/page?x=1" {
		t.Fatalf("callback: want 302 to /app/page?x=1, got %d %q %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	sc := testcaddy.SetCookieNamed(resp, "_oauth2_proxy")
	if sc == nil || !sc.HttpOnly || sc.SameSite != http.SameSiteLaxMode || sc.Path != "/" {
		t.Fatalf("session cookie missing or without HttpOnly/SameSite=Lax/Path=/: %v", resp.Header["Set-Cookie"])
	}
	if len(sc.Value) > 4000 {
		t.Errorf("session cookie is %d bytes", len(sc.Value))
	}
	t.Logf("mockoidc session cookie: %d bytes", len(sc.Value))
	if del := testcaddy.SetCookieNamed(resp, flow.Name); del == nil || del.MaxAge >= 0 {
		t.Errorf("callback did not delete the flow cookie")
	}

	resp, body = b.Navigate(base + "/app/page?x=1")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("protected page: %d %s", resp.StatusCode, body)
	}
	for _, want := range []string{"id=1234567890", "email=jane.doe@example.com", "groups=engineering,design", "xfu=1234567890", "xfe=jane.doe@example.com", "name=jane.doe"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q: %s", want, body)
		}
	}
	if strings.Contains(body, "_oauth2_proxy") {
		t.Errorf("the plugin's cookies reached the next handler: %s", body)
	}

	resp, body = b.Do(http.MethodGet, base+"/oauth2/userinfo", "Accept: application/json")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("userinfo: %d", resp.StatusCode)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(body), &info); err != nil || info["user"] != "1234567890" || info["email"] != "jane.doe@example.com" {
		t.Fatalf("userinfo = %s", body)
	}
	if strings.Contains(strings.ToLower(body), "token") || strings.Contains(body, "eyJ") {
		t.Errorf("userinfo leaks tokens: %s", body)
	}
}

func TestUnauthenticatedAPICallsGet401(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	b := testcaddy.NewBrowser(t)
	cases := []struct {
		method  string
		headers []string
	}{
		{"GET", []string{"Accept: application/json"}},
		{"GET", []string{"Accept: */*"}},
		{"GET", []string{"Accept: text/html", "Sec-Fetch-Mode: cors"}},
		{"GET", []string{"Accept: text/html", "X-Requested-With: XMLHttpRequest"}},
		{"POST", []string{"Accept: text/html", "Sec-Fetch-Mode: navigate"}},
		{"DELETE", nil},
	}
	for _, c := range cases {
		resp, _ := b.Do(c.method, base+"/api/x", c.headers...)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Location") != "" {
			t.Errorf("%s %v: want 401 without redirect, got %d %q", c.method, c.headers, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	resp, _ := b.Do("GET", base+"/oauth2/userinfo")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("userinfo without session: %d", resp.StatusCode)
	}
}

func TestUnauthenticatedModes(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, "unauthenticated deny"))
	resp, _ := testcaddy.NewBrowser(t).Navigate(base + "/")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("deny: navigation got %d, want 401", resp.StatusCode)
	}
}

func TestSpoofedIdentityHeadersRemoved(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	b := testcaddy.NewBrowser(t)
	spoof := []string{"X-Forwarded-User: admin", "x-forwarded-email: admin@evil.com", "X-FORWARDED-USER: root"}

	// Unauthenticated: the spoofed headers open nothing.
	resp, _ := b.Do("GET", base+"/", append(spoof, "Accept: application/json")...)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("spoofed headers without session: %d", resp.StatusCode)
	}
	b.Login(base + "/")
	_, body := b.Navigate(base+"/", spoof...)
	if !strings.Contains(body, "xfu=1234567890 ") || !strings.Contains(body, "xfe=jane.doe@example.com ") || strings.Contains(body, "admin") || strings.Contains(body, "root") {
		t.Errorf("spoofed identity headers reached the next handler: %s", body)
	}
}

func TestRefreshBeforeExpiry(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 3*time.Second, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	b := testcaddy.NewBrowser(t)
	b.Login(base + "/")
	before := b.Cookie(base, "_oauth2_proxy").Value

	// Within the token's first two thirds: no refresh.
	resp, _ := b.Navigate(base + "/")
	if resp.StatusCode != 200 || idp.Refreshes.Load() != 0 {
		t.Fatalf("fresh token: status %d, %d refreshes", resp.StatusCode, idp.Refreshes.Load())
	}
	time.Sleep(2200 * time.Millisecond) // into the last third of 3 s

	// Many requests of one session at once: one refresh, all served.
	if codes := concurrentNavigations(t, b, []string{base}, 20); !allOK(codes) {
		t.Errorf("concurrent requests at expiry got %v", codes)
	}
	if n := idp.Refreshes.Load(); n != 1 {
		t.Errorf("%d refresh grants for one session, want 1", n)
	}
	if after := b.Cookie(base, "_oauth2_proxy").Value; after == before {
		t.Errorf("refresh did not update the session cookie")
	}
	resp, _ = b.Navigate(base + "/")
	if resp.StatusCode != 200 || idp.Refreshes.Load() != 1 {
		t.Errorf("after refresh: status %d, %d refreshes (want no second refresh)", resp.StatusCode, idp.Refreshes.Load())
	}
}

func TestRefreshFailures(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 3*time.Second, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	b := testcaddy.NewBrowser(t)
	b.Login(base + "/")
	time.Sleep(2200 * time.Millisecond)

	// A transient IdP failure keeps the session.
	idp.FailRefresh.Store("unavailable")
	resp, body := b.Navigate(base + "/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "id=1234567890") {
		t.Fatalf("IdP down during refresh: want the page, got %d", resp.StatusCode)
	}
	if c := testcaddy.SetCookieNamed(resp, "_oauth2_proxy"); c != nil && c.MaxAge < 0 {
		t.Fatalf("IdP down during refresh cleared the session cookie")
	}

	// invalid_grant ends it: a new login, and the cookie is cleared. (After
	// the failure above this instance waits a second before trying again.)
	time.Sleep(1100 * time.Millisecond)
	idp.FailRefresh.Store("invalid_grant")
	resp, _ = b.Navigate(base + "/")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), idp.AuthorizationEndpoint()) {
		t.Fatalf("invalid_grant: want a new login, got %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if c := testcaddy.SetCookieNamed(resp, "_oauth2_proxy"); c == nil || c.MaxAge >= 0 {
		t.Errorf("invalid_grant did not clear the session cookie")
	}
}

func TestSessionLifetimeNotExtendedByRefresh(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 3*time.Second, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, "session_lifetime 4s"))
	b := testcaddy.NewBrowser(t)
	b.Login(base + "/")
	time.Sleep(2200 * time.Millisecond)
	if resp, _ := b.Navigate(base + "/"); resp.StatusCode != 200 || idp.Refreshes.Load() != 1 {
		t.Fatalf("refresh: %d, %d refreshes", resp.StatusCode, idp.Refreshes.Load())
	}
	time.Sleep(2 * time.Second) // past the 4 s absolute lifetime
	resp, _ := b.Navigate(base + "/")
	if resp.StatusCode != http.StatusFound {
		t.Errorf("past the absolute lifetime: want a new login, got %d", resp.StatusCode)
	}
}

func TestIdleTimeout(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, "idle_timeout 2s"))
	b := testcaddy.NewBrowser(t)
	b.Login(base + "/")
	for i := 0; i < 3; i++ { // kept alive by use
		time.Sleep(800 * time.Millisecond)
		if resp, _ := b.Navigate(base + "/"); resp.StatusCode != 200 {
			t.Fatalf("active session ended after %d uses: %d", i, resp.StatusCode)
		}
	}
	time.Sleep(2500 * time.Millisecond)
	if resp, _ := b.Navigate(base + "/"); resp.StatusCode != http.StatusFound {
		t.Errorf("idle session: want a new login, got %d", resp.StatusCode)
	}
}

func TestLogoutLocal(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	b := testcaddy.NewBrowser(t)
	b.Login(base + "/")
	old := b.Cookie(base, "_oauth2_proxy").Value

	// A cross-site request cannot log the user out.
	resp, _ := b.Do("GET", base+"/oauth2/sign_out", "Sec-Fetch-Site: cross-site")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site sign_out: %d, want 403", resp.StatusCode)
	}
	resp, _ = b.Navigate(base + "/oauth2/sign_out?rd=https://evil.example/")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/" {
		t.Fatalf("sign_out with a foreign rd: %d to %q, want 302 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	if c := testcaddy.SetCookieNamed(resp, "_oauth2_proxy"); c == nil || c.MaxAge >= 0 {
		t.Fatalf("sign_out did not clear the cookie")
	}
	if resp, _ := b.Navigate(base + "/"); resp.StatusCode != http.StatusFound {
		t.Errorf("after sign_out: %d, want a new login", resp.StatusCode)
	}
	// The cookie store cannot revoke a copied cookie before it expires; the
	// README says so. What it does promise: a new login mints a new value.
	b.Login(base + "/")
	if b.Cookie(base, "_oauth2_proxy").Value == old {
		t.Errorf("a new login reused the old session cookie value")
	}
	resp, _ = b.Navigate(base + "/oauth2/sign_out?rd=/bye")
	if resp.Header.Get("Location") != "/bye" {
		t.Errorf("sign_out rd=/bye went to %q", resp.Header.Get("Location"))
	}
}

// TestLogoutRPInitiated: sign_out sends the browser to the IdP's
// end_session_endpoint with id_token_hint, client_id and the absolute
// post_logout_redirect_uri: by default in a form that posts them, with
// end_session_method get in a redirect (for IdPs that take only GET; the
// ID token is then in the Location).
func TestLogoutRPInitiated(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, true)
	for _, method := range []string{"post", "get"} {
		t.Run(method, func(t *testing.T) {
			base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, "post_logout_redirect /logged-out\n\t\tend_session_method "+method))
			b := testcaddy.NewBrowser(t)
			b.Login(base + "/")
			resp, body := b.Navigate(base + "/oauth2/sign_out")
			var target string
			var q url.Values
			if method == "post" {
				form := testcaddy.EndSessionForm(t, resp, body)
				if form.Method != http.MethodPost {
					t.Fatalf("sign_out: a %s form, want POST", form.Method)
				}
				target, q = form.Action, form.Fields
			} else {
				loc, _ := url.Parse(resp.Header.Get("Location"))
				if resp.StatusCode != http.StatusFound {
					t.Fatalf("sign_out: %d, want a redirect", resp.StatusCode)
				}
				q = loc.Query()
				loc.RawQuery = ""
				target = loc.String()
			}
			if target != idp.Issuer()+idp.EndSession {
				t.Fatalf("sign_out sends the browser to %q, want the end_session_endpoint", target)
			}
			if q.Get("id_token_hint") == "" || q.Get("client_id") != idp.ClientID || q.Get("post_logout_redirect_uri") != base+"/logged-out" {
				t.Errorf("end_session parameters: %v", q)
			}
			// Without a session there is no id_token_hint to send: a local redirect.
			resp, _ = b.Navigate(base + "/oauth2/sign_out?rd=//evil.example")
			if resp.Header.Get("Location") != "/logged-out" {
				t.Errorf("sign_out without a session went to %q", resp.Header.Get("Location"))
			}
		})
	}
}

func TestReturnURLOpenRedirects(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, "allowed_redirect_hosts partner.example"))
	for rd, want := range map[string]string{
		"/ok?a=1":                   "/ok?a=1",
		"//evil.example":            "/",
		"/\\evil.example":           "/",
		"https://evil.example/":     "/",
		"/%2F%2Fevil.example":       "/",
		"https://partner.example/x": "https://partner.example/x",
		"javascript:alert(1)":       "/",
	} {
		b := testcaddy.NewBrowser(t)
		resp, _ := b.Navigate(base + "/oauth2/start?rd=" + url.QueryEscape(rd))
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("start: %d", resp.StatusCode)
		}
		resp, _ = b.Navigate(b.Authorize(resp.Header.Get("Location")))
		if got := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || got != want {
			t.Errorf("rd=%q: callback sent the browser to %q, want %q", rd, got, want)
		}
	}
}

func TestCallbackStateAttacks(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))

	b := testcaddy.NewBrowser(t)
	for _, path := range []string{
		"/oauth2/callback",
		"/oauth2/callback?code=x",
		"/oauth2/callback?code=x&state=short",
		"/oauth2/callback?code=x&state=" + strings.Repeat("A", 26),
		"/oauth2/callback?code=x&state=" + strings.Repeat("A", 5000),
	} {
		if resp, _ := b.Navigate(base + path); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", path[:min(len(path), 60)], resp.StatusCode)
		}
	}

	// Login CSRF: a callback made for the attacker's browser fails in the
	// victim's, which has no flow cookie for that state.
	attacker, victim := testcaddy.NewBrowser(t), testcaddy.NewBrowser(t)
	resp, _ := attacker.Navigate(base + "/")
	cb := attacker.Authorize(resp.Header.Get("Location"))
	if resp, _ := victim.Navigate(cb); resp.StatusCode != http.StatusBadRequest || testcaddy.SetCookieNamed(resp, "_oauth2_proxy") != nil {
		t.Errorf("victim accepted the attacker's callback: %d", resp.StatusCode)
	}

	// Replay: a used callback URL is refused, even with the same browser.
	if resp, _ := attacker.Navigate(cb); resp.StatusCode != http.StatusFound {
		t.Fatalf("first use of the callback: %d", resp.StatusCode)
	}
	if resp, _ := attacker.Navigate(cb); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("replayed callback: %d, want 400", resp.StatusCode)
	}

	// A state whose flow cookie was swapped for another flow's value.
	b = testcaddy.NewBrowser(t)
	r1, _ := b.Navigate(base + "/one")
	r2, _ := b.Navigate(base + "/two")
	s1 := mustQuery(t, r1.Header.Get("Location"), "state")
	s2 := mustQuery(t, r2.Header.Get("Location"), "state")
	c2 := b.Cookie(base, "_oauth2_proxy_flow_"+s2[:10])
	b.SetCookie(base, "_oauth2_proxy_flow_"+s1[:10], c2.Value)
	cb1 := b.Authorize(r1.Header.Get("Location"))
	if resp, _ := b.Navigate(cb1); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("flow cookie swapped between states: %d, want 400", resp.StatusCode)
	}

	// The IdP reporting an error is a clear 4xx.
	b = testcaddy.NewBrowser(t)
	r, _ := b.Navigate(base + "/")
	st := mustQuery(t, r.Header.Get("Location"), "state")
	if resp, _ := b.Navigate(base + "/oauth2/callback?error=access_denied&state=" + st); resp.StatusCode != http.StatusForbidden {
		t.Errorf("IdP error: %d, want 403", resp.StatusCode)
	}
}

func TestSeveralTabsLogInAtOnce(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, "max_login_flows 3"))
	b := testcaddy.NewBrowser(t)
	r1, _ := b.Navigate(base + "/tab1")
	r2, _ := b.Navigate(base + "/tab2")
	cb1 := b.Authorize(r1.Header.Get("Location"))
	cb2 := b.Authorize(r2.Header.Get("Location"))
	for cb, want := range map[string]string{cb2: "/tab2", cb1: "/tab1"} {
		resp, body := b.Navigate(cb)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
			t.Errorf("tab callback: %d to %q, want %s: %s", resp.StatusCode, resp.Header.Get("Location"), want, body)
		}
	}

	// Abandoned logins are capped.
	b = testcaddy.NewBrowser(t)
	for i := 0; i < 8; i++ {
		b.Navigate(base + "/")
	}
	u, _ := url.Parse(base)
	n := 0
	for _, c := range b.Client.Jar.Cookies(u) {
		if strings.HasPrefix(c.Name, "_oauth2_proxy_flow_") {
			n++
		}
	}
	if n == 0 || n > 3 {
		t.Errorf("%d flow cookies after 8 abandoned logins, want 1..3", n)
	}
}

func TestBadSessionCookies(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	good := testcaddy.NewBrowser(t)
	good.Login(base + "/")
	value := good.Cookie(base, "_oauth2_proxy").Value

	flipped := []byte(value)
	flipped[len(flipped)/2] ^= 0x01
	if flipped[len(flipped)/2] == '.' {
		flipped[len(flipped)/2] = 'A'
	}
	for name, v := range map[string]string{
		"tampered":  string(flipped),
		"truncated": value[:len(value)/2],
		"garbage":   "not-a-session",
		"empty-ish": "A",
		"oversized": strings.Repeat("A", 12000),
	} {
		b := testcaddy.NewBrowser(t)
		b.SetCookie(base, "_oauth2_proxy", v)
		resp, _ := b.Navigate(base + "/")
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), idp.AuthorizationEndpoint()) {
			t.Errorf("%s cookie: navigation got %d, want a new login", name, resp.StatusCode)
		}
		if resp, _ := b.Do("GET", base+"/api", "Accept: application/json"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s cookie: API call got %d, want 401", name, resp.StatusCode)
		}
	}
	// Forged chunks: too many, and with a gap.
	b := testcaddy.NewBrowser(t)
	for i := 0; i < 12; i++ {
		b.SetCookie(base, "_oauth2_proxy_"+strconv.Itoa(i), strings.Repeat("B", 1000))
	}
	if resp, _ := b.Navigate(base + "/"); resp.StatusCode != http.StatusFound {
		t.Errorf("forged chunks: %d, want a new login", resp.StatusCode)
	}
	b = testcaddy.NewBrowser(t)
	b.SetCookie(base, "_oauth2_proxy_0", value[:100])
	b.SetCookie(base, "_oauth2_proxy_2", value[100:])
	if resp, _ := b.Navigate(base + "/"); resp.StatusCode != http.StatusFound {
		t.Errorf("chunks with a gap: %d, want a new login", resp.StatusCode)
	}
	// Beyond Caddy's header limit the server itself answers 431, never a 5xx.
	b = testcaddy.NewBrowser(t)
	b.SetCookie(base, "_oauth2_proxy", strings.Repeat("A", 60000))
	if resp, _ := b.Navigate(base + "/"); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("60 KB cookie: %d, want 431", resp.StatusCode)
	}
	// The good session still works.
	if resp, _ := good.Navigate(base + "/"); resp.StatusCode != http.StatusOK {
		t.Errorf("the real session stopped working: %d", resp.StatusCode)
	}
}

func TestAuthorizationRulesGive403(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, "allowed_groups admins"))
	b := testcaddy.NewBrowser(t)
	resp, _ := b.Navigate(base + "/")
	resp, _ = b.Navigate(b.Authorize(resp.Header.Get("Location")))
	if resp.StatusCode != http.StatusForbidden || testcaddy.SetCookieNamed(resp, "_oauth2_proxy") != nil {
		t.Fatalf("user outside allowed_groups: %d, want 403 and no session", resp.StatusCode)
	}

	base2 := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, "allowed_groups design\n\t\tallowed_email_domains example.com"))
	if resp, body := testcaddy.NewBrowser(t).Login(base2 + "/"); resp.StatusCode != http.StatusOK {
		t.Errorf("allowed user: %d %s", resp.StatusCode, body)
	}
}

func TestIdPDownAtStartThenUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	idp := testcaddy.NewMockIdP(t, 0, false)
	m := idp.MockOIDC
	// The config points at an issuer nobody serves yet; loading must work.
	site := strings.Replace(testcaddy.SiteConfig(idp, ""), "issuer ", "issuer http://"+addr+"/oidc #", 1)
	base := testcaddy.StartCaddy(t, site)
	b := testcaddy.NewBrowser(t)
	resp, _ := b.Navigate(base + "/")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("IdP down: want 503, got %d", resp.StatusCode)
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	if err := m.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, _ = b.Navigate(base + "/")
		if resp.StatusCode == http.StatusFound || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("IdP back: want a login redirect, got %d", resp.StatusCode)
	}
	if resp, body := b.Login(base + "/"); resp.StatusCode != 200 {
		t.Errorf("login after IdP came back: %d %s", resp.StatusCode, body)
	}
}

func mustQuery(t *testing.T, rawURL, key string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil || u.Query().Get(key) == "" {
		t.Fatalf("no %s in %q", key, rawURL)
	}
	return u.Query().Get(key)
}

func TestUserInfoFetchAndUserIDClaim(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, "fetch_userinfo\n\t\tuser_id_claim email\n\t\tclaims preferred_username"))
	b := testcaddy.NewBrowser(t)
	resp, body := b.Login(base + "/")
	if resp.StatusCode != 200 || !strings.Contains(body, "id=jane.doe@example.com ") || !strings.Contains(body, "xfu=jane.doe@example.com ") {
		t.Fatalf("user_id_claim email: %d %s", resp.StatusCode, body)
	}
	_, body = b.Do("GET", base+"/oauth2/userinfo")
	var info struct {
		User   string              `json:"user"`
		Sub    string              `json:"sub"`
		Claims map[string][]string `json:"claims"`
	}
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		t.Fatal(err)
	}
	if info.User != "jane.doe@example.com" || info.Sub != "1234567890" || len(info.Claims["preferred_username"]) != 1 || info.Claims["preferred_username"][0] != "jane.doe" {
		t.Errorf("userinfo = %s", body)
	}
}

// TestSecretsStayOutOfLogsAndConfig gives the secrets as {env.*} and
// {file.*} placeholders, runs a login and a refresh, and checks that no
// secret or token shows up in Caddy's log or its /config/ output.
func TestSecretsStayOutOfLogsAndConfig(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 3*time.Second, false)
	secretFile := t.TempDir() + "/cookie-secret"
	if err := os.WriteFile(secretFile, []byte(testcaddy.TestSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OIDC_TEST_CLIENT_SECRET", idp.ClientSecret)
	site := testcaddy.SiteConfig(idp, "")
	site = strings.Replace(site, "client_secret "+idp.ClientSecret, "client_secret {env.OIDC_TEST_CLIENT_SECRET}", 1)
	site = strings.Replace(site, "secret "+testcaddy.TestSecret, "secret {file."+secretFile+"}", 1)
	base := testcaddy.StartCaddy(t, site)
	b := testcaddy.NewBrowser(t)
	if resp, body := b.Login(base + "/"); resp.StatusCode != 200 {
		t.Fatalf("login with placeholder secrets: %d %s", resp.StatusCode, body)
	}
	time.Sleep(2200 * time.Millisecond)
	if resp, _ := b.Navigate(base + "/"); resp.StatusCode != 200 || idp.Refreshes.Load() != 1 {
		t.Fatalf("refresh: %d, %d refreshes", resp.StatusCode, idp.Refreshes.Load())
	}
	b.Navigate(base + "/oauth2/sign_out")

	resp, err := http.Get(testcaddy.Running().AdminURL + "/config/")
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	logs, err := os.ReadFile(testcaddy.Running().LogFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logs), `"msg":"login"`) {
		t.Fatalf("the log has no login line; is it the right file?")
	}
	if !strings.Contains(string(cfg), "{env.OIDC_TEST_CLIENT_SECRET}") || !strings.Contains(string(cfg), "{file."+secretFile+"}") {
		t.Errorf("/config/ does not keep the placeholders: %s", cfg)
	}
	for what, text := range map[string]string{"log": string(logs), "/config/": string(cfg)} {
		for _, secret := range []string{testcaddy.TestSecret, idp.ClientSecret, "eyJ", b.Cookie(base, "_oauth2_proxy").String()} {
			if secret != "" && strings.Contains(text, secret) {
				t.Errorf("%s contains a secret or token (%.12s...)", what, secret)
			}
		}
	}
}

// TestAuthenticatedResponsesNotCached: a page made for a logged-in user
// gets Cache-Control: no-store unless the upstream chose its own, so the
// back button cannot show it again after logout.
func TestAuthenticatedResponsesNotCached(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	a, b, c := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	testcaddy.StartCaddySites(t, map[string]string{
		a: testcaddy.SiteConfig(idp, ""),
		b: "\theader Cache-Control \"private, max-age=60\"\n" + testcaddy.SiteConfig(idp, ""),
		c: testcaddy.SiteConfig(idp, "cache_control off"),
	})
	for addr, want := range map[string]string{a: "no-store", b: "private, max-age=60", c: ""} {
		br := testcaddy.NewBrowser(t)
		resp, _ := br.Login("http://" + addr + "/")
		if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != want {
			t.Errorf("site %s: %d, Cache-Control %q, want %q", addr, resp.StatusCode, resp.Header.Get("Cache-Control"), want)
		}
	}
}
