package integration

// Attack tests against an in-process Caddy and mockoidc. Cases already
// covered elsewhere are not repeated here: login CSRF, replayed and swapped
// callbacks, bad state (TestCallbackStateAttacks); open redirects in rd at
// login (TestReturnURLOpenRedirects); tampered, truncated, forged-chunk and
// 60 KB cookies (TestBadSessionCookies); cross-site GET sign_out
// (TestLogoutLocal); spoofed X-Forwarded-User in canonical spellings
// (TestSpoofedIdentityHeadersRemoved); secrets in logs and /config/
// (TestSecretsStayOutOfLogsAndConfig); bad logout tokens (backchannel tests).

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/oidc-session/oidc_session/internal/testcaddy"
	"github.com/oidc-session/oidc_session/internal/testenv"
)

const sessionCookie = "_oauth2_proxy"

// rewriteIDToken is mockoidc middleware that hands the ID token of every
// successful token response to forge (with its claims decoded, unverified)
// and returns what forge makes of it instead.
func rewriteIDToken(forge func(raw string, claims jwt.MapClaims) string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasSuffix(r.URL.Path, mockoidc.TokenEndpoint) {
				next.ServeHTTP(w, r)
				return
			}
			rec := testcaddy.NewRecorder()
			next.ServeHTTP(rec, r)
			var doc map[string]any
			if rec.Status != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &doc) != nil {
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Status)
				_, _ = w.Write(rec.Body.Bytes())
				return
			}
			if raw, _ := doc["id_token"].(string); raw != "" {
				claims := jwt.MapClaims{}
				if parts := strings.Split(raw, "."); len(parts) == 3 {
					if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
						_ = json.Unmarshal(b, &claims)
					}
				}
				if forged := forge(raw, claims); forged != "" {
					doc["id_token"] = forged
				} else {
					delete(doc, "id_token")
				}
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(doc)
		})
	}
}

// loginVia logs a browser in as sub through <prefix>/start (so it works
// whatever the browser's cookies already are and whatever the upstream
// answers) and returns the callback's response.
func loginVia(t *testing.T, b *testcaddy.Browser, idp *testcaddy.MockIdP, base, sub string) *http.Response {
	t.Helper()
	idp.QueueUser(&mockoidc.MockUser{Subject: sub, Email: sub + "@example.com", EmailVerified: true, PreferredUsername: sub})
	resp, _ := b.Navigate(base + "/oauth2/start?rd=/")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("start: %d", resp.StatusCode)
	}
	resp, body := b.Navigate(b.Authorize(resp.Header.Get("Location")))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("callback for %s: %d %s", sub, resp.StatusCode, body)
	}
	return resp
}

// withCookies sends a GET with exactly the given Cookie header (a fresh
// client, no jar) and returns the status and body.
func withCookies(t *testing.T, target, cookie string, headers ...string) (*http.Response, string) {
	t.Helper()
	return testcaddy.NewBrowser(t).Do(http.MethodGet, target, append(headers, "Cookie: "+cookie)...)
}

// rawRequest writes raw to addr (host:port) and reads one response.
func rawRequest(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// clearsSession reports whether a response tells the browser to drop the
// session cookie or one of its chunks.
func clearsSession(resp *http.Response) bool {
	for _, c := range resp.Cookies() {
		if (c.Name == sessionCookie || strings.HasPrefix(c.Name, sessionCookie+"_")) && !strings.HasPrefix(c.Name, sessionCookie+"_flow_") && c.MaxAge < 0 {
			return true
		}
	}
	return false
}

// expectNoSession checks that a navigation with this Cookie header is sent
// to log in and an API call gets a 401, never a 5xx.
func expectNoSession(t *testing.T, base, cookie, what string) {
	t.Helper()
	resp, body := withCookies(t, base+"/", cookie, "Accept: text/html", "Sec-Fetch-Mode: navigate")
	if resp.StatusCode != http.StatusFound {
		t.Errorf("%s: navigation got %d (%s), want a login redirect", what, resp.StatusCode, body)
	}
	resp, body = withCookies(t, base+"/api", cookie, "Accept: application/json")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("%s: API call got %d (%s), want 401", what, resp.StatusCode, body)
	}
}

