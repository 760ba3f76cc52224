package integration

// Issue 17 against oidc-provider: a high-security client (private_key_jwt
// with the keys the OP fetches from <prefix>/jwks.json, pushed
// authorization requests, DPoP-bound tokens, profile fapi2) logs in and
// refreshes with every store, and fails cleanly where it must.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/oidc-session/oidc_session/internal/testcaddy"
	"github.com/oidc-session/oidc_session/internal/testenv"
	"github.com/oidc-session/oidc_session/internal/testidp"
	"github.com/oidc-session/oidc_session/oidc"
	"github.com/oidc-session/oidc_session/sessions"
)

// clientKeyFile writes a new P-256 private key (PKCS#8 PEM) and returns
// its path.
func clientKeyFile(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "client.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fapiSite is a site protected by client as the high-security client:
// extra holds its client_auth, client_key, par, dpop or profile lines.
// The page shows the identity and the access token handed upstream.
func fapiSite(op *testidp.OIDCProvider, client testidp.OPClient, extra string) string {
	return fmt.Sprintf(`	oidc_session {
		issuer %s
		client_id %s
		scopes openid email profile offline_access
		headers {
			access_token X-Access-Token
		}
		cookie {
			secret %s
			secure off
		}
		%s
	}
	respond "id={http.auth.user.id} email={http.auth.user.email} token={http.request.header.X-Access-Token}" 200
`, op.Issuer, client.ID, testcaddy.TestSecret, extra)
}

// pageToken is the token the page of fapiSite shows.
func pageToken(t *testing.T, body string) string {
	t.Helper()
	_, tok, ok := strings.Cut(body, " token=")
	if !ok || tok == "" {
		t.Fatalf("no access token on the page: %q", body)
	}
	return tok
}

// bearerUserinfoStatus presents an access token to the OP's userinfo endpoint as
// a Bearer token (no DPoP proof).
func bearerUserinfoStatus(t *testing.T, op *testidp.OIDCProvider, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, op.Issuer+"/me", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestFAPI2LoginAndRefresh: under profile fapi2, against oidc-provider in
// its FAPI 2.0 mode with a client that authenticates with private_key_jwt
// (keys fetched from our jwks.json), must push its authorization requests
// and gets DPoP-bound tokens: the browser carries only a request_uri, the
// user logs in, the token handed upstream is refused as a Bearer token,
// and the session refreshes past its access token's life, the DPoP key
// travelling inside the session in every store.
func TestFAPI2LoginAndRefresh(t *testing.T) {
	for _, store := range testcaddy.Stores {
		t.Run(store.Name, func(t *testing.T) {
			addr := testenv.FreeAddr(t)
			op := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{
				RedirectURIs:      []string{"http://" + addr + "/oauth2/callback"},
				ClientJWKSURI:     "http://" + addr + "/oauth2/jwks.json",
				FAPI2:             true,
				RequirePAR:        true,
				RequireDPoP:       true,
				IDTokenSigningAlg: "ES256",
				AccessTokenTTL:    4 * time.Second,
			})
			base := testcaddy.StartCaddyOn(t, addr, fapiSite(op, op.Key,
				"client_key "+clientKeyFile(t)+"\n\t\tprofile fapi2\n\t\t"+store.Config(t)))
			b := testcaddy.NewBrowser(t)

			resp, _ := b.Navigate(base + "/")
			auth, _ := url.Parse(resp.Header.Get("Location"))
			if q := auth.Query(); resp.StatusCode != http.StatusFound || len(q) != 2 || !strings.HasPrefix(q.Get("request_uri"), "urn:ietf:params:oauth:request_uri:") {
				t.Fatalf("login redirect %d to %s; want only client_id and request_uri (PAR)", resp.StatusCode, auth)
			}
			resp, body := opLogin(t, op, b, base+"/")
			if want := "id=" + op.User.Subject + " email=" + op.User.Email; resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, want) {
				t.Fatalf("page: %d %q, want %q...", resp.StatusCode, body, want)
			}
			first := pageToken(t, body)
			// Bound to the session's key: stolen from an upstream, of no use.
			if s := bearerUserinfoStatus(t, op, first); s != http.StatusUnauthorized {
				t.Errorf("the DPoP-bound access token as a Bearer token: status %d, want 401", s)
			}

			time.Sleep(4500 * time.Millisecond)
			resp, body = b.Navigate(base + "/")
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, "email="+op.User.Email) {
				t.Fatalf("after the access token expired: %d %q", resp.StatusCode, body)
			}
			if pageToken(t, body) == first {
				t.Error("no refresh: the same access token after its expiry")
			}
		})
	}
}

