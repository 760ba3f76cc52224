package integration

// Regression tests of the request-path audit (issue 11), one per defect:
// each fails on the code before its fix. In-process Caddy and mockoidc,
// real Redis where Redis is involved.

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	headless "github.com/oidc-session/oidc_session/internal/browser"
	"github.com/oidc-session/oidc_session/internal/testcaddy"
	"github.com/oidc-session/oidc_session/internal/testenv"
	"github.com/oidc-session/oidc_session/internal/testredis"
)

// onGrant applies mw to the token requests of one grant type only.
func onGrant(grant string, mw func(http.Handler) http.Handler) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		rewritten := mw(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, mockoidc.TokenEndpoint) && r.PostForm.Get("grant_type") == grant {
				rewritten.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// loginLanding logs b in from target and returns the callback's Location:
// where the plugin sends the browser after the login.
func loginLanding(t *testing.T, b *testcaddy.Browser, target string) string {
	t.Helper()
	resp, _ := b.Navigate(target)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("GET %s: %d, want a login redirect", target, resp.StatusCode)
	}
	resp, body := b.Navigate(b.Authorize(resp.Header.Get("Location")))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("callback: %d %s", resp.StatusCode, body)
	}
	return resp.Header.Get("Location")
}

// TestSecurityOpenRedirectAfterLogin: an unauthenticated navigation to a
// path a browser reads as another host (//evil.example/...) must not come
// back from the login as a redirect there, in auto and redirect modes.
func TestSecurityOpenRedirectAfterLogin(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	for _, mode := range []string{"auto", "redirect"} {
		base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, "unauthenticated "+mode))
		for _, path := range []string{"//evil.example/", "//evil.example/%2e%2e", "///evil.example/", "//evil.example", "/%2F%2Fevil.example/", "/\\evil.example/"} {
			loc := loginLanding(t, testcaddy.NewBrowser(t), base+path)
			u, err := url.Parse(loc)
			if err != nil || u.Host != "" || strings.HasPrefix(loc, "//") || strings.Contains(loc, "\\") {
				t.Errorf("%s: after login %s sends the browser to %q", mode, path, loc)
			}
		}
		// A path of this site still comes back.
		if loc := loginLanding(t, testcaddy.NewBrowser(t), base+"/deep/page?x=1"); loc != "/deep/page?x=1" {
			t.Errorf("%s: /deep/page?x=1 came back as %q", mode, loc)
		}
	}
}

// TestSecurityUnverifiedEmailNotExposed: an email the IdP does not mark as
// verified never reaches the upstream, nor becomes the user id, unless
// allow_unverified_email says so.
func TestSecurityUnverifiedEmailNotExposed(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	unverified := &mockoidc.MockUser{Subject: "mallory", Email: "ceo@example.com", EmailVerified: false, PreferredUsername: "mallory"}

	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, "claims email"))
	idp.QueueUser(unverified)
	b := testcaddy.NewBrowser(t)
	resp, body := b.Login(base + "/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "id=mallory ") {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	if strings.Contains(body, "ceo@example.com") {
		t.Errorf("the unverified email reached the upstream: %s", body)
	}
	if _, ui := b.Do(http.MethodGet, base+"/oauth2/userinfo", "Accept: application/json"); strings.Contains(ui, "ceo@example.com") {
		t.Errorf("userinfo shows the unverified email: %s", ui)
	}

	// user_id_claim email: the login is refused, not made with that id.
	base = testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, "user_id_claim email"))
	idp.QueueUser(unverified)
	b = testcaddy.NewBrowser(t)
	resp, _ = b.Navigate(base + "/")
	resp, body = b.Navigate(b.Authorize(resp.Header.Get("Location")))
	if resp.StatusCode != http.StatusForbidden || testcaddy.SetCookieNamed(resp, sessionCookie) != nil {
		t.Errorf("user_id_claim email with an unverified email: %d %s, want 403 and no session", resp.StatusCode, body)
	}

	// allow_unverified_email: the operator accepts it.
	base = testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, "allow_unverified_email"))
	idp.QueueUser(unverified)
	if _, body := testcaddy.NewBrowser(t).Login(base + "/"); !strings.Contains(body, "email=ceo@example.com ") || !strings.Contains(body, "xfe=ceo@example.com ") {
		t.Errorf("allow_unverified_email: %s", body)
	}
}

