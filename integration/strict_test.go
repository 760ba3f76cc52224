package integration

// Issue 13 against a certified OP with its default settings (oidc-provider:
// email and profile claims only from userinfo for the code flow,
// offline_access only with prompt=consent, the RFC 9207 iss parameter),
// and the edge cases against mockoidc.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/oidc-session/oidc_session/internal/testcaddy"
	"github.com/oidc-session/oidc_session/internal/testenv"
	"github.com/oidc-session/oidc_session/internal/testidp"
)

// opSite is a site protected by oidc-provider's basic client, with extra
// subdirectives, whose page shows the identity.
func opSite(op *testidp.OIDCProvider, extra string) string {
	return fmt.Sprintf(`	oidc_session {
		issuer %s
		client_id %s
		client_secret %s
		scopes openid email profile groups offline_access
		claims acr
		cookie {
			secret %s
			secure off
		}
		%s
	}
	respond "id={http.auth.user.id} email={http.auth.user.email} name={http.auth.user.name} groups={http.auth.user.groups} acr={http.auth.user.acr}" 200
`, op.Issuer, op.Basic.ID, op.Basic.Secret, testcaddy.TestSecret, extra)
}

// opLogin logs b in at the OP from target (a protected page) and returns
// the page it lands on.
func opLogin(t *testing.T, op *testidp.OIDCProvider, b *testcaddy.Browser, target string) (*http.Response, string) {
	t.Helper()
	resp, _ := b.Navigate(target)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("GET %s: %d, want a login redirect", target, resp.StatusCode)
	}
	cb, err := op.Login(b.Client, resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("login at the OP: %v\n%s", err, op.LogTail(20))
	}
	cb.Body.Close()
	loc, err := cb.Location()
	if err != nil {
		t.Fatalf("the OP did not send the browser back: %d", cb.StatusCode)
	}
	resp, body := b.Navigate(loc.String())
	if resp.StatusCode != http.StatusFound {
		return resp, body
	}
	return b.Navigate(testcaddy.Resolve(target, resp.Header.Get("Location")))
}

// TestStrictIdPDefaults: with the README's shortest config, a certified
// OP's user has email, name and groups (from userinfo), and a refresh
// token (prompt=consent sent with offline_access), so the session refreshes.
func TestStrictIdPDefaults(t *testing.T) {
	addr, addrOff := testenv.FreeAddr(t), testenv.FreeAddr(t)
	op := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{
		RedirectURIs:   []string{"http://" + addr + "/oauth2/callback", "http://" + addrOff + "/oauth2/callback"},
		AccessTokenTTL: 4 * time.Second,
	})
	base := testcaddy.StartCaddyOn(t, addr, opSite(op, ""))
	b := testcaddy.NewBrowser(t)
	resp, body := opLogin(t, op, b, base+"/")
	want := fmt.Sprintf("id=%s email=%s name=%s", op.User.Subject, op.User.Email, op.User.Name)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, want) {
		t.Fatalf("page: %d %q, want %q...", resp.StatusCode, body, want)
	}
	// Past the access token's life: refreshed with no trip to the OP.
	time.Sleep(4500 * time.Millisecond)
	before := b.Cookie(base, sessionCookie).Value
	if resp, body := b.Navigate(base + "/"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, want) {
		t.Fatalf("after the access token expired: %d %q", resp.StatusCode, body)
	}
	if b.Cookie(base, sessionCookie).Value == before {
		t.Error("no refresh: the OP issued no refresh token")
	}

	// fetch_userinfo off: the ID token alone has no email.
	base = testcaddy.StartCaddyOn(t, addrOff, opSite(op, "fetch_userinfo off"))
	if _, body := opLogin(t, op, testcaddy.NewBrowser(t), base+"/"); !strings.Contains(body, " email= ") {
		t.Errorf("fetch_userinfo off: %q, want no email", body)
	}
}

// TestStrictIdPIssParameter: the OP sends iss (RFC 9207) and says so: a
// callback whose iss is another issuer's, or that has none, is refused
// before its code is used.
func TestStrictIdPIssParameter(t *testing.T) {
	addr := testenv.FreeAddr(t)
	op := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{RedirectURIs: []string{"http://" + addr + "/oauth2/callback"}})
	base := testcaddy.StartCaddyOn(t, addr, opSite(op, ""))
	for name, edit := range map[string]func(url.Values){
		"another issuer": func(q url.Values) { q.Set("iss", "https://idp.evil.example") },
		"no iss":         func(q url.Values) { q.Del("iss") },
	} {
		t.Run(name, func(t *testing.T) {
			b := testcaddy.NewBrowser(t)
			resp, _ := b.Navigate(base + "/")
			loc := opAuthorize(t, op, b, resp.Header.Get("Location"))
			q := loc.Query()
			if q.Get("iss") != op.Issuer {
				t.Fatalf("fixture: the OP's callback has iss %q", q.Get("iss"))
			}
			edit(q)
			loc.RawQuery = q.Encode()
			if resp, body := b.Navigate(loc.String()); resp.StatusCode != http.StatusBadRequest || testcaddy.SetCookieNamed(resp, sessionCookie) != nil {
				t.Errorf("callback: %d %s, want 400 and no session", resp.StatusCode, body)
			}
		})
	}
}