// expectUser checks that the browser's session is sub's.
func expectUser(t *testing.T, b *testcaddy.Browser, base, sub, what string) {
	t.Helper()
	resp, body := b.Do(http.MethodGet, base+"/", "Accept: application/json")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "id="+sub+" ") {
		t.Errorf("%s: %s's session: %d %s", what, sub, resp.StatusCode, body)
	}
}

// TestAttackCrossUserCookieMix: alice's session cookie sent together with
// bob's other cookies (his chunks, his app cookies) is alice, whole, never
// a mix; chunks or ticket parts of two users put together are no session;
// and none of it disturbs bob's or alice's sessions.
func TestAttackCrossUserCookieMix(t *testing.T) {
	for _, st := range testcaddy.Stores {
		store := st.Name
		t.Run(store, func(t *testing.T) {
			idp := testcaddy.StartMockIdP(t, 0, false)
			base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, storeNamed(store).Config(t)))
			alice := testcaddy.LoginAs(t, idp, base, "alice")
			bob := testcaddy.LoginAs(t, idp, base, "bob")
			av, bv := alice.Cookie(base, sessionCookie).Value, bob.Cookie(base, sessionCookie).Value
			n := len(bv) / 2

			for _, cookie := range []string{
				sessionCookie + "_0=" + bv[:n] + "; pref=bob; " + sessionCookie + "=" + av + "; " + sessionCookie + "_1=" + bv[n:],
				sessionCookie + "=" + av + "; " + sessionCookie + "=" + bv + "; pref=bob",
			} {
				resp, body := withCookies(t, base+"/", cookie, "Accept: application/json")
				if resp.StatusCode != http.StatusOK || !strings.Contains(body, "id=alice ") {
					t.Errorf("alice's cookie among bob's: %d %s", resp.StatusCode, body)
				}
				if !strings.HasSuffix(strings.TrimSpace(body), " cookie=pref=bob") {
					t.Errorf("the upstream got more than bob's app cookie: %s", body)
				}
			}

			// Pieces of two sessions put together.
			m := len(av) / 2
			mixes := map[string]string{
				"alice's first chunk, bob's second": sessionCookie + "_0=" + av[:m] + "; " + sessionCookie + "_1=" + bv[n:],
				"bob's first chunk, alice's second": sessionCookie + "_0=" + bv[:n] + "; " + sessionCookie + "_1=" + av[m:],
			}
			if store != "cookie" {
				ah, _, _ := strings.Cut(av, ".")
				_, bs, _ := strings.Cut(bv, ".")
				mixes["alice's ticket id with bob's ticket secret"] = sessionCookie + "=" + ah + "." + bs
			}
			for what, cookie := range mixes {
				expectNoSession(t, base, cookie, what)
			}
			expectUser(t, alice, base, "alice", "after the mixes")
			expectUser(t, bob, base, "bob", "after the mixes")
		})
	}
}

// TestAttackForgedTicketCannotEndSession: with a server-side store, the
// ticket id alone (visible to whoever can list Redis keys, read the state
// file or the admin API) does not let anyone end the session: sign_out,
// a login over it and the front-channel endpoint all need the ticket's
// secret, which only the user's cookie holds.
func TestAttackForgedTicketCannotEndSession(t *testing.T) {
	for _, st := range testcaddy.ServerSideStores() {
		store := st.Name
		t.Run(store, func(t *testing.T) {
			idp := testcaddy.StartMockIdP(t, 0, false)
			base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, storeNamed(store).Config(t)))
			alice := testcaddy.LoginAs(t, idp, base, "alice")
			handle, _, _ := strings.Cut(alice.Cookie(base, sessionCookie).Value, ".")
			secret := make([]byte, 16)
			_, _ = rand.Read(secret)
			forged := handle + "." + base64.RawURLEncoding.EncodeToString(secret)

			attacker := testcaddy.NewBrowser(t)
			attacker.SetCookie(base, sessionCookie, forged)
			if resp, _ := attacker.Navigate(base + "/oauth2/sign_out"); resp.StatusCode != http.StatusFound {
				t.Errorf("sign_out with a forged ticket: %d", resp.StatusCode)
			}
			expectUser(t, alice, base, "alice", "after sign_out with her ticket id and a forged secret")

			attacker.SetCookie(base, sessionCookie, forged)
			attacker.Navigate(base + "/oauth2/frontchannel_logout")
			expectUser(t, alice, base, "alice", "after front-channel logout with a forged ticket")

			attacker.SetCookie(base, sessionCookie, forged)
			loginVia(t, attacker, idp, base, "mallory")
			expectUser(t, alice, base, "alice", "after a login over a forged ticket")
			expectUser(t, attacker, base, "mallory", "the attacker's own login")
		})
	}
}