// TestSecurityBackchannelNotStarved: junk POSTs to the back-channel
// endpoint do not use up anything the IdP's valid logout token needs.
func TestSecurityBackchannelNotStarved(t *testing.T) {
	idp := testcaddy.NewMockIdP(t, 0, false)
	var jwksFetches atomic.Int32
	if err := idp.AddMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, mockoidc.JWKSEndpoint) {
				jwksFetches.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	}); err != nil {
		t.Fatal(err)
	}
	testcaddy.StartIdP(t, idp)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, storeNamed("memory").Config(t)))
	alice := testcaddy.LoginAs(t, idp, base, "alice")

	forger, err := mockoidc.RandomKeypair(2048)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 70; i++ {
		junk := []string{"not.a.token", "", strings.Repeat("A", 2000)}[i%3]
		if code, _ := postLogout(t, base, junk); code != http.StatusBadRequest {
			t.Fatalf("junk logout POST %d: %d, want 400", i, code)
		}
	}
	for i := 0; i < 70; i++ {
		// Well-formed, signed with a key that is not the IdP's.
		if code, _ := postLogout(t, base, logoutToken(t, idp, forger, "alice", nil)); code == http.StatusOK {
			t.Fatalf("forged logout token accepted")
		}
	}
	if code, body := postLogout(t, base, logoutToken(t, idp, idp.Keypair, "alice", nil)); code != http.StatusOK {
		t.Fatalf("the IdP's logout token after a flood: %d %s, want 200", code, body)
	}
	if resp, _ := alice.Navigate(base + "/"); resp.StatusCode != http.StatusFound {
		t.Errorf("alice's session survived the logout: %d", resp.StatusCode)
	}
	if n := jwksFetches.Load(); n > 2 {
		t.Errorf("%d JWKS fetches for 140 junk and forged tokens", n)
	}
}

// sidIDTokens re-signs the ID tokens of code grants with a sid claim and
// those of refresh grants without one, as many IdPs issue them.
func sidIDTokens(t *testing.T, idp *testcaddy.MockIdP, sid string) {
	t.Helper()
	for grant, withSID := range map[string]bool{"authorization_code": true, "refresh_token": false} {
		if err := idp.AddMiddleware(onGrant(grant, rewriteIDToken(func(_ string, c jwt.MapClaims) string {
			if withSID {
				c["sid"] = sid
			} else {
				delete(c, "sid")
			}
			return signWith(t, idp.Keypair, c)
		}))); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSecuritySIDSurvivesRefresh: a refreshed ID token without sid keeps
// the login's, so a logout by sid still ends the session; a logout token
// naming sid and another sub ends nothing.
func TestSecuritySIDSurvivesRefresh(t *testing.T) {
	idp := testcaddy.NewMockIdP(t, 3*time.Second, false)
	sidIDTokens(t, idp, "idp-session-1")
	testcaddy.StartIdP(t, idp)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, storeNamed("memory").Config(t)))
	b := testcaddy.LoginAs(t, idp, base, "alice")
	time.Sleep(2200 * time.Millisecond)
	if resp, _ := b.Navigate(base + "/"); resp.StatusCode != http.StatusOK || idp.Refreshes.Load() != 1 {
		t.Fatalf("refresh: %d, %d refreshes", resp.StatusCode, idp.Refreshes.Load())
	}
	bySIDOf := func(sub string) string {
		return logoutToken(t, idp, idp.Keypair, sub, func(c jwt.MapClaims) { c["sid"] = "idp-session-1" })
	}
	if code, body := postLogout(t, base, bySIDOf("bob")); code != http.StatusOK {
		t.Fatalf("logout of sid for bob: %d %s", code, body)
	}
	if resp, _ := b.Navigate(base + "/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("a logout token for sid and another sub ended alice's session: %d", resp.StatusCode)
	}
	if code, body := postLogout(t, base, bySIDOf("alice")); code != http.StatusOK {
		t.Fatalf("logout of sid for alice: %d %s", code, body)
	}
	if resp, _ := b.Navigate(base + "/"); resp.StatusCode != http.StatusFound {
		t.Errorf("alice's session survived the logout of its sid after a refresh: %d", resp.StatusCode)
	}
}

// TestSecurityLogoutRetryAfterStoreOutage: a logout token answered 503
// because Redis was down is accepted when the IdP sends it again.
func TestSecurityLogoutRetryAfterStoreOutage(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{Args: []string{"--appendonly", "yes", "--appendfsync", "always"}})
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, testcaddy.StoreBlock("redis", "url "+srv.URL(), "dial_timeout 200ms")))
	alice := testcaddy.LoginAs(t, idp, base, "alice")
	tok := logoutToken(t, idp, idp.Keypair, "alice", nil)
	srv.Stop()
	if code, body := postLogout(t, base, tok); code != http.StatusServiceUnavailable {
		t.Fatalf("logout with Redis down: %d %s, want 503", code, body)
	}
	srv.Restart(t)
	if code, body := postLogout(t, base, tok); code != http.StatusOK {
		t.Fatalf("the IdP's retry of the same token: %d %s, want 200", code, body)
	}
	if resp, _ := alice.Navigate(base + "/"); resp.StatusCode != http.StatusFound {
		t.Errorf("alice's session survived: %d", resp.StatusCode)
	}
	if code, body := postLogout(t, base, tok); code != http.StatusBadRequest || !strings.Contains(body, "replay") {
		t.Errorf("a third time: %d %s, want 400 replay", code, body)
	}
}

