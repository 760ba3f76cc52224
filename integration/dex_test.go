package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/internal/testcaddy"
	"github.com/oidc-session/oidc_session/internal/testenv"
	"github.com/oidc-session/oidc_session/internal/testidp"
)

// TestDexEndToEnd logs in through a real Dex (its password form), uses the
// session, lets the access token run into its refresh window, and logs out.
func TestDexEndToEnd(t *testing.T) {
	addr := testenv.FreeAddr(t)
	base := "http://" + addr
	dex := testidp.StartDex(t, testidp.DexOptions{
		RedirectURIs: []string{base + "/oauth2/callback"},
		IDTokenTTL:   6 * time.Second,
	})
	testcaddy.StartCaddyOn(t, addr, fmt.Sprintf(`	oidc_session {
		issuer %s
		client_id %s
		client_secret %s
		scopes openid email profile groups offline_access
		cookie {
			secret %s
			secure off
		}
	}
	respond "id={http.auth.user.id} email={http.auth.user.email} name={http.auth.user.name}" 200
`, dex.Issuer, dex.ClientID, dex.ClientSecret, testcaddy.TestSecret))

	b := testcaddy.NewBrowser(t)
	if resp, _ := b.Do("GET", base+"/api", "Accept: application/json"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API call without session: %d", resp.StatusCode)
	}
	resp, err := testidp.LoginDex(b.Client, base+"/dex/page", dex.Email, dex.Password)
	if err != nil {
		t.Fatalf("login at Dex: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/dex/page" {
		t.Fatalf("callback: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	loggedIn := time.Now()
	sc := testcaddy.SetCookieNamed(resp, "_oauth2_proxy")
	if sc == nil {
		t.Fatal("no session cookie after the Dex login")
	}
	t.Logf("Dex session cookie: %d bytes", len(sc.Value))
	if len(sc.Value) > 4000 {
		t.Errorf("Dex session cookie is %d bytes, want one cookie under 4000", len(sc.Value))
	}

	resp, body := b.Navigate(base + "/dex/page")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "email="+dex.Email) || strings.Contains(body, "id= ") {
		t.Fatalf("protected page: %d %s", resp.StatusCode, body)
	}

	// Into the last third of the 6 s token: the next request refreshes it
	// at Dex (which rotates refresh tokens) and keeps the user logged in.
	time.Sleep(time.Until(loggedIn.Add(4500 * time.Millisecond)))
	before := b.Cookie(base, "_oauth2_proxy").Value
	resp, body = b.Navigate(base + "/dex/page")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "email="+dex.Email) {
		t.Fatalf("page at refresh time: %d %s\n%s", resp.StatusCode, body, dex.LogTail(20))
	}
	if testcaddy.SetCookieNamed(resp, "_oauth2_proxy") == nil || b.Cookie(base, "_oauth2_proxy").Value == before {
		t.Errorf("no refreshed session cookie at token expiry")
	}
	// Past the first token's expiry the session still works on the new one.
	time.Sleep(time.Until(loggedIn.Add(6500 * time.Millisecond)))
	if resp, _ := b.Navigate(base + "/dex/page"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the first token expired: %d", resp.StatusCode)
	}

	// Dex has no end_session_endpoint: sign_out is local.
	resp, _ = b.Navigate(base + "/oauth2/sign_out?rd=/bye")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/bye" {
		t.Fatalf("sign_out: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = b.Navigate(base + "/dex/page")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), dex.Issuer) {
		t.Errorf("after sign_out: %d to %q, want a login at Dex", resp.StatusCode, resp.Header.Get("Location"))
	}
}