// TestAttackCookieFromAnotherClient: a session made for one client_id is
// no session for another client sharing the cookie secret (and, with
// Redis, even the same key prefix): the binding to issuer and client is
// authenticated. Refusing it does not end it where it belongs.
func TestAttackCookieFromAnotherClient(t *testing.T) {
	for _, store := range []string{"cookie", "redis"} {
		t.Run(store, func(t *testing.T) {
			idp := testcaddy.StartMockIdP(t, 0, false)
			storeCfg := storeNamed(store).Config(t)
			a, b := testenv.FreeAddr(t), testenv.FreeAddr(t)
			other := strings.Replace(testcaddy.SiteConfig(idp, storeCfg), "client_id "+idp.ClientID, "client_id other-client", 1)
			testcaddy.StartCaddySites(t, map[string]string{a: testcaddy.SiteConfig(idp, storeCfg), b: other})
			baseA, baseB := "http://"+a, "http://"+b
			alice := testcaddy.LoginAs(t, idp, baseA, "alice")
			v := alice.Cookie(baseA, sessionCookie).Value
			expectNoSession(t, baseB, sessionCookie+"="+v, "a session of another client_id")
			resp, _ := withCookies(t, baseB+"/", sessionCookie+"="+v, "Accept: application/json")
			if !clearsSession(resp) {
				t.Errorf("the foreign cookie was not cleared: %v", resp.Header["Set-Cookie"])
			}
			expectUser(t, alice, baseA, "alice", "at her own client")
		})
	}
}

// TestAttackCookieFromAnotherSecret: a session sealed under another cookie
// secret (same issuer and client) is no session.
func TestAttackCookieFromAnotherSecret(t *testing.T) {
	for _, store := range []string{"cookie", "redis"} {
		t.Run(store, func(t *testing.T) {
			idp := testcaddy.StartMockIdP(t, 0, false)
			storeCfg := storeNamed(store).Config(t)
			a, b := testenv.FreeAddr(t), testenv.FreeAddr(t)
			other := strings.Replace(testcaddy.SiteConfig(idp, storeCfg), "secret "+testcaddy.TestSecret, "secret another-secret-0123456789-0123456789-xyz", 1)
			testcaddy.StartCaddySites(t, map[string]string{a: testcaddy.SiteConfig(idp, storeCfg), b: other})
			baseA, baseB := "http://"+a, "http://"+b
			alice := testcaddy.LoginAs(t, idp, baseA, "alice")
			expectNoSession(t, baseB, sessionCookie+"="+alice.Cookie(baseA, sessionCookie).Value, "a session sealed under another secret")
			expectUser(t, alice, baseA, "alice", "under her own secret")
		})
	}
}

// TestAttackSessionFixation: a session cookie planted in the victim's
// browser before login (junk, a well-formed ticket nobody issued, or the
// attacker's own session) is replaced at login by a value never issued
// before, and the planted value never becomes the victim's session. With a
// server-side store the attacker's own planted session is ended too.
func TestAttackSessionFixation(t *testing.T) {
	for _, st := range testcaddy.Stores {
		store := st.Name
		t.Run(store, func(t *testing.T) {
			idp := testcaddy.StartMockIdP(t, 0, false)
			base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, storeNamed(store).Config(t)))
			mallory := testcaddy.NewBrowser(t)
			loginVia(t, mallory, idp, base, "mallory")
			id := make([]byte, 16)
			_, _ = rand.Read(id)
			planted := map[string]string{
				"junk":                 "planted-by-attacker",
				"unissued ticket":      sessionCookie + "-" + hex.EncodeToString(id) + "." + strings.Repeat("A", 22),
				"the attacker's login": mallory.Cookie(base, sessionCookie).Value,
			}
			for what, value := range planted {
				victim := testcaddy.NewBrowser(t)
				victim.SetCookie(base, sessionCookie, value)
				resp := loginVia(t, victim, idp, base, "alice")
				sc := testcaddy.SetCookieNamed(resp, sessionCookie)
				if sc == nil || sc.MaxAge <= 0 || sc.Value == value {
					t.Fatalf("%s: login did not replace the planted cookie: %v", what, resp.Header["Set-Cookie"])
				}
				expectUser(t, victim, base, "alice", what)
				resp, body := withCookies(t, base+"/", sessionCookie+"="+value, "Accept: application/json")
				switch {
				case strings.Contains(body, "id=alice "):
					t.Errorf("%s: the planted value became alice's session", what)
				case what == "the attacker's login" && store == "cookie":
					// A cookie-store session cannot be revoked: it stays
					// mallory's own, never alice's.
					if resp.StatusCode != http.StatusOK || !strings.Contains(body, "id=mallory ") {
						t.Errorf("%s: %d %s", what, resp.StatusCode, body)
					}
				case resp.StatusCode != http.StatusUnauthorized:
					t.Errorf("%s: the planted value after alice's login: %d %s, want 401", what, resp.StatusCode, body)
				}
			}
		})
	}
}