// TestSecurityFrontchannelLogoutCSRF: another site cannot log the user out
// by navigating to frontchannel_logout; the IdP's iframe still can, and a
// session with a sid needs that sid.
func TestSecurityFrontchannelLogoutCSRF(t *testing.T) {
	idp := testcaddy.NewMockIdP(t, 0, false)
	sidIDTokens(t, idp, "idp-session-1")
	testcaddy.StartIdP(t, idp)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, storeNamed("memory").Config(t)))
	b := testcaddy.LoginAs(t, idp, base, "alice")
	fc := base + "/oauth2/frontchannel_logout"
	withSID := fc + "?" + url.Values{"iss": {idp.Issuer()}, "sid": {"idp-session-1"}}.Encode()
	crossDoc := []string{"Sec-Fetch-Site: cross-site", "Sec-Fetch-Dest: document", "Sec-Fetch-Mode: navigate"}
	iframe := []string{"Sec-Fetch-Site: cross-site", "Sec-Fetch-Dest: iframe", "Sec-Fetch-Mode: navigate"}

	if resp, _ := b.Do(http.MethodGet, fc, crossDoc...); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site navigation without parameters: %d, want 403", resp.StatusCode)
	}
	// Cookieless, as a forged link from another site would be.
	if resp, _ := testcaddy.NewBrowser(t).Do(http.MethodGet, withSID, crossDoc...); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site navigation with iss and sid: %d, want 403", resp.StatusCode)
	}
	// The IdP's iframe without iss and sid cannot end a session that has one.
	if resp, _ := b.Do(http.MethodGet, fc, iframe...); resp.StatusCode != http.StatusOK {
		t.Errorf("iframe without parameters: %d", resp.StatusCode)
	}
	if resp, _ := b.Navigate(base + "/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the session ended: %d", resp.StatusCode)
	}
	// The IdP's iframe with iss and sid, cookieless (a Lax cookie is not
	// sent to a cross-site frame): the sid index ends it.
	if resp, _ := testcaddy.NewBrowser(t).Do(http.MethodGet, withSID, iframe...); resp.StatusCode != http.StatusOK {
		t.Errorf("iframe with iss and sid: %d", resp.StatusCode)
	}
	if resp, _ := b.Navigate(base + "/"); resp.StatusCode != http.StatusFound {
		t.Errorf("front-channel logout by sid did not end the session: %d", resp.StatusCode)
	}
}

// TestSecurityIDTokenNotInAccessLog: RP-initiated logout does not put the
// user's ID token in a response header that Caddy's access log records.
func TestSecurityIDTokenNotInAccessLog(t *testing.T) {
	idp := testcaddy.NewMockIdP(t, 0, true)
	var idToken atomic.Value
	idToken.Store("")
	if err := idp.AddMiddleware(rewriteIDToken(func(raw string, _ jwt.MapClaims) string {
		idToken.Store(raw)
		return raw
	})); err != nil {
		t.Fatal(err)
	}
	testcaddy.StartIdP(t, idp)
	accessLog := t.TempDir() + "/access.log"
	base := testcaddy.StartCaddy(t, fmt.Sprintf("\tlog {\n\t\toutput file %s\n\t}\n", accessLog)+testcaddy.SiteConfig(idp, ""))
	b := testcaddy.NewBrowser(t)
	b.Login(base + "/")
	resp, body := b.Navigate(base + "/oauth2/sign_out")
	form := testcaddy.EndSessionForm(t, resp, body)
	tok := idToken.Load().(string)
	if tok == "" || form.Fields.Get("id_token_hint") != tok {
		t.Fatalf("id_token_hint %q, want the login's ID token", form.Fields.Get("id_token_hint"))
	}
	for name, values := range resp.Header {
		if strings.Contains(strings.Join(values, " "), tok[:40]) {
			t.Errorf("response header %s carries the ID token", name)
		}
	}
	_ = caddy.Stop() // flush the access log
	logged, err := os.ReadFile(accessLog)
	if err != nil || !bytes.Contains(logged, []byte("/oauth2/sign_out")) {
		t.Fatalf("access log: %v\n%s", err, logged)
	}
	if bytes.Contains(logged, []byte(tok[strings.LastIndexByte(tok, '.')+1:])) || bytes.Contains(logged, []byte(tok[:40])) {
		t.Errorf("the ID token is in the access log")
	}
}

// bigGroups is a user whose groups make a cookie-store session take three
// cookie chunks.
func bigGroups(sub string) *mockoidc.MockUser {
	groups := make([]string, 260)
	for i := range groups {
		groups[i] = "group-" + rand.Text()
	}
	return &mockoidc.MockUser{Subject: sub, Email: sub + "@example.com", EmailVerified: true, Groups: groups}
}