// TestFAPIDPoPNonce: an OP that wants its DPoP nonce in every proof
// (use_dpop_nonce) gets it at the PAR, token and userinfo endpoints, at
// login and at the refresh, with private_key_jwt keys given inline.
func TestFAPIDPoPNonce(t *testing.T) {
	addr := testenv.FreeAddr(t)
	keyPath := clientKeyFile(t)
	key, err := oidc.LoadClientKey(keyPath, "")
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := oidc.ClientJWKS([]*oidc.ClientKey{key})
	if err != nil {
		t.Fatal(err)
	}
	op := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{
		RedirectURIs:   []string{"http://" + addr + "/oauth2/callback"},
		ClientJWKS:     jwks,
		DPoPNonce:      true,
		RequireDPoP:    true,
		AccessTokenTTL: 4 * time.Second,
	})
	base := testcaddy.StartCaddyOn(t, addr, fapiSite(op, op.Key, "client_auth private_key_jwt\n\t\tclient_key "+keyPath+"\n\t\tpar on\n\t\tdpop on"))
	b := testcaddy.NewBrowser(t)
	resp, body := opLogin(t, op, b, base+"/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "email="+op.User.Email) {
		t.Fatalf("login with DPoP nonces: %d %q", resp.StatusCode, body)
	}
	first := pageToken(t, body)
	time.Sleep(4500 * time.Millisecond)
	resp, body = b.Navigate(base + "/")
	if resp.StatusCode != http.StatusOK || pageToken(t, body) == first {
		t.Fatalf("refresh with DPoP nonces: %d %q", resp.StatusCode, body)
	}
}

// TestFAPIJWKSUnreachable: an OP that cannot fetch the client's keys
// refuses its client authentication: logins answer 500 (a configuration
// problem, logged), with no redirect to the OP and no login flow cookie,
// so the browser is not sent round in a loop.
func TestFAPIJWKSUnreachable(t *testing.T) {
	addr := testenv.FreeAddr(t)
	op := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{
		RedirectURIs:  []string{"http://" + addr + "/oauth2/callback"},
		ClientJWKSURI: "http://" + testenv.FreeAddr(t) + "/jwks.json", // nothing listens
	})
	base := testcaddy.StartCaddyOn(t, addr, fapiSite(op, op.Key, "client_key "+clientKeyFile(t)))
	b := testcaddy.NewBrowser(t)
	for range 2 {
		resp, body := b.Navigate(base + "/")
		if resp.StatusCode != http.StatusInternalServerError || resp.Header.Get("Location") != "" || len(resp.Cookies()) != 0 {
			t.Fatalf("login when the OP cannot fetch jwks.json: %d %q, Location %q, cookies %v", resp.StatusCode, body, resp.Header.Get("Location"), resp.Cookies())
		}
	}
	if log := testenv.Tail(testcaddy.Running().LogFile, 50); !strings.Contains(log, "invalid_client") {
		t.Errorf("the log does not say the OP refused the client:\n%s", log)
	}
}

// TestFAPIPAREndpointDown: par auto pushes to an OP that requires it;
// when its PAR endpoint cannot be reached, a
// login answers 503 (the IdP is unavailable, the user can retry) rather
// than redirect the browser anywhere, every time, and writes no login
// flow cookie.
func TestFAPIPAREndpointDown(t *testing.T) {
	addr := testenv.FreeAddr(t)
	op := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{
		RedirectURIs: []string{"http://" + addr + "/oauth2/callback"},
		RequirePAR:   true,
	})
	// par left to auto: it follows the OP, which requires PAR.
	site := strings.Replace(fapiSite(op, op.Basic, ""), "client_id "+op.Basic.ID, "client_id "+op.Basic.ID+"\n\t\tclient_secret "+op.Basic.Secret, 1)
	base := testcaddy.StartCaddyOn(t, addr, site)
	b := testcaddy.NewBrowser(t)
	resp, _ := b.Navigate(base + "/")
	if auth, _ := url.Parse(resp.Header.Get("Location")); resp.StatusCode != http.StatusFound || auth.Query().Get("request_uri") == "" {
		t.Fatalf("first login with the OP up: %d to %s, want a pushed request", resp.StatusCode, auth)
	}
	op.Stop() // discovery is done: the next logins reach for the PAR endpoint
	for range 2 {
		resp, _ := b.Navigate(base + "/")
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Location") != "" || testcaddy.SetCookieNamed(resp, sessionCookie) != nil {
			t.Fatalf("login with the PAR endpoint down: %d, Location %q; want 503 and no redirect", resp.StatusCode, resp.Header.Get("Location"))
		}
		for _, c := range resp.Cookies() {
			if strings.Contains(c.Name, "_flow_") {
				t.Errorf("a login flow cookie %s was written for a login that cannot start", c.Name)
			}
		}
	}
}