// TestAttackCallbackPOST: the callback completes a login only for the
// browser holding the flow cookie of that state. A cross-site POST (which a
// browser sends without the SameSite=Lax flow cookie) and a POST carrying
// another browser's code and state are refused without a session. (A
// same-browser POST with its own state would be treated like the GET the
// IdP sends: the state and flow cookie, not the method, are the defence.)
func TestAttackCallbackPOST(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	attacker := testcaddy.NewBrowser(t)
	resp, _ := attacker.Navigate(base + "/")
	cb := attacker.Authorize(resp.Header.Get("Location"))

	for _, headers := range [][]string{
		{"Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: navigate", "Content-Type: application/x-www-form-urlencoded"},
		{"Origin: https://evil.example", "Content-Type: application/x-www-form-urlencoded"},
	} {
		victim := testcaddy.NewBrowser(t)
		victim.Navigate(base + "/") // the victim has a login of her own in progress
		resp, body := victim.Do(http.MethodPost, cb, headers...)
		if resp.StatusCode < 400 || resp.StatusCode >= 500 || testcaddy.SetCookieNamed(resp, sessionCookie) != nil {
			t.Errorf("POST of another browser's callback %v: %d %s %v", headers, resp.StatusCode, body, resp.Header["Set-Cookie"])
		}
		if resp, _ := victim.Do(http.MethodGet, base+"/", "Accept: application/json"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("the victim has a session after the forged POST: %d", resp.StatusCode)
		}
	}
	// The code is still the attacker's to redeem: the POSTs did not spend it.
	if resp, _ := attacker.Navigate(cb); resp.StatusCode != http.StatusFound {
		t.Errorf("the attacker's own callback after the refused POSTs: %d", resp.StatusCode)
	}
}

// TestAttackLogoutCSRF: another site cannot log the user out: every
// cross-site request to sign_out (GET as an image or navigation, POST from
// a form) is refused by its Fetch Metadata and the session stays. Allowed:
// same-origin and same-site requests (an app's own logout link or form,
// possibly on a sibling subdomain) and requests without Sec-Fetch-Site
// (browsers before 2020-2023 and non-browser clients, which cannot be told
// apart from a typed URL; there SameSite=Lax still keeps the cookie off
// cross-site subresource and POST requests, leaving only top-level
// cross-site navigations, whose worst outcome is a logout).
func TestAttackLogoutCSRF(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	b := testcaddy.LoginAs(t, idp, base, "alice")
	for _, req := range []struct {
		method  string
		headers []string
	}{
		{http.MethodGet, []string{"Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: no-cors", "Sec-Fetch-Dest: image"}},
		{http.MethodGet, []string{"Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: document"}},
		{http.MethodPost, []string{"Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: navigate", "Origin: https://evil.example"}},
		{http.MethodPost, []string{"Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: cors"}},
	} {
		resp, _ := b.Do(req.method, base+"/oauth2/sign_out?rd=/", req.headers...)
		if resp.StatusCode != http.StatusForbidden || clearsSession(resp) {
			t.Errorf("cross-site %s sign_out %v: %d %v, want 403 and the cookie kept", req.method, req.headers, resp.StatusCode, resp.Header["Set-Cookie"])
		}
	}
	if resp, _ := b.Do(http.MethodPut, base+"/oauth2/sign_out"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT sign_out: %d, want 405", resp.StatusCode)
	}
	expectUser(t, b, base, "alice", "after the cross-site sign_out attempts")

	for _, h := range []string{"Sec-Fetch-Site: same-site", "Sec-Fetch-Site: same-origin", ""} {
		b := testcaddy.LoginAs(t, idp, base, "alice")
		var headers []string
		if h != "" {
			headers = append(headers, h)
		}
		resp, _ := b.Do(http.MethodGet, base+"/oauth2/sign_out", headers...)
		if resp.StatusCode != http.StatusFound || !clearsSession(resp) {
			t.Errorf("sign_out with %q: %d, want a logout", h, resp.StatusCode)
		}
	}
}