// TestSecurityPendingLoginsFitHeaderLimit: pending logins with long return
// URLs beside a 3-chunk session never push a request past Caddy's 16 KiB
// header limit (431 for every request, sign_out included).
func TestSecurityPendingLoginsFitHeaderLimit(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, "max_login_flows 5"))
	b := testcaddy.NewBrowser(t)
	idp.QueueUser(bigGroups("big"))
	if resp, body := b.Login(base + "/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	if b.Cookie(base, sessionCookie+"_2") == nil {
		t.Fatal("fixture: the session does not take three cookie chunks")
	}
	long := "/" + strings.Repeat("x", 1000) + "?q=" + strings.Repeat("y", 980)
	for i := 0; i < 5; i++ {
		if resp, _ := b.Navigate(base + "/oauth2/start?rd=" + url.QueryEscape(long+fmt.Sprint(i))); resp.StatusCode != http.StatusFound {
			t.Fatalf("start %d: %d", i, resp.StatusCode)
		}
	}
	u, _ := url.Parse(base)
	size := 0
	for _, c := range b.Client.Jar.Cookies(u) {
		size += len(c.Name) + len(c.Value) + 3
	}
	if size > 14<<10 {
		t.Errorf("the browser's cookies for the site take %d bytes", size)
	}
	if resp, _ := b.Navigate(base + "/"); resp.StatusCode != http.StatusOK {
		t.Errorf("page: %d", resp.StatusCode)
	}
	if resp, _ := b.Navigate(base + "/oauth2/sign_out"); resp.StatusCode != http.StatusFound {
		t.Errorf("sign_out: %d, want 302", resp.StatusCode)
	}
	// sign_out also drops the pending logins.
	for _, c := range b.Client.Jar.Cookies(u) {
		if strings.HasPrefix(c.Name, sessionCookie) {
			t.Errorf("cookie %s left after sign_out", c.Name)
		}
	}
}

// TestSecurityTwoHandlersOneMemoryStore: two oidc_session handlers on the
// same memory store, an IdP that rotates refresh tokens and refuses reuse:
// one handler's refresh must not leave the other redeeming the spent token.
func TestSecurityTwoHandlersOneMemoryStore(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 3*time.Second, false)
	idp.Rotate.Store(true)
	a, c := testenv.FreeAddr(t), testenv.FreeAddr(t)
	testcaddy.StartCaddySites(t, map[string]string{a: testcaddy.SiteConfig(idp, storeNamed("memory").Config(t)), c: testcaddy.SiteConfig(idp, storeNamed("memory").Config(t))})
	baseA, baseC := "http://"+a, "http://"+c
	b := testcaddy.NewBrowser(t) // cookies are per host, not port: both sites see the session
	b.Login(baseA + "/")
	if resp, _ := b.Navigate(baseC + "/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("second handler: %d", resp.StatusCode)
	}
	time.Sleep(2200 * time.Millisecond)
	for round := 0; round < 3; round++ {
		for _, base := range []string{baseA, baseC} {
			if resp, _ := b.Navigate(base + "/"); resp.StatusCode != http.StatusOK {
				t.Fatalf("round %d at %s: %d", round, base, resp.StatusCode)
			}
		}
	}
	if n := idp.Reused.Load(); n != 0 || idp.Refreshes.Load() != 1 {
		t.Errorf("%d refresh tokens redeemed twice, %d refreshes; want 0 and 1", n, idp.Refreshes.Load())
	}
}

// TestSecurityRefreshRefusals: a final refusal other than invalid_grant
// ends the session; an IdP that cannot be reached is not called on every
// request.
func TestSecurityRefreshRefusals(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 3*time.Second, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))

	// Unreachable: the session is kept and the IdP asked again only after
	// a growing wait.
	b := testcaddy.NewBrowser(t)
	b.Login(base + "/")
	time.Sleep(2200 * time.Millisecond)
	idp.FailRefresh.Store("unavailable")
	before := idp.Refreshes.Load()
	for i := 0; i < 20; i++ {
		if resp, _ := b.Navigate(base + "/"); resp.StatusCode != http.StatusOK {
			t.Fatalf("IdP down, request %d: %d", i, resp.StatusCode)
		}
	}
	if n := idp.Refreshes.Load() - before; n != 1 {
		t.Errorf("%d refresh attempts for 20 quick requests with the IdP down, want 1", n)
	}

	// invalid_client (any final 4xx): the session ends.
	idp.FailRefresh.Store("invalid_client")
	time.Sleep(1100 * time.Millisecond) // past the wait
	resp, _ := b.Navigate(base + "/")
	if resp.StatusCode != http.StatusFound || !clearsSession(resp) {
		t.Errorf("invalid_client: %d, want a new login and the cookie cleared", resp.StatusCode)
	}
}

