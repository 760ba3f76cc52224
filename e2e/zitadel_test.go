package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/internal/testenv"
	"github.com/oidc-session/oidc_session/internal/testidp"
)

// TestZitadelOP runs Caddy (a separate process) against the zitadel/oidc
// example OP, an IdP with an end_session_endpoint and PKCE S256:
//
//   - site A, confidential client "web": login (the authorization request
//     carries code_challenge_method=S256), the protected page, a refresh of
//     the 6 s access token with the refresh token (offline_access), RP-
//     initiated logout through the OP's end_session_endpoint with
//     id_token_hint back to the allowed rd, and a disallowed rd that comes
//     back to the configured post_logout_redirect;
//   - site B, public client "native": the OP requires PKCE, the login works;
//   - site C, the same public client with disable_pkce: the OP refuses the
//     code exchange, so no session is made.
func TestZitadelOP(t *testing.T) {
	testidp.ZitadelBinary(t) // skip (or fail in CI) before building Caddy
	bin := caddyBinary(t)
	addrA, addrB, addrC, admin := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	baseA, baseB, baseC := "http://"+addrA, "http://"+addrB, "http://"+addrC
	const accessTTL = 6 * time.Second
	z := testidp.StartZitadel(t, testidp.ZitadelOptions{
		RedirectURIs:           []string{baseA + "/oauth2/callback", baseB + "/oauth2/callback", baseC + "/oauth2/callback"},
		PostLogoutRedirectURIs: []string{baseA + "/bye", baseA + "/goodbye"},
		AccessTokenTTL:         accessTTL,
	})
	dir := t.TempDir()
	// Sites share the host 127.0.0.1 (and so the cookie jar): one cookie
	// name per site.
	site := func(addr, clientLines, cookieName string) string {
		return fmt.Sprintf(`http://%s {
	handle /bye {
		respond "bye" 200
	}
	handle /goodbye {
		respond "goodbye" 200
	}
	handle {
		oidc_session {
			issuer %s
%s
			fetch_userinfo
			post_logout_redirect /goodbye
			cookie {
				name %s
				secret {env.E2E_COOKIE_SECRET}
				secure off
			}
		}
		respond "id={http.auth.user.id} email={http.auth.user.email}" 200
	}
}
`, addr, z.Issuer, clientLines, cookieName)
	}
	cfg := globalOptions(admin, dir) +
		site(addrA, fmt.Sprintf("\t\t\tclient_id %s\n\t\t\tclient_secret %s\n\t\t\tscopes openid email profile offline_access", z.ClientID, z.ClientSecret), "_web") +
		site(addrB, fmt.Sprintf("\t\t\tclient_id %s\n\t\t\tscopes openid email profile", z.PublicClientID), "_native") +
		site(addrC, fmt.Sprintf("\t\t\tclient_id %s\n\t\t\tscopes openid email profile\n\t\t\tdisable_pkce", z.PublicClientID), "_nopkce")
	caddy := startCaddy(t, caddyOpts{
		bin: bin, adminAddr: admin, caddyfile: cfg,
		env:       []string{"E2E_COOKIE_SECRET=" + cookieSecret},
		waitAddrs: []string{addrA, addrB, addrC},
	})
	authEndpoint := z.Issuer + "auth"
	endSession := z.Issuer + "end_session"

	b := newBrowser(t)
	if resp, _ := b.api(baseA + "/page"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API call without a session: %d, want 401", resp.StatusCode)
	}

	// login starts a login at site base and checks the authorization request.
	login := func(base, clientID string, pkce bool) *http.Response {
		t.Helper()
		resp, _ := b.navigate(base + "/page")
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, authEndpoint+"?") {
			t.Fatalf("%s/page without a session: %d to %q, want the OP's %s", base, resp.StatusCode, loc, authEndpoint)
		}
		u, _ := url.Parse(loc)
		q := u.Query()
		if q.Get("client_id") != clientID || q.Get("redirect_uri") != base+"/oauth2/callback" || q.Get("response_type") != "code" ||
			q.Get("state") == "" || q.Get("nonce") == "" {
			t.Fatalf("authorization request %s", loc)
		}
		if pkce {
			if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 {
				t.Fatalf("authorization request without PKCE S256: method=%q challenge=%q", q.Get("code_challenge_method"), q.Get("code_challenge"))
			}
		} else if q.Has("code_challenge") || q.Has("code_challenge_method") {
			t.Fatalf("disable_pkce still sends PKCE: %s", loc)
		}
		cb, err := testidp.LoginZitadel(b.client, loc, z.Username, z.Password)
		if err != nil {
			t.Fatalf("login at the zitadel OP: %v\n%s", err, z.LogTail(20))
		}
		cb.Body.Close()
		if !strings.HasPrefix(cb.Request.URL.String(), base+"/oauth2/callback?") {
			t.Fatalf("login ended at %s, want the callback", cb.Request.URL)
		}
		return cb
	}

	// --- Site A: confidential client, refresh, RP-initiated logout.
	cb := login(baseA, z.ClientID, true)
	loggedIn := time.Now()
	if cb.StatusCode != http.StatusFound || cb.Header.Get("Location") != "/page" || setCookieNamed(cb, "_web") == nil {
		t.Fatalf("callback: %d to %q, session cookie %v", cb.StatusCode, cb.Header.Get("Location"), setCookieNamed(cb, "_web"))
	}
	want := fmt.Sprintf("id=%s email=%s", z.UserID, z.Email)
	if resp, body := b.navigate(baseA + "/page"); resp.StatusCode != http.StatusOK || body != want {
		t.Fatalf("protected page: %d %q, want %q", resp.StatusCode, body, want)
	}

	// Refresh: the 6 s access token (expires_in 5) is refreshed once less
	// than a third of its lifetime is left.
	refreshesBefore := caddy.metric(t, "caddy_oidc_session_refreshes_total")
	time.Sleep(time.Until(loggedIn.Add(4300 * time.Millisecond)))
	before := b.cookie(baseA, "_web").Value
	resp, body := b.navigate(baseA + "/page")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "id="+z.UserID+" ") {
		t.Fatalf("page in the refresh window: %d %q\n%s", resp.StatusCode, body, z.LogTail(20))
	}
	// The OP's ID tokens carry no email (the example asserts userinfo
	// claims into the ID token only when no access token is issued): the
	// email comes from fetch_userinfo and must survive a refresh.
	if body != want {
		t.Errorf("after a refresh the page shows %q, want %q: the userinfo claims of fetch_userinfo are lost when the refreshed ID token replaces the identity", body, want)
	}
	if setCookieNamed(resp, "_web") == nil || b.cookie(baseA, "_web").Value == before {
		t.Fatal("no new session cookie in the refresh window: the token was not refreshed")
	}
	if after := caddy.metric(t, "caddy_oidc_session_refreshes_total"); refreshesBefore >= 0 && after != refreshesBefore+1 {
		t.Errorf("caddy_oidc_session_refreshes_total %v -> %v, want one refresh", refreshesBefore, after)
	} else {
		t.Logf("refreshes_total %v -> %v", refreshesBefore, after)
	}
	time.Sleep(time.Until(loggedIn.Add(accessTTL + 800*time.Millisecond)))
	if resp, body := b.navigate(baseA + "/page"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "id="+z.UserID+" ") {
		t.Fatalf("after the first access token expired: %d %q", resp.StatusCode, body)
	}

	// RP-initiated logout with an allowed rd.
	signOut := func(rd, wantBack string) {
		t.Helper()
		resp, page := b.navigate(baseA + "/oauth2/sign_out?rd=" + url.QueryEscape(rd))
		form, err := testenv.FirstForm(page)
		if resp.StatusCode != http.StatusOK || err != nil || form.Action != endSession || form.Method != http.MethodPost {
			t.Fatalf("sign_out?rd=%s: %d %v, want the form that posts to the OP's end_session_endpoint: %s", rd, resp.StatusCode, err, page)
		}
		if sc := setCookieNamed(resp, "_web"); sc != nil && sc.MaxAge >= 0 {
			t.Fatalf("sign_out set a new session cookie %v", sc)
		}
		if b.cookie(baseA, "_web") != nil {
			t.Fatal("session cookie still in the jar after sign_out")
		}
		q := form.Fields
		if hint := q.Get("id_token_hint"); strings.Count(hint, ".") != 2 {
			t.Fatalf("end_session without an id_token_hint JWT: %v", q)
		}
		if q.Get("client_id") != z.ClientID || q.Get("post_logout_redirect_uri") != wantBack {
			t.Fatalf("end_session: client_id=%q post_logout_redirect_uri=%q, want %q", q.Get("client_id"), q.Get("post_logout_redirect_uri"), wantBack)
		}
		// The page's script posts the form: so does the test, and the OP
		// (which must accept POST) sends the browser on.
		posted, err := b.client.PostForm(form.Action, form.Fields)
		if err != nil {
			t.Fatal(err)
		}
		posted.Body.Close()
		loc := form.Action
		if posted.StatusCode == http.StatusFound || posted.StatusCode == http.StatusSeeOther {
			l, err := posted.Location()
			if err != nil {
				t.Fatal(err)
			}
			loc = l.String()
		} else {
			t.Fatalf("POST to end_session: %d, want a redirect", posted.StatusCode)
		}
		// Through the OP and back.
		next := loc
		var final *url.URL
		var body string
		for hop := 0; ; hop++ {
			if hop > 5 {
				t.Fatalf("too many redirects after sign_out (at %s)", next)
			}
			resp, b2 := b.navigate(next)
			if resp.StatusCode == http.StatusFound {
				l, err := resp.Location()
				if err != nil {
					t.Fatal(err)
				}
				next = l.String()
				continue
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s after sign_out: %d %s", next, resp.StatusCode, b2)
			}
			final, body = resp.Request.URL, b2
			break
		}
		if final.String() != wantBack {
			t.Fatalf("logout ended at %s, want %s", final, wantBack)
		}
		t.Logf("logout: sign_out -> %s -> %s (%q)", endSession, final, body)
		if resp, _ := b.navigate(baseA + "/page"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), authEndpoint+"?") {
			t.Fatalf("after logout: %d to %q, want a new login at the OP", resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	signOut("/bye", baseA+"/bye")

	// The OP itself refuses a post_logout_redirect_uri that is not
	// registered: the check above is the OP's, not a pass-through.
	{
		q := url.Values{"client_id": {z.ClientID}, "post_logout_redirect_uri": {baseA + "/elsewhere"}}
		resp, body := b.navigate(endSession + "?" + q.Encode())
		if resp.StatusCode < 400 || !strings.Contains(body, "post_logout_redirect_uri") {
			t.Fatalf("OP accepted an unregistered post_logout_redirect_uri: %d %q to %q", resp.StatusCode, body, resp.Header.Get("Location"))
		}
	}

	// A disallowed rd falls back to post_logout_redirect (/goodbye).
	cb = login(baseA, z.ClientID, true)
	if cb.StatusCode != http.StatusFound || setCookieNamed(cb, "_web") == nil {
		t.Fatalf("second login: %d", cb.StatusCode)
	}
	signOut("https://evil.example/steal", baseA+"/goodbye")

	// --- Site B: public client; the OP requires PKCE.
	cb = login(baseB, z.PublicClientID, true)
	if cb.StatusCode != http.StatusFound || cb.Header.Get("Location") != "/page" || setCookieNamed(cb, "_native") == nil {
		t.Fatalf("public client callback: %d to %q", cb.StatusCode, cb.Header.Get("Location"))
	}
	if resp, body := b.navigate(baseB + "/page"); resp.StatusCode != http.StatusOK || body != want {
		t.Fatalf("public client page: %d %q", resp.StatusCode, body)
	}

	// --- Site C: the same public client without PKCE is refused by the OP.
	cb = login(baseC, z.PublicClientID, false)
	if cb.StatusCode < 400 || setCookieNamed(cb, "_nopkce") != nil {
		t.Fatalf("callback without PKCE: %d, session cookie %v; want an error and no session", cb.StatusCode, setCookieNamed(cb, "_nopkce"))
	}
	if resp, _ := b.api(baseC + "/page"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("site C after the refused exchange: %d, want 401", resp.StatusCode)
	}
	logData, _ := os.ReadFile(caddy.LogPath)
	if !strings.Contains(string(logData), "PKCE required") {
		t.Errorf("Caddy's log does not show the OP's \"PKCE required\" refusal (callback status %d)", cb.StatusCode)
	}
	t.Logf("without PKCE the callback answered %d", cb.StatusCode)
}