// TestFAPIRefreshWithAnotherKey: a public client's refresh token is bound
// to the session's DPoP key; a session whose key is another (as a copy of
// its tokens without its key would be) is refused by the OP at its
// refresh, and the session ends cleanly: the next navigation is a new
// login, never a 5xx.
func TestFAPIRefreshWithAnotherKey(t *testing.T) {
	addr := testenv.FreeAddr(t)
	op := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{
		RedirectURIs:   []string{"http://" + addr + "/oauth2/callback"},
		AccessTokenTTL: 3 * time.Second,
	})
	base := testcaddy.StartCaddyOn(t, addr, fapiSite(op, op.Public, "dpop on"))
	b := testcaddy.NewBrowser(t)
	if resp, body := opLogin(t, op, b, base+"/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d %q", resp.StatusCode, body)
	}

	// The session cookie, re-sealed with the same tokens and another key.
	c := b.Cookie(base, sessionCookie)
	if c == nil {
		t.Fatal("no single session cookie")
	}
	keys, err := sessions.NewKeyring("session", testcaddy.TestSecret)
	if err != nil {
		t.Fatal(err)
	}
	binding := []byte(op.Issuer + "\x00" + op.Public.ID)
	sealed, _ := base64.RawURLEncoding.DecodeString(c.Value)
	plain, err := keys.Open(sealed, binding)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sessions.Decode(plain)
	if err != nil || len(s.DPoPKey) == 0 {
		t.Fatalf("session %v without a DPoP key (%v)", s, err)
	}
	other, _ := oidc.NewDPoPKey()
	if s.DPoPKey, err = other.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	b.SetCookie(base, sessionCookie, base64.RawURLEncoding.EncodeToString(keys.Seal(sessions.Encode(s), binding)))

	time.Sleep(3500 * time.Millisecond)
	resp, body := b.Navigate(base + "/")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), op.Issuer) {
		t.Fatalf("refresh with another DPoP key: %d %q, Location %q; want a new login", resp.StatusCode, body, resp.Header.Get("Location"))
	}
	if c := testcaddy.SetCookieNamed(resp, sessionCookie); c == nil || c.MaxAge >= 0 {
		t.Errorf("the refused session's cookie was not cleared: %v", c)
	}
	// The new login (the user still has a session at the OP, so no form)
	// makes a session that works.
	for hops := 0; resp.StatusCode/100 == 3 && hops < 10; hops++ {
		resp, body = b.Navigate(testcaddy.Resolve(resp.Request.URL.String(), resp.Header.Get("Location")))
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "id="+op.User.Subject) {
		t.Fatalf("the new login: %d %q", resp.StatusCode, body)
	}
}

// TestFAPIRefusesToStart: what the Caddyfile adapter cannot see (a key or
// a secret behind a placeholder) is checked when Caddy loads the config,
// which it then refuses, with a message naming the setting.
func TestFAPIRefusesToStart(t *testing.T) {
	pub := filepath.Join(t.TempDir(), "public.pem")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAPI_TEST_SECRET", "a-client-secret")
	for name, c := range map[string]struct{ lines, want string }{
		"public key":   {"client_key {file." + pub + "}", `client_key: PEM block "PUBLIC KEY" is not a private key`},
		"fapi2 secret": {"client_secret {env.FAPI_TEST_SECRET}\n\t\tclient_key " + clientKeyFile(t) + "\n\t\tprofile fapi2", "client_secret is set: FAPI 2.0 allows no shared secrets"},
		"unset key":    {"client_key {env.FAPI_TEST_UNSET}\n\t\tprofile fapi2", `client_key "{env.FAPI_TEST_UNSET}" is empty`},
		"unset secret": {"client_auth client_secret_post\n\t\tclient_secret {env.FAPI_TEST_UNSET}", "client_auth client_secret_post needs client_secret"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testcaddy.GlobalOptions(testenv.FreeAddr(t), t.TempDir(), "discard", "ERROR") +
				fmt.Sprintf("http://%s {\n\toidc_session {\n\t\tissuer http://127.0.0.1:1\n\t\tclient_id app\n\t\t%s\n\t\tcookie {\n\t\t\tsecret %s\n\t\t}\n\t}\n}\n",
					testenv.FreeAddr(t), c.lines, testcaddy.TestSecret)
			js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
			if err == nil {
				err = caddy.Load(js, true)
				t.Cleanup(func() { _ = caddy.Stop() })
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("load: %v; want an error containing %q", err, c.want)
			}
		})
	}
}