// opAuthorize logs b in at the OP from authURL and returns the callback
// URL the OP sends the browser to (code, state, iss), without requesting
// it, so a test can alter it first.
func opAuthorize(t *testing.T, op *testidp.OIDCProvider, b *testcaddy.Browser, authURL string) *url.URL {
	t.Helper()
	var callback *url.URL
	next := b.Client.Transport
	c := *b.Client
	c.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Path == "/oauth2/callback" {
			callback = r.URL
			return &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody, Request: r, Header: http.Header{}}, nil
		}
		return next.RoundTrip(r)
	})
	resp, err := op.Login(&c, authURL)
	if err != nil {
		t.Fatalf("login at the OP: %v\n%s", err, op.LogTail(20))
	}
	resp.Body.Close()
	if callback == nil {
		t.Fatalf("the OP did not send the browser to the callback: %d", resp.StatusCode)
	}
	return callback
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// stepUpSite has the default block and, for /admin/, one that requires an
// acr or a recent authentication; both share the session.
func stepUpSite(op *testidp.OIDCProvider, adminRules string) string {
	block := opSite(op, "")
	block = block[:strings.Index(block, "\trespond")]
	admin := strings.Replace(block, "oidc_session {", "oidc_session @admin {", 1)
	end := strings.LastIndex(admin, "\t}\n")
	admin = admin[:end] + "\t" + adminRules + "\n" + admin[end:]
	return "\t@admin path /admin/*\n" + admin + block + `	respond "id={http.auth.user.id} acr={http.auth.user.acr}" 200
`
}

// TestStepUp: a route that requires acr gold sends a session without it
// to log in again asking for gold (API calls get RFC 9470's 401),
// and the same session then carries gold; an OP that answers with less
// gets a 403, not a loop; max_auth_age asks for a recent authentication.
func TestStepUp(t *testing.T) {
	// One address per site: a server restarted on the same address may
	// still reset the first connections.
	addrs := []string{testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)}
	var redirects []string
	for _, a := range addrs {
		redirects = append(redirects, "http://"+a+"/oauth2/callback")
	}
	op := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{RedirectURIs: redirects, ACRValues: []string{"silver", "gold"}})
	base := testcaddy.StartCaddyOn(t, addrs[0], stepUpSite(op, "require_acr gold"))
	b := testcaddy.NewBrowser(t)
	// The OP names the acr only when acr_values asks for one.
	if _, body := opLogin(t, op, b, base+"/"); strings.Contains(body, "acr=gold") {
		t.Fatalf("first login: %q, want no acr gold", body)
	}
	resp, _ := b.Do(http.MethodGet, base+"/admin/x", "Accept: application/json", "Sec-Fetch-Mode: cors")
	if challenge := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(challenge, `error="insufficient_user_authentication"`) || !strings.Contains(challenge, `acr_values="gold"`) {
		t.Errorf("API call needing a step-up: %d %q", resp.StatusCode, challenge)
	}
	// (The OP advertises PAR: acr_values travel in the pushed request, and
	// the acr the OP answers with shows they were sent.)
	resp, _ = b.Navigate(base + "/admin/x")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), op.Issuer+"/") {
		t.Fatalf("navigation needing a step-up: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if _, body := opLogin(t, op, b, base+"/admin/x"); !strings.Contains(body, "acr=gold") {
		t.Fatalf("after the step-up: %q, want acr gold", body)
	}
	if resp, body := b.Navigate(base + "/"); !strings.Contains(body, "acr=gold") {
		t.Errorf("the rest of the site after the step-up: %d %q", resp.StatusCode, body)
	}

	// An acr the OP does not have: it answers silver, the login is a 403.
	base = testcaddy.StartCaddyOn(t, addrs[1], stepUpSite(op, "require_acr platinum"))
	b = testcaddy.NewBrowser(t)
	opLogin(t, op, b, base+"/")
	resp, _ = b.Navigate(base + "/admin/x")
	if resp, _ := b.Navigate(opAuthorize(t, op, b, resp.Header.Get("Location")).String()); resp.StatusCode != http.StatusForbidden {
		t.Errorf("the OP answered the step-up with less: %d, want 403", resp.StatusCode)
	}
	if resp, _ := b.Navigate(base + "/"); resp.StatusCode != http.StatusOK {
		t.Errorf("the session without the step-up: %d", resp.StatusCode)
	}

	// max_auth_age: an authentication older than 2s is renewed.
	base = testcaddy.StartCaddyOn(t, addrs[2], stepUpSite(op, "max_auth_age 2s"))
	b = testcaddy.NewBrowser(t)
	opLogin(t, op, b, base+"/")
	// The OP names auth_time only when max_age asks for it: the first visit
	// to /admin/ goes to the OP, which knows the user authenticated just
	// now and sends them back (after the consent it grants by itself).
	resp, body := b.Navigate(base + "/admin/x")
	for hop := 0; (resp.StatusCode == http.StatusFound || resp.StatusCode == http.StatusSeeOther) && hop < 20; hop++ {
		resp, body = b.Navigate(testcaddy.Resolve(resp.Request.URL.String(), resp.Header.Get("Location")))
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Request.URL.String(), base+"/admin/x") {
		t.Fatalf("fresh authentication: %d %s %s", resp.StatusCode, resp.Request.URL, body)
	}
	if resp, _ := b.Navigate(base + "/admin/x"); resp.StatusCode != http.StatusOK {
		t.Fatalf("within max_auth_age: %d", resp.StatusCode)
	}
	// (auth_time is in whole seconds and a second of rounding is allowed:
	// past 3s the authentication is too old whatever the rounding.)
	time.Sleep(3200 * time.Millisecond)
	resp, _ = b.Do(http.MethodGet, base+"/admin/x", "Accept: application/json", "Sec-Fetch-Mode: cors")
	if challenge := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(challenge, "max_age=2") {
		t.Errorf("API call after max_auth_age: %d %q", resp.StatusCode, challenge)
	}
	resp, _ = b.Navigate(base + "/admin/x")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), op.Issuer+"/") {
		t.Fatalf("authentication older than max_auth_age: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, body := opLogin(t, op, b, base+"/admin/x"); resp.StatusCode != http.StatusOK {
		t.Errorf("after authenticating again: %d %s", resp.StatusCode, body)
	}
}

