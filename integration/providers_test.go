package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/oidc-session/oidc_session/internal/testcaddy"
	"github.com/oidc-session/oidc_session/internal/testenv"
)

// providerBlock is a provider block for a mock IdP.
func providerBlock(name string, idp *testcaddy.MockIdP, extra string) string {
	return fmt.Sprintf(`		provider %s {
			issuer %s
			client_id %s
			client_secret %s
			%s
		}
`, name, idp.Issuer(), idp.ClientID, idp.ClientSecret, extra)
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
	corp := mockIdPWithKey(t, true)
	partners := mockIdPWithKey(t, false)
	base := testcaddy.StartCaddy(t, providersSite(providerBlock("corp", corp, "")+providerBlock("partners", partners, ""), "store memory"))

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
	metrics := testcaddy.Running().Scrape(t)
	for _, want := range []string{`caddy_oidc_session_logins_total{provider="corp"} 2`, `caddy_oidc_session_logins_total{provider="partners"} 2`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestProvidersChooserAndReload: a site with one IdP moves it into a
// provider block and adds a second one: everyone stays logged in. Without a
// provider the login shows the chooser; a login_hint of a provider's
// domain skips it; API calls get 401 naming the providers.
func TestProvidersChooserAndReload(t *testing.T) {
	corp := testcaddy.StartMockIdP(t, 0, false)
	partners := testcaddy.StartMockIdP(t, 0, false)
	addr := testenv.FreeAddr(t)
	base := "http://" + addr
	testcaddy.StartCaddyOn(t, addr, testcaddy.SiteConfig(corp, ""))
	before := testcaddy.LoginAs(t, corp, base, "alice")

	testcaddy.StartCaddyOn(t, addr, providersSite(
		providerBlock("corp", corp, `label "Staff sign-in"
			domains example.com`)+providerBlock("partners", partners, "label Partners"), ""))
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
	resp, _ = b.Navigate(base + "/oauth2/start?login_hint=bob@example.com&rd=/page")
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
	loginAt(t, partners, base, "partners", "bob")
}