// TestSecurityRefreshedIDTokenRejected: a refreshed ID token that fails
// verification ends the session instead of being retried forever.
func TestSecurityRefreshedIDTokenRejected(t *testing.T) {
	idp := testcaddy.NewMockIdP(t, 3*time.Second, false)
	if err := idp.AddMiddleware(onGrant("refresh_token", rewriteIDToken(func(_ string, c jwt.MapClaims) string {
		c["aud"] = "another-client"
		return signWith(t, idp.Keypair, c)
	}))); err != nil {
		t.Fatal(err)
	}
	testcaddy.StartIdP(t, idp)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	b := testcaddy.NewBrowser(t)
	b.Login(base + "/")
	time.Sleep(2200 * time.Millisecond)
	resp, _ := b.Navigate(base + "/")
	if resp.StatusCode != http.StatusFound || !clearsSession(resp) {
		t.Errorf("refreshed ID token for another audience: %d, want a new login", resp.StatusCode)
	}
	if n := idp.Refreshes.Load(); n != 1 {
		t.Errorf("%d refreshes, want 1", n)
	}
}

// TestSecuritySignOutDuringStoreOutage: sign_out that cannot end the
// session in Redis says so and keeps the cookie; a later sign_out works
// and kills every copy.
func TestSecuritySignOutDuringStoreOutage(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{Args: []string{"--appendonly", "yes", "--appendfsync", "always"}})
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, testcaddy.StoreBlock("redis", "url "+srv.URL(), "dial_timeout 200ms")))
	b := testcaddy.LoginAs(t, idp, base, "alice")
	copied := sessionCookie + "=" + b.Cookie(base, sessionCookie).Value
	srv.Stop()
	resp, _ := b.Navigate(base + "/oauth2/sign_out")
	if resp.StatusCode != http.StatusServiceUnavailable || clearsSession(resp) {
		t.Fatalf("sign_out with Redis down: %d (cleared: %v), want 503 and the cookie kept", resp.StatusCode, clearsSession(resp))
	}
	srv.Restart(t)
	if resp, _ := withCookies(t, base+"/", copied, "Accept: text/html", "Sec-Fetch-Mode: navigate"); resp.StatusCode != http.StatusOK {
		t.Fatalf("session after Redis came back: %d", resp.StatusCode)
	}
	if resp, _ := b.Navigate(base + "/oauth2/sign_out"); resp.StatusCode != http.StatusFound || !clearsSession(resp) {
		t.Fatalf("sign_out: %d", resp.StatusCode)
	}
	expectNoSession(t, base, copied, "copy of a cookie signed out")
}

// TestSecurityAzp: an ID token for several audiences must name this client
// as its authorized party.
func TestSecurityAzp(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(c jwt.MapClaims, client string)
		ok   bool
	}{
		{"several audiences, no azp", func(c jwt.MapClaims, client string) { c["aud"] = []string{client, "other"} }, false},
		{"azp of another client", func(c jwt.MapClaims, client string) { c["aud"] = []string{client, "other"}; c["azp"] = "other" }, false},
		{"azp of another client, one audience", func(c jwt.MapClaims, client string) { c["azp"] = "other" }, false},
		{"several audiences, azp this client", func(c jwt.MapClaims, client string) { c["aud"] = []string{client, "other"}; c["azp"] = client }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idp := testcaddy.NewMockIdP(t, 0, false)
			if err := idp.AddMiddleware(rewriteIDToken(func(_ string, c jwt.MapClaims) string {
				tc.edit(c, idp.ClientID)
				return signWith(t, idp.Keypair, c)
			})); err != nil {
				t.Fatal(err)
			}
			testcaddy.StartIdP(t, idp)
			base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
			b := testcaddy.NewBrowser(t)
			resp, _ := b.Navigate(base + "/")
			resp, body := b.Navigate(b.Authorize(resp.Header.Get("Location")))
			if got := resp.StatusCode == http.StatusFound; got != tc.ok {
				t.Errorf("callback: %d %s (accepted %v, want %v)", resp.StatusCode, body, got, tc.ok)
			}
		})
	}
}

// TestSecurityHostPrefixCookie: a __Host- cookie name works (session
// chunks and flow cookies keep the prefix's rules) and a configuration
// that breaks the prefix's rules is refused.
func TestSecurityHostPrefixCookie(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	site := strings.Replace(testcaddy.SiteConfig(idp, ""), "secure off", "secure on\n\t\t\tname __Host-app", 1)
	base := testcaddy.StartCaddy(t, site)
	resp, _ := testcaddy.NewBrowser(t).Navigate(base + "/")
	var flow *http.Cookie
	for _, c := range resp.Cookies() {
		if strings.HasPrefix(c.Name, "__Host-app_flow_") {
			flow = c
		}
	}
	if flow == nil || !flow.Secure || flow.Path != "/" || flow.Domain != "" {
		t.Fatalf("flow cookie %+v: want __Host-app_flow_*, Secure, Path=/, no Domain", flow)
	}
	// The plain-http test site cannot carry Secure cookies in a browser's
	// jar: play the browser by hand.
	cb := testcaddy.NewBrowser(t).Authorize(resp.Header.Get("Location"))
	resp, body := testcaddy.NewBrowser(t).Do(http.MethodGet, cb, "Cookie: "+flow.Name+"="+flow.Value)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("callback: %d %s", resp.StatusCode, body)
	}
	sess := testcaddy.SetCookieNamed(resp, "__Host-app")
	if sess == nil || !sess.Secure || sess.Path != "/" || sess.Domain != "" {
		t.Fatalf("session cookie %+v", sess)
	}
	if resp, body := withCookies(t, base+"/", "__Host-app="+sess.Value); resp.StatusCode != http.StatusOK || !strings.HasSuffix(body, "cookie=") {
		t.Errorf("with the __Host- session cookie: %d %s (the cookie must not reach the upstream)", resp.StatusCode, body)
	}

	for _, bad := range []string{"secure off\n\t\t\tname __Host-app", "name __Host-app\n\t\t\tdomain example.com", "name __Host-app\n\t\t\tpath /app", "secure off\n\t\t\tname __Secure-app"} {
		cfg := testcaddy.GlobalOptions(testenv.FreeAddr(t), t.TempDir(), "discard", "ERROR") + "http://" + testenv.FreeAddr(t) + " {\n" + strings.Replace(testcaddy.SiteConfig(idp, ""), "secure off", bad, 1) + "}\n"
		if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil); err == nil || !strings.Contains(err.Error(), "__") {
			t.Errorf("cookie %q accepted (%v)", bad, err)
		}
	}
}