// TestAttackPostLogoutOpenRedirect: sign_out's rd is validated before it
// becomes the IdP's post_logout_redirect_uri: another host, a
// scheme-relative or backslash URL, userinfo tricks and encoded forms end
// at the configured post_logout_redirect on this host; an allowed host
// passes.
func TestAttackPostLogoutOpenRedirect(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, true)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, "allowed_redirect_hosts partner.example.org"))
	for rd, want := range map[string]string{
		"https://evil.example/":                    base + "/",
		"//evil.example/":                          base + "/",
		"/\\evil.example":                          base + "/",
		"https://" + base[7:] + "@evil.example/":   base + "/",
		"https://evil.example\\@" + base[7:] + "/": base + "/",
		"/%2F%2Fevil.example":                      base + "/",
		"http:evil.example":                        base + "/",
		"javascript:alert(document.cookie)":        base + "/",
		"https://partner.example.org/bye":          "https://partner.example.org/bye",
		"/bye?x=1":                                 base + "/bye?x=1",
	} {
		b := testcaddy.LoginAs(t, idp, base, "alice")
		resp, body := b.Navigate(base + "/oauth2/sign_out?rd=" + url.QueryEscape(rd))
		form := testcaddy.EndSessionForm(t, resp, body)
		if form.Action != idp.Issuer()+idp.EndSession {
			t.Fatalf("rd=%q: want a form to the end_session_endpoint, got %q", rd, form.Action)
		}
		if got := form.Fields.Get("post_logout_redirect_uri"); got != want {
			t.Errorf("rd=%q: post_logout_redirect_uri = %q, want %q", rd, got, want)
		}
	}
}

// echoUpstream answers with the request headers it received, as JSON.
func echoUpstream(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// proxiedSite is siteConfig with a reverse proxy to upstream instead of
// the respond.
func proxiedSite(idp *testcaddy.MockIdP, extra, upstream string) string {
	site := testcaddy.SiteConfig(idp, extra)
	site = site[:strings.Index(site, "\trespond ")]
	return site + "\treverse_proxy " + upstream + "\n"
}

// putConfig changes the running test Caddy's config through the admin API.
func putConfig(t *testing.T, path string, value any) {
	t.Helper()
	body, _ := json.Marshal(value)
	req, _ := http.NewRequest(http.MethodPut, testcaddy.Running().AdminURL+"/config/"+path, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /config/%s: %d %s", path, resp.StatusCode, b)
	}
}

// spoofLines are identity headers a client may send, in the spellings that
// some server, framework or CGI gateway folds into X-Forwarded-User and
// friends, duplicated, padded, and with the configured custom name.
// (Go folds the four hyphenated X-Forwarded-User lines into one header
// with four values; each underscore or dot spelling is sent once, since
// Caddy drops an allowlisted one that comes repeated.)
var spoofLines = []string{
	"X-Forwarded-User: admin", "X-Forwarded-User: admin2", "x-forwarded-user:admin3", "X-FORWARDED-USER:   admin4   ",
	"X_Forwarded_User: admin5", "X-Forwarded_User: admin7", "X.Forwarded.User: admin8",
	"X-Forwarded-Email: admin@evil.example", "x_forwarded_email: admin@evil.example", "X-Forwarded-Groups: admins",
	"Remote-User: admin9", "Remote_User: admin10", "X-Auth-Request-User: admin11", "X-Forwarded-Access-Token: forged",
	"X-Team-Id: admin12", "X_Team_Id: admin13", "x.team.id: admin14",
}

// checkUpstreamHeaders fails if the upstream saw any spoofed value, or an
// identity header other than the ones the plugin set.
func checkUpstreamHeaders(t *testing.T, what, body, sub string) {
	t.Helper()
	var got map[string][]string
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%s: upstream answer %q: %v", what, body, err)
	}
	for name, values := range got {
		for _, v := range values {
			if strings.Contains(v, "admin") || strings.Contains(v, "forged") {
				t.Errorf("%s: the upstream got %s: %q", what, name, v)
			}
		}
		norm := strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(name))
		if strings.Contains(norm, "forwarded-user") && name != "X-Forwarded-User" {
			t.Errorf("%s: the upstream got the identity header as %q", what, name)
		}
	}
	if sub != "" {
		if v := got["X-Forwarded-User"]; len(v) != 1 || v[0] != sub {
			t.Errorf("%s: X-Forwarded-User = %q, want [%q]", what, v, sub)
		}
		if v := got["X-Team-Id"]; len(v) != 1 {
			t.Errorf("%s: X-Team-Id = %q, want the user's name", what, v)
		}
	}
}

