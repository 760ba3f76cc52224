package integration

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/oidc-session/oidc_session/internal/testcaddy"
)

// logoutToken makes a back-channel logout token for sub, signed by key;
// edit changes the claims before signing.
func logoutToken(t *testing.T, idp *testcaddy.MockIdP, key *mockoidc.Keypair, sub string, edit func(jwt.MapClaims)) string {
	t.Helper()
	claims := jwt.MapClaims{
		"iss":    idp.Issuer(),
		"aud":    idp.ClientID,
		"iat":    time.Now().Unix(),
		"exp":    time.Now().Add(2 * time.Minute).Unix(),
		"jti":    fmt.Sprintf("jti-%d", time.Now().UnixNano()),
		"sub":    sub,
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}},
	}
	if edit != nil {
		edit(claims)
	}
	tok, err := key.SignJWT(claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func postLogout(t *testing.T, base, token string) (int, string) {
	t.Helper()
	resp, err := http.PostForm(base+"/oauth2/backchannel_logout", url.Values{"logout_token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// testBackchannelLogout logs users in, then has the IdP end one user's
// sessions through the back channel, and checks the bad tokens are refused.
func testBackchannelLogout(t *testing.T, storeConfig string) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, storeConfig))
	alice1 := testcaddy.LoginAs(t, idp, base, "alice")
	alice2 := testcaddy.LoginAs(t, idp, base, "alice")
	bob := testcaddy.LoginAs(t, idp, base, "bob")

	other, err := mockoidc.RandomKeypair(2048)
	if err != nil {
		t.Fatal(err)
	}
	// Signed with a key the IdP does not publish: it names a key id this
	// instance does not have, and the keys were fetched moments ago (at
	// login), so the token is put off (the IdP's rotated key would be
	// fetched on its retry), never accepted.
	if code, body := postLogout(t, base, logoutToken(t, idp, other, "alice", nil)); code != http.StatusServiceUnavailable || !strings.Contains(body, "retry") {
		t.Errorf("unknown signing key: %d %s, want 503 retry", code, body)
	}
	for name, tok := range map[string]string{
		"wrong aud":     logoutToken(t, idp, idp.Keypair, "alice", func(c jwt.MapClaims) { c["aud"] = "someone-else" }),
		"wrong iss":     logoutToken(t, idp, idp.Keypair, "alice", func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }),
		"no events":     logoutToken(t, idp, idp.Keypair, "alice", func(c jwt.MapClaims) { delete(c, "events") }),
		"nonce":         logoutToken(t, idp, idp.Keypair, "alice", func(c jwt.MapClaims) { c["nonce"] = "n" }),
		"no sub or sid": logoutToken(t, idp, idp.Keypair, "alice", func(c jwt.MapClaims) { delete(c, "sub") }),
		"old iat":       logoutToken(t, idp, idp.Keypair, "alice", func(c jwt.MapClaims) { c["iat"] = time.Now().Add(-time.Hour).Unix() }),
		"garbage":       "not.a.token",
	} {
		if code, body := postLogout(t, base, tok); code != http.StatusBadRequest || !strings.Contains(body, `"error"`) {
			t.Errorf("%s: %d %s, want 400 with a JSON error", name, code, body)
		}
	}
	for _, b := range []*testcaddy.Browser{alice1, alice2, bob} {
		if resp, _ := b.Navigate(base + "/"); resp.StatusCode != 200 {
			t.Fatalf("a refused logout token ended a session: %d", resp.StatusCode)
		}
	}

	valid := logoutToken(t, idp, idp.Keypair, "alice", nil)
	if code, body := postLogout(t, base, valid); code != http.StatusOK {
		t.Fatalf("valid logout token: %d %s", code, body)
	}
	for _, b := range []*testcaddy.Browser{alice1, alice2} {
		if resp, _ := b.Navigate(base + "/"); resp.StatusCode != http.StatusFound {
			t.Errorf("alice's session survived back-channel logout: %d", resp.StatusCode)
		}
	}
	if resp, _ := bob.Navigate(base + "/"); resp.StatusCode != 200 {
		t.Errorf("bob's session ended by alice's logout: %d", resp.StatusCode)
	}
	if code, body := postLogout(t, base, valid); code != http.StatusBadRequest || !strings.Contains(body, "replay") {
		t.Errorf("replayed jti: %d %s, want 400", code, body)
	}
	if resp, _ := http.Get(base + "/oauth2/backchannel_logout"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET back-channel logout: %d", resp.StatusCode)
	}

	// Metrics, scraped from Caddy's admin endpoint.
	resp, err := http.Get(testcaddy.Running().AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"caddy_oidc_session_logins_total",
		`caddy_oidc_session_logouts_total{kind="backchannel",provider="default"}`,
		`caddy_oidc_session_store_duration_seconds_count{op="load"`,
		`caddy_oidc_session_active_sessions{store=`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestBackchannelLogout runs testBackchannelLogout on every server-side
// store.
func TestBackchannelLogout(t *testing.T) {
	for _, st := range testcaddy.ServerSideStores() {
		t.Run(st.Name, func(t *testing.T) { testBackchannelLogout(t, st.Config(t)) })
	}
}

func TestBackchannelLogoutCookieStore(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	code, body := postLogout(t, base, logoutToken(t, idp, idp.Keypair, "alice", nil))
	if code != http.StatusNotImplemented || !strings.Contains(body, "cookie store") {
		t.Errorf("back-channel logout with the cookie store: %d %s, want 501 saying why", code, body)
	}
}

func TestFrontchannelLogout(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, storeNamed("redis").Config(t)))
	alice := testcaddy.LoginAs(t, idp, base, "alice")
	bob := testcaddy.LoginAs(t, idp, base, "bob")
	for _, q := range []string{"?iss=https://evil.example&sid=s1", "?iss=" + url.QueryEscape(idp.Issuer()), "?sid=s1"} {
		if resp, _ := alice.Navigate(base + "/oauth2/frontchannel_logout" + q); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("front-channel logout %s: %d, want 400", q, resp.StatusCode)
		}
	}
	// A sid of another IdP session leaves this browser's session alone.
	resp, _ := alice.Navigate(base + "/oauth2/frontchannel_logout?iss=" + url.QueryEscape(idp.Issuer()) + "&sid=other")
	if resp.StatusCode != 200 || testcaddy.SetCookieNamed(resp, "_oauth2_proxy") != nil {
		t.Errorf("front-channel logout of another sid: %d %v", resp.StatusCode, resp.Header["Set-Cookie"])
	}
	resp, body := alice.Navigate(base + "/oauth2/frontchannel_logout")
	if resp.StatusCode != 200 || !strings.Contains(body, "Logged out") || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("front-channel logout: %d %s", resp.StatusCode, body)
	}
	if resp, _ := alice.Navigate(base + "/"); resp.StatusCode != http.StatusFound {
		t.Errorf("alice still logged in after front-channel logout: %d", resp.StatusCode)
	}
	if resp, _ := bob.Navigate(base + "/"); resp.StatusCode != 200 {
		t.Errorf("bob logged out by alice's front-channel logout: %d", resp.StatusCode)
	}
	if l := adminList(t, ""); l.Count != 1 {
		t.Errorf("sessions after front-channel logout: %+v", l)
	}
}