// TestSecurityTrustedProxyScheme: behind a TLS-terminating proxy that the
// server trusts, the callback URL is https; the same header from anyone
// else changes nothing.
func TestSecurityTrustedProxyScheme(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	for _, tc := range []struct {
		trusted string
		want    string
	}{{"127.0.0.1/32", "https://"}, {"10.9.9.9/32", "http://"}} {
		addr := testenv.FreeAddr(t)
		testcaddy.StartCaddyServers(t, map[string]string{addr: testcaddy.SiteConfig(idp, "")}, "trusted_proxies static "+tc.trusted)
		resp, _ := testcaddy.NewBrowser(t).Navigate("http://"+addr+"/", "X-Forwarded-Proto: https")
		auth, _ := url.Parse(resp.Header.Get("Location"))
		if got := auth.Query().Get("redirect_uri"); !strings.HasPrefix(got, tc.want+addr+"/oauth2/callback") {
			t.Errorf("trusted_proxies %s: redirect_uri %q, want %s...", tc.trusted, got, tc.want)
		}
	}
}

// TestSecurityUserInfoAuthorized: a session the rules no longer admit (the
// rules changed since its login) gets 403 from userinfo too.
func TestSecurityUserInfoAuthorized(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	addr := testenv.FreeAddr(t)
	base := testcaddy.StartCaddyOn(t, addr, testcaddy.SiteConfig(idp, ""))
	b := testcaddy.LoginAs(t, idp, base, "alice")
	testcaddy.StartCaddyOn(t, addr, testcaddy.SiteConfig(idp, "allowed_groups admins"))
	if resp, _ := b.Navigate(base + "/"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("page for a user outside allowed_groups: %d", resp.StatusCode)
	}
	if resp, body := b.Do(http.MethodGet, base+"/oauth2/userinfo"); resp.StatusCode != http.StatusForbidden || strings.Contains(body, "alice") {
		t.Errorf("userinfo for a user outside allowed_groups: %d %s, want 403", resp.StatusCode, body)
	}
}

// TestSecurityGroupsWithCommas: a group name with a comma stays one group
// for an upstream that splits X-Forwarded-Groups on commas.
func TestSecurityGroupsWithCommas(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	idp.QueueUser(&mockoidc.MockUser{Subject: "u", Email: "u@example.com", EmailVerified: true, Groups: []string{"staff,admins", "100%", "plain"}})
	_, body := testcaddy.NewBrowser(t).Login(base + "/")
	if !strings.Contains(body, "groups=staff%2Cadmins,100%25,plain ") {
		t.Errorf("groups as the upstream sees them: %s", body)
	}
}

// Found by review of the fixes above: each of these failed on them.