// spoofRequest is a raw GET / carrying every spoofLines header, and the
// session cookie if given. Raw, because Go's client would normalise the
// header names.
func spoofRequest(host, cookie string) string {
	raw := "GET / HTTP/1.1\r\nHost: " + host + "\r\nAccept: application/json\r\nConnection: close\r\n"
	for _, l := range spoofLines {
		raw += l + "\r\n"
	}
	if cookie != "" {
		raw += "Cookie: " + sessionCookie + "=" + cookie + "\r\n"
	}
	return raw + "\r\n"
}

// testSpoofedHeaders logs in and sends the spoofed headers with and without
// the session, checking what the upstream sees.
func testSpoofedHeaders(t *testing.T, serverOptions map[string]any) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	upstream := echoUpstream(t)
	extra := "headers {\n\t\t\tuser X-Forwarded-User\n\t\t\temail X-Forwarded-Email\n\t\t\tgroups X-Forwarded-Groups\n\t\t}"
	site := strings.Replace(proxiedSite(idp, extra, upstream), "\t\theaders\n", "", 1)
	// A second identity header under a custom name.
	site = strings.Replace(site, "groups X-Forwarded-Groups", "groups X-Forwarded-Groups\n\t\t\tname X-Team-Id", 1)
	base := testcaddy.StartCaddy(t, site)
	for path, v := range serverOptions {
		putConfig(t, "apps/http/servers/srv0/"+path, v)
	}
	b := testcaddy.NewBrowser(t)
	loginVia(t, b, idp, base, "alice")
	host := base[len("http://"):]

	resp, body := rawRequest(t, host, spoofRequest(host, ""))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("spoofed headers without a session: %d %s", resp.StatusCode, body)
	}
	resp, body = rawRequest(t, host, spoofRequest(host, b.Cookie(base, sessionCookie).Value))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("spoofed headers with alice's session: %d %s", resp.StatusCode, body)
	}
	checkUpstreamHeaders(t, "with a session", body, "alice")

	// Malformed lines never get through either: Go's parser refuses them
	// (400) or the plugin removes them.
	for _, line := range []string{"X-Forwarded-User : admin", " X-Forwarded-User: admin", "X-Forwarded-User\t: admin", "X-Forwarded-User: a\r\n admin"} {
		raw := "GET / HTTP/1.1\r\nHost: " + host + "\r\nAccept: application/json\r\nConnection: close\r\n" + line +
			"\r\nCookie: " + sessionCookie + "=" + b.Cookie(base, sessionCookie).Value + "\r\n\r\n"
		resp, body := rawRequest(t, host, raw)
		switch resp.StatusCode {
		case http.StatusBadRequest:
		case http.StatusOK:
			checkUpstreamHeaders(t, fmt.Sprintf("line %q", line), body, "alice")
		default:
			t.Errorf("line %q: %d %s", line, resp.StatusCode, body)
		}
	}
}

// TestAttackSpoofedIdentityHeaders: with Caddy's default server (which
// itself drops header names containing "_" or "."), no spelling of a
// spoofed identity header reaches the upstream, duplicated or padded.
func TestAttackSpoofedIdentityHeaders(t *testing.T) {
	testSpoofedHeaders(t, nil)
}

// TestAttackSpoofedIdentityHeadersAllowlisted: the same with a server that
// lets underscore and dot header names through (Caddy's
// expected_underscore_headers and expected_dot_headers, as for a backend
// that needs them): the plugin itself removes every spelling.
func TestAttackSpoofedIdentityHeadersAllowlisted(t *testing.T) {
	testSpoofedHeaders(t, map[string]any{
		"expected_underscore_headers": []string{"X_Forwarded_User", "X-Forwarded_User", "X_Forwarded_Email", "Remote_User", "X_Team_Id"},
		"expected_dot_headers":        []string{"X.Forwarded.User", "X.Team.Id"},
	})
}