// TestFAPIKeyRotation: of two client_key, the first signs and both are
// published: with the OP knowing only key A (registered inline), A first
// logs in and B first is refused (500, no redirect), while jwks.json
// lists both, the signing key first, under their client_key_id.
func TestFAPIKeyRotation(t *testing.T) {
	addr := testenv.FreeAddr(t)
	a, b := clientKeyFile(t), clientKeyFile(t)
	keyA, err := oidc.LoadClientKey(a, "key-a")
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := oidc.ClientJWKS([]*oidc.ClientKey{keyA})
	op := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{
		RedirectURIs: []string{"http://" + addr + "/oauth2/callback"},
		ClientJWKS:   jwks,
	})

	base := testcaddy.StartCaddyOn(t, addr, fapiSite(op, op.Key, "client_key "+a+"\n\t\tclient_key "+b+"\n\t\tclient_key_id key-a key-b"))
	br := testcaddy.NewBrowser(t)
	if resp, body := opLogin(t, op, br, base+"/"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "id="+op.User.Subject) {
		t.Fatalf("the registered key signing: %d %q", resp.StatusCode, body)
	}
	resp, body := br.Do(http.MethodGet, base+"/oauth2/jwks.json")
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
			D   string `json:"d"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(body), &set); err != nil || resp.StatusCode != http.StatusOK || len(set.Keys) != 2 ||
		set.Keys[0].Kid != "key-a" || set.Keys[1].Kid != "key-b" || set.Keys[0].D != "" {
		t.Fatalf("jwks.json: %d %s (%v)", resp.StatusCode, body, err)
	}

	base = testcaddy.StartCaddyOn(t, addr, fapiSite(op, op.Key, "client_key "+b+"\n\t\tclient_key "+a+"\n\t\tclient_key_id key-b key-a"))
	if resp, body := testcaddy.NewBrowser(t).Navigate(base + "/"); resp.StatusCode != http.StatusInternalServerError || resp.Header.Get("Location") != "" {
		t.Fatalf("an unregistered key signing: %d %q, Location %q; want 500", resp.StatusCode, body, resp.Header.Get("Location"))
	}
}

// TestFAPIDPoPNotBound: with dpop on, an OP that ignores DPoP and issues
// Bearer tokens gets no session out of them: the callback answers 500
// (the configuration and the OP do not fit) and sets no session cookie.
func TestFAPIDPoPNotBound(t *testing.T) {
	addr := testenv.FreeAddr(t)
	op := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{
		RedirectURIs: []string{"http://" + addr + "/oauth2/callback"},
		DisableDPoP:  true,
	})
	base := testcaddy.StartCaddyOn(t, addr, fapiSite(op, op.Public, "dpop on"))
	b := testcaddy.NewBrowser(t)
	resp, _ := b.Navigate(base + "/")
	// The OP's login ends at our callback: its answer is the driver's.
	cb, err := op.Login(b.Client, resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	cb.Body.Close()
	if cb.Request.URL.Path != "/oauth2/callback" || cb.StatusCode != http.StatusInternalServerError || testcaddy.SetCookieNamed(cb, sessionCookie) != nil {
		t.Fatalf("callback %s with Bearer tokens under dpop on: %d", cb.Request.URL.Path, cb.StatusCode)
	}
	if log := testenv.Tail(testcaddy.Running().LogFile, 30); !strings.Contains(log, "not DPoP-bound") {
		t.Errorf("the log does not say why:\n%s", log)
	}
}