// TestSecurityPendingLoginsThenBigSession: pending logins started while
// there was no session, then one of them completes with a 3-chunk
// session: the callback itself trims the flows, over HTTP/1 and HTTP/2
// (which counts 32 bytes more per cookie, and is what browsers use).
func TestSecurityPendingLoginsThenBigSession(t *testing.T) {
	for _, proto := range []string{"h1", "h2c"} {
		t.Run(proto, func(t *testing.T) {
			idp := testcaddy.StartMockIdP(t, 0, false)
			addr := testenv.FreeAddr(t)
			testcaddy.StartCaddyServers(t, map[string]string{addr: testcaddy.SiteConfig(idp, "")}, "protocols h1 h2c")
			base := "http://" + addr
			b := testcaddy.NewBrowser(t)
			site := &http.Transport{Protocols: new(http.Protocols)}
			if proto == "h2c" {
				site.Protocols.SetUnencryptedHTTP2(true)
			} else {
				site.Protocols.SetHTTP1(true)
			}
			long := "/" + strings.Repeat("x", 1000) + "?q=" + strings.Repeat("y", 980)
			var auths []string
			b.Client.Transport = site
			for i := 0; i < 5; i++ {
				resp, _ := b.Navigate(base + "/oauth2/start?rd=" + url.QueryEscape(long+fmt.Sprint(i)))
				if resp.StatusCode != http.StatusFound {
					t.Fatalf("start %d: %d", i, resp.StatusCode)
				}
				auths = append(auths, resp.Header.Get("Location"))
			}
			idp.QueueUser(bigGroups("big"))
			b.Client.Transport = http.DefaultTransport // the IdP speaks HTTP/1
			cb := b.Authorize(auths[4])
			b.Client.Transport = site
			if resp, body := b.Navigate(cb); resp.StatusCode != http.StatusFound {
				t.Fatalf("callback: %d %s", resp.StatusCode, body)
			}
			if b.Cookie(base, sessionCookie+"_2") == nil {
				t.Fatal("fixture: the session does not take three cookie chunks")
			}
			u, _ := url.Parse(base)
			size := 0
			for _, c := range b.Client.Jar.Cookies(u) {
				size += len(c.Name) + len(c.Value) + 3 + 32
			}
			if size > 13<<10 {
				t.Errorf("the browser's cookies take %d bytes as HTTP/2 counts them", size)
			}
			for _, p := range []string{"/", "/oauth2/sign_out"} {
				req, _ := http.NewRequest(http.MethodGet, base+p, nil)
				req.Header.Set("Sec-Fetch-Mode", "navigate")
				resp, err := b.Client.Do(req)
				if err != nil {
					t.Fatalf("%s: %v (the request does not fit the server's header limit)", p, err)
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusRequestHeaderFieldsTooLarge {
					t.Errorf("%s: 431, the browser is locked out", p)
				}
			}
		})
	}
}

// TestSecurityRefreshRateLimited: a 429 (or any answer that is not an
// OAuth error) from the token endpoint is the IdP not answering now, not
// its final word: the session goes on.
func TestSecurityRefreshRateLimited(t *testing.T) {
	idp := testcaddy.NewMockIdP(t, 3*time.Second, false)
	if err := idp.AddMiddleware(onGrant("refresh_token", func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "5")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, `{"error":"slow_down"}`)
		})
	})); err != nil {
		t.Fatal(err)
	}
	testcaddy.StartIdP(t, idp)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	b := testcaddy.LoginAs(t, idp, base, "alice")
	time.Sleep(2200 * time.Millisecond)
	if resp, _ := b.Navigate(base + "/"); resp.StatusCode != http.StatusOK || clearsSession(resp) {
		t.Errorf("a 429 to the refresh ended the session: %d", resp.StatusCode)
	}
}

// TestSecurityJWKSDown: the IdP's keys cannot be fetched when a refreshed
// ID token names a new key, or at login: the session goes on, and the login
// is answered unavailable_status (retry), not 400.
func TestSecurityJWKSDown(t *testing.T) {
	newKey, err := mockoidc.RandomKeypair(2048)
	if err != nil {
		t.Fatal(err)
	}
	var rotated, jwksDown atomic.Bool
	idp := testcaddy.NewMockIdP(t, 3*time.Second, false)
	if err := idp.AddMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, mockoidc.JWKSEndpoint) && jwksDown.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			next.ServeHTTP(w, r)
		})
	}); err != nil {
		t.Fatal(err)
	}
	if err := idp.AddMiddleware(onGrant("refresh_token", rewriteIDToken(func(raw string, c jwt.MapClaims) string {
		if rotated.Load() {
			return signWith(t, newKey, c)
		}
		return raw
	}))); err != nil {
		t.Fatal(err)
	}
	testcaddy.StartIdP(t, idp)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	b := testcaddy.LoginAs(t, idp, base, "alice")
	time.Sleep(2200 * time.Millisecond)
	rotated.Store(true)
	jwksDown.Store(true)
	if resp, _ := b.Navigate(base + "/"); resp.StatusCode != http.StatusOK || clearsSession(resp) {
		t.Errorf("a JWKS outage during a refresh ended the session: %d", resp.StatusCode)
	}

	// A new Caddy (no keys fetched yet) while the JWKS is down: the login
	// cannot be judged.
	base = testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	nb := testcaddy.NewBrowser(t)
	resp, _ := nb.Navigate(base + "/")
	if resp, body := nb.Navigate(nb.Authorize(resp.Header.Get("Location"))); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("login with the JWKS down: %d %s, want 503", resp.StatusCode, body)
	}
}