// TestAttackOversizedHeaders: oversized Cookie headers and chunk sets never
// produce a 5xx: Caddy answers 431 beyond its header limit, and within it
// the plugin refuses what it cannot use. A real session split into 8
// chunks still works; into 4 (more than the plugin ever writes) it is no
// session; 8 chunks of 3800 bytes exceed Caddy's default 16 KB header
// limit (431), and with a raised limit are refused as junk.
func TestAttackOversizedHeaders(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	alice := testcaddy.LoginAs(t, idp, base, "alice")
	value := alice.Cookie(base, sessionCookie).Value

	var many []string
	for i := 0; len(strings.Join(many, "; ")) < 64<<10; i++ {
		many = append(many, fmt.Sprintf("c%d=%s", i, strings.Repeat("v", 60)))
	}
	big := strings.Join(many, "; ")
	if resp, _ := withCookies(t, base+"/", big); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KB Cookie header of small cookies: %d, want 431", resp.StatusCode)
	}
	if resp, _ := withCookies(t, base+"/", sessionCookie+"="+value, "X-Junk: "+strings.Repeat("j", 64<<10)); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KB header: %d, want 431", resp.StatusCode)
	}

	split := func(v string, n int) string {
		var parts []string
		size := (len(v) + n - 1) / n
		for i := 0; i < n; i++ {
			parts = append(parts, fmt.Sprintf("%s_%d=%s", sessionCookie, i, v[min(i*size, len(v)):min((i+1)*size, len(v))]))
		}
		return strings.Join(parts, "; ")
	}
	resp, body := withCookies(t, base+"/", split(value, 3), "Accept: application/json")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "id=alice ") {
		t.Errorf("a real session in 3 chunks: %d %s", resp.StatusCode, body)
	}
	expectNoSession(t, base, split(value, 4), "a real session in 4 chunks")

	var junk []string
	for i := 0; i < 8; i++ {
		junk = append(junk, fmt.Sprintf("%s_%d=%s", sessionCookie, i, strings.Repeat("A", 3800)))
	}
	if resp, _ := withCookies(t, base+"/", strings.Join(junk, "; ")); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("8x3800-byte chunks with Caddy's default header limit: %d, want 431", resp.StatusCode)
	}
	putConfig(t, "apps/http/servers/srv0/max_header_bytes", 256<<10)
	start := time.Now()
	expectNoSession(t, base, strings.Join(junk, "; "), "8x3800 bytes of junk chunks")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("refusing junk chunks took %v", d)
	}
	expectNoSession(t, base, big, "64 KB Cookie header of small cookies, with a raised limit")
	expectUser(t, alice, base, "alice", "after the oversized requests")
}

// testForgedIDToken runs a login whose token response carries the ID token
// forge makes, and checks that the callback refuses it with a 4xx, sets no
// session, and logs neither the token nor its signature.
func testForgedIDToken(t *testing.T, forge func(idp *testcaddy.MockIdP, claims jwt.MapClaims) string) {
	t.Helper()
	idp := testcaddy.NewMockIdP(t, 0, false)
	var mu sync.Mutex
	var forged string
	if err := idp.AddMiddleware(rewriteIDToken(func(_ string, claims jwt.MapClaims) string {
		tok := forge(idp, claims)
		mu.Lock()
		forged = tok
		mu.Unlock()
		return tok
	})); err != nil {
		t.Fatal(err)
	}
	testcaddy.StartIdP(t, idp)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	b := testcaddy.NewBrowser(t)
	resp, _ := b.Navigate(base + "/")
	resp, body := b.Navigate(b.Authorize(resp.Header.Get("Location")))
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Errorf("callback with a forged ID token: %d %s, want 4xx", resp.StatusCode, body)
	}
	if c := testcaddy.SetCookieNamed(resp, sessionCookie); c != nil && c.MaxAge > 0 {
		t.Errorf("callback with a forged ID token set a session cookie")
	}
	if resp, _ := b.Do(http.MethodGet, base+"/", "Accept: application/json"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after the forged login: %d, want 401", resp.StatusCode)
	}
	if idp.CodeGrants.Load() != 1 {
		t.Errorf("%d code grants, want 1 (is the forged token served?)", idp.CodeGrants.Load())
	}
	logs, _ := os.ReadFile(testcaddy.Running().LogFile)
	mu.Lock()
	defer mu.Unlock()
	if parts := strings.Split(forged, "."); forged != "" && (strings.Contains(string(logs), forged) ||
		len(parts) == 3 && len(parts[2]) > 16 && strings.Contains(string(logs), parts[2])) {
		t.Errorf("the log holds the forged token")
	}
}