// TestRevocationAtSignOut: sign_out has the OP revoke the session's tokens
// (RFC 7009): the access token is inactive at the OP's introspection soon
// after, and the sign_out answer did not wait for it.
func TestRevocationAtSignOut(t *testing.T) {
	addr := testenv.FreeAddr(t)
	op := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{
		RedirectURIs: []string{"http://" + addr + "/oauth2/callback"}, Revocation: true, Introspection: true, DisableRPLogout: true,
	})
	site := strings.Replace(opSite(op, "headers {\n\t\t\taccess_token X-AT\n\t\t}"), `respond "id=`, `respond "at={header.X-AT} id=`, 1)
	base := testcaddy.StartCaddyOn(t, addr, site)
	b := testcaddy.NewBrowser(t)
	_, body := opLogin(t, op, b, base+"/")
	at := strings.TrimPrefix(strings.Fields(body)[0], "at=")
	active := func() bool {
		form := url.Values{"token": {at}}
		req, _ := http.NewRequest(http.MethodPost, op.Issuer+"/token/introspection", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(op.Basic.ID, op.Basic.Secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc struct {
			Active bool `json:"active"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&doc)
		return doc.Active
	}
	if at == "" || !active() {
		t.Fatalf("fixture: access token %q not active at the OP", at)
	}
	if resp, _ := b.Navigate(base + "/oauth2/sign_out"); resp.StatusCode != http.StatusFound {
		t.Fatalf("sign_out: %d", resp.StatusCode)
	}
	deadline := time.Now().Add(10 * time.Second)
	for active() {
		if time.Now().After(deadline) {
			t.Fatal("the access token is still active after sign_out")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRevocationEndpointHangs: a revocation endpoint that never answers
// does not hold up sign_out.
func TestRevocationEndpointHangs(t *testing.T) {
	var called atomic.Int32
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release); hang.Close() })
	idp := testcaddy.NewMockIdP(t, 0, false)
	if err := idp.AddMiddleware(withDiscovery(func(doc map[string]any) { doc["revocation_endpoint"] = hang.URL + "/revoke" })); err != nil {
		t.Fatal(err)
	}
	testcaddy.StartIdP(t, idp)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, "provider_timeout 30s"))
	b := testcaddy.LoginAs(t, idp, base, "alice")
	if resp, _ := b.Navigate(base + "/oauth2/sign_out"); resp.StatusCode != http.StatusFound || !clearsSession(resp) {
		t.Fatalf("sign_out with a hanging revocation endpoint: %d", resp.StatusCode)
	}
	deadline := time.Now().Add(10 * time.Second)
	for called.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if called.Load() == 0 {
		t.Error("no revocation request was made")
	}
}

// withDiscovery is mockoidc middleware that edits its discovery document.
func withDiscovery(edit func(map[string]any)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasSuffix(r.URL.Path, mockoidc.DiscoveryEndpoint) {
				next.ServeHTTP(w, r)
				return
			}
			rec := testcaddy.NewRecorder()
			next.ServeHTTP(rec, r)
			var doc map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &doc); err == nil {
				edit(doc)
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(doc)
		})
	}
}

// TestLoginParameters: the configured parameters and a login_hint on
// start reach the authorization request; reserved names are refused.
func TestLoginParameters(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, `prompt select_account
		acr_values urn:mfa urn:pwd
		max_age 10m
		resource https://api.example.com https://files.example.com
		auth_params {
			domain_hint corp.example
		}`))
	resp, _ := testcaddy.NewBrowser(t).Navigate(base + "/oauth2/start?login_hint=" + url.QueryEscape("jane@corp.example") + "&rd=/x")
	auth, _ := url.Parse(resp.Header.Get("Location"))
	q := auth.Query()
	for k, want := range map[string]string{"prompt": "select_account", "acr_values": "urn:mfa urn:pwd", "max_age": "600", "domain_hint": "corp.example", "login_hint": "jane@corp.example"} {
		if q.Get(k) != want {
			t.Errorf("%s = %q, want %q (%s)", k, q.Get(k), want, auth)
		}
	}
	if r := q["resource"]; len(r) != 2 {
		t.Errorf("resource = %q, want both", r)
	}
	if resp, _ := testcaddy.NewBrowser(t).Navigate(base + "/oauth2/start?login_hint=" + strings.Repeat("a", 300)); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a 300-character login_hint: %d, want 400", resp.StatusCode)
	}
	// offline_access without prompt: consent (OIDC Core 11).
	base = testcaddy.StartCaddy(t, strings.Replace(testcaddy.SiteConfig(idp, ""), "scopes openid email profile groups", "scopes openid email offline_access", 1))
	resp, _ = testcaddy.NewBrowser(t).Navigate(base + "/")
	if auth, _ := url.Parse(resp.Header.Get("Location")); auth.Query().Get("prompt") != "consent" {
		t.Errorf("offline_access without prompt: prompt=%q, want consent", auth.Query().Get("prompt"))
	}
}

// TestUserInfoOfAnotherSubject: a userinfo answer for another user fails
// the login (never someone else's identity).
func TestUserInfoOfAnotherSubject(t *testing.T) {
	idp := testcaddy.NewMockIdP(t, 0, false)
	if err := idp.AddMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, mockoidc.UserinfoEndpoint) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, `{"sub":"someone-else","email":"ceo@example.com","email_verified":true}`)
				return
			}
			next.ServeHTTP(w, r)
		})
	}); err != nil {
		t.Fatal(err)
	}
	testcaddy.StartIdP(t, idp)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, "fetch_userinfo on"))
	b := testcaddy.NewBrowser(t)
	resp, _ := b.Navigate(base + "/")
	resp, body := b.Navigate(b.Authorize(resp.Header.Get("Location")))
	if resp.StatusCode < 400 || resp.StatusCode >= 500 || testcaddy.SetCookieNamed(resp, sessionCookie) != nil {
		t.Errorf("userinfo of another subject: %d %s, want a 4xx and no session", resp.StatusCode, body)
	}
}

// TestSessionStatus: <prefix>/session tells a single-page app about its
// session without keeping it alive.
func TestSessionStatus(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, "idle_timeout 2s"))
	get := func(b *testcaddy.Browser) (int, map[string]any) {
		resp, body := b.Do(http.MethodGet, base+"/oauth2/session", "Accept: application/json")
		var doc map[string]any
		_ = json.Unmarshal([]byte(body), &doc)
		if strings.Contains(body, "eyJ") || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("session status shows a token or may be cached: %s", body)
		}
		return resp.StatusCode, doc
	}
	if code, doc := get(testcaddy.NewBrowser(t)); code != http.StatusUnauthorized || doc["authenticated"] != false {
		t.Errorf("no session: %d %v", code, doc)
	}
	b := testcaddy.LoginAs(t, idp, base, "alice")
	code, doc := get(b)
	if code != http.StatusOK || doc["authenticated"] != true || doc["sub"] != "alice" || doc["expires_at"] == nil || doc["idle_expires_at"] == nil || doc["access_token_expires_at"] == nil {
		t.Fatalf("session: %d %v", code, doc)
	}
	// Polled every half second, the session still idles out.
	deadline := time.Now().Add(5 * time.Second)
	for code == http.StatusOK && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		code, _ = get(b)
	}
	if code != http.StatusUnauthorized {
		t.Errorf("polling /session kept the session alive past its idle timeout: %d", code)
	}
}