// TestSecurityRefreshKeepsProfileClaims: a refreshed ID token with only
// the protocol claims (OIDC Core 12.2 does not require the others) keeps
// the login's email and groups: no logout with user_id_claim email, no
// 403 from the rules.
func TestSecurityRefreshKeepsProfileClaims(t *testing.T) {
	for _, extra := range []string{"user_id_claim email", "allowed_email_domains example.com"} {
		t.Run(extra, func(t *testing.T) {
			idp := testcaddy.NewMockIdP(t, 3*time.Second, false)
			if err := idp.AddMiddleware(onGrant("refresh_token", rewriteIDToken(func(_ string, c jwt.MapClaims) string {
				for _, k := range []string{"email", "email_verified", "name", "preferred_username", "groups"} {
					delete(c, k)
				}
				return signWith(t, idp.Keypair, c)
			}))); err != nil {
				t.Fatal(err)
			}
			testcaddy.StartIdP(t, idp)
			base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, extra))
			b := testcaddy.NewBrowser(t)
			b.LoginAs(idp, base, "alice")
			time.Sleep(2200 * time.Millisecond)
			resp, body := b.Navigate(base + "/")
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, "email=alice@example.com ") || idp.Refreshes.Load() != 1 {
				t.Errorf("after a refresh without profile claims: %d %s (%d refreshes)", resp.StatusCode, body, idp.Refreshes.Load())
			}
		})
	}
}

// TestSecurityFrontchannelFramedByOtherSite: without iss and sid, a
// cross-site request to frontchannel_logout must come from the IdP.
func TestSecurityFrontchannelFramedByOtherSite(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	b := testcaddy.LoginAs(t, idp, base, "alice")
	frame := []string{"Sec-Fetch-Site: cross-site", "Sec-Fetch-Dest: iframe", "Sec-Fetch-Mode: navigate"}
	resp, _ := b.Do(http.MethodGet, base+"/oauth2/frontchannel_logout", append(frame, "Referer: https://evil.example/")...)
	if resp.StatusCode != http.StatusForbidden || clearsSession(resp) {
		t.Errorf("framed by another site: %d (cleared %v)", resp.StatusCode, clearsSession(resp))
	}
	resp, _ = b.Do(http.MethodGet, base+"/oauth2/frontchannel_logout", append(frame, "Referer: "+idp.Issuer()+"/logout")...)
	if resp.StatusCode != http.StatusOK || !clearsSession(resp) {
		t.Errorf("framed by the IdP: %d (cleared %v)", resp.StatusCode, clearsSession(resp))
	}
}

// TestSecurityEndSessionPageInChromium: Chromium runs the end_session
// page's script under its CSP and posts the form (nothing of it in a URL);
// where a site-wide CSP blocks the script, the page still shows a button
// that does it.
func TestSecurityEndSessionPageInChromium(t *testing.T) {
	headless.ExecPath(t)
	for name, siteExtra := range map[string]string{"plain": "", "site CSP": "\theader >Content-Security-Policy \"default-src 'self'\"\n"} {
		t.Run(name, func(t *testing.T) {
			var posted atomic.Value
			posted.Store("")
			idp := testcaddy.NewMockIdP(t, 0, true)
			idp.EndSession = strings.TrimPrefix(mockoidc.UserinfoEndpoint, "/oidc") // a path whose chain runs this middleware
			if err := idp.AddMiddleware(func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if strings.HasSuffix(r.URL.Path, idp.EndSession) {
						_ = r.ParseForm()
						posted.Store(fmt.Sprintf("%s hint=%v query=%q", r.Method, r.PostForm.Get("id_token_hint") != "", r.URL.RawQuery))
						_, _ = io.WriteString(w, "<!doctype html><title>idp</title><p>IdP logged out</p>")
						return
					}
					next.ServeHTTP(w, r)
				})
			}); err != nil {
				t.Fatal(err)
			}
			testcaddy.StartIdP(t, idp)
			_, port, _ := net.SplitHostPort(testenv.FreeAddr(t))
			base := "http://localhost:" + port
			testcaddy.StartCaddySites(t, map[string]string{"localhost:" + port: siteExtra + testcaddy.SiteConfig(idp, "")})
			tab := headless.Start(t, 60*time.Second).First
			if err := chromedp.Do(tab.Ctx, chromedp.Navigate(base+"/")); err != nil {
				t.Fatal(err)
			}
			if _, err := headless.WaitPage(tab.Ctx, 10*time.Second, func(p headless.Page) bool { return strings.Contains(p.Text, "id=") }); err != nil {
				t.Fatal(err)
			}
			if err := chromedp.Do(tab.Ctx, chromedp.Navigate(base+"/oauth2/sign_out")); err != nil {
				t.Fatal(err)
			}
			if siteExtra != "" {
				// The script is blocked: the user presses the button.
				if err := chromedp.Do(tab.Ctx, chromedp.Click(chromedp.CSS(`form button[type="submit"]`))); err != nil {
					t.Fatalf("no button to press: %v", err)
				}
			}
			p, err := headless.WaitPage(tab.Ctx, 10*time.Second, func(headless.Page) bool { return posted.Load().(string) != "" })
			if err != nil || posted.Load().(string) != `POST hint=true query=""` {
				t.Errorf("the end_session form was not posted: %v %q\n%s", err, posted.Load(), p.HTML)
			}
		})
	}
}