func signWith(t testing.TB, key *mockoidc.Keypair, claims jwt.MapClaims) string {
	tok, err := key.SignJWT(claims)
	if err != nil {
		t.Error(err)
	}
	return tok
}

// TestAttackIDTokenAlgNone: an unsigned ID token (alg none) is refused.
func TestAttackIDTokenAlgNone(t *testing.T) {
	testForgedIDToken(t, func(_ *testcaddy.MockIdP, c jwt.MapClaims) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Error(err)
		}
		return tok
	})
}

// TestAttackIDTokenHS256WithClientSecret: an ID token MACed with the
// client secret under the IdP's key id (algorithm confusion) is refused:
// only the IdP's advertised asymmetric algorithm is accepted.
func TestAttackIDTokenHS256WithClientSecret(t *testing.T) {
	testForgedIDToken(t, func(idp *testcaddy.MockIdP, c jwt.MapClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
		kid, _ := idp.Keypair.KeyID()
		tok.Header["kid"] = kid
		s, err := tok.SignedString([]byte(idp.ClientSecret))
		if err != nil {
			t.Error(err)
		}
		return s
	})
}

// TestAttackIDTokenForeignKey: an ID token signed by another key under the
// IdP's key id is refused (after the JWKS is fetched again).
func TestAttackIDTokenForeignKey(t *testing.T) {
	other, err := mockoidc.RandomKeypair(2048)
	if err != nil {
		t.Fatal(err)
	}
	testForgedIDToken(t, func(idp *testcaddy.MockIdP, c jwt.MapClaims) string {
		kid, _ := idp.Keypair.KeyID()
		other.Kid = kid
		return signWith(t, other, c)
	})
}

// TestAttackIDTokenWrongAudience: an ID token for another client is
// refused, even correctly signed.
func TestAttackIDTokenWrongAudience(t *testing.T) {
	testForgedIDToken(t, func(idp *testcaddy.MockIdP, c jwt.MapClaims) string {
		c["aud"] = "another-client"
		return signWith(t, idp.Keypair, c)
	})
}

// TestAttackIDTokenWrongIssuer: an ID token naming another issuer is
// refused, even correctly signed.
func TestAttackIDTokenWrongIssuer(t *testing.T) {
	testForgedIDToken(t, func(idp *testcaddy.MockIdP, c jwt.MapClaims) string {
		c["iss"] = "https://evil.example"
		return signWith(t, idp.Keypair, c)
	})
}

// TestAttackIDTokenExpired: an expired ID token is refused.
func TestAttackIDTokenExpired(t *testing.T) {
	testForgedIDToken(t, func(idp *testcaddy.MockIdP, c jwt.MapClaims) string {
		c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
		c["exp"] = time.Now().Add(-time.Hour).Unix()
		return signWith(t, idp.Keypair, c)
	})
}

// TestAttackIDTokenWrongNonce: an ID token whose nonce is not the login
// flow's (a token replayed from another login) is refused, and so is one
// without a nonce.
func TestAttackIDTokenWrongNonce(t *testing.T) {
	testForgedIDToken(t, func(idp *testcaddy.MockIdP, c jwt.MapClaims) string {
		c["nonce"] = "nonce-of-another-login"
		return signWith(t, idp.Keypair, c)
	})
	testForgedIDToken(t, func(idp *testcaddy.MockIdP, c jwt.MapClaims) string {
		delete(c, "nonce")
		return signWith(t, idp.Keypair, c)
	})
}

// TestAttackIDTokenMissing: a token response without an ID token (an
// OAuth-only answer) is refused.
func TestAttackIDTokenMissing(t *testing.T) {
	testForgedIDToken(t, func(*testcaddy.MockIdP, jwt.MapClaims) string { return "" })
}
