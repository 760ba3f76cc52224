package e2e

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oidc-session/oidc_session/internal/testenv"
	"github.com/oidc-session/oidc_session/internal/testidp"
)

// TestJSONAdminAPI configures oidc_session only through Caddy's admin API:
// a Caddy process started with nothing but its admin endpoint gets a JSON
// config by POST /load, the cookie secrets are rotated by a PATCH of
// .../cookie/secrets, and {env.*} placeholders stay placeholders in
// GET /config/. Rotation: a session made before the PATCH keeps working;
// a login after it is encrypted with the new secret (a config with only
// the old secret refuses it, one with only the new secret accepts it and
// refuses the old session).
func TestJSONAdminAPI(t *testing.T) {
	testidp.DexBinary(t) // skip (or fail in CI) before building Caddy
	bin := caddyBinary(t)
	addr, admin := testenv.FreeAddr(t), testenv.FreeAddr(t)
	base := "http://" + addr
	dex := testidp.StartDex(t, testidp.DexOptions{RedirectURIs: []string{base + "/oauth2/callback"}})

	const (
		oldSecretValue = "e2e-old-secret-0123456789-abcdefghijklmn"
		oldSecret      = "{env.E2E_OLD_SECRET}"
		newSecret      = "e2e-new-secret-9876543210-zyxwvutsrqponm"
		server         = "e2e"
		secretsPath    = "/config/apps/http/servers/" + server + "/routes/0/handle/0/cookie/secrets"
	)
	adminCfg := map[string]any{"listen": admin, "config": map[string]any{"persist": false}}
	caddy := startCaddy(t, caddyOpts{
		bin:       bin,
		adminAddr: admin,
		json:      mustJSON(t, map[string]any{"admin": adminCfg}),
		env:       []string{"E2E_OLD_SECRET=" + oldSecretValue, "E2E_CLIENT_SECRET=" + dex.ClientSecret},
	})
	if code, body := caddy.adminDo(t, http.MethodGet, "/config/apps", "", nil); code != http.StatusOK || strings.TrimSpace(string(body)) != "null" {
		t.Fatalf("apps before /load: %d %s, want none", code, body)
	}

	config := func(secrets ...string) []byte {
		return mustJSON(t, map[string]any{
			"admin":   adminCfg,
			"storage": map[string]any{"module": "file_system", "root": filepath.Join(caddy.Dir, "storage")},
			"apps": map[string]any{"http": map[string]any{"servers": map[string]any{server: map[string]any{
				"listen":          []string{addr},
				"automatic_https": map[string]any{"disable": true},
				"routes": []any{map[string]any{"handle": []any{
					map[string]any{
						"handler":       "oidc_session",
						"issuer":        dex.Issuer,
						"client_id":     dex.ClientID,
						"client_secret": "{env.E2E_CLIENT_SECRET}",
						"scopes":        []string{"openid", "email", "profile", "offline_access"},
						"cookie":        map[string]any{"secrets": secrets, "insecure": true},
					},
					map[string]any{"handler": "static_response", "status_code": 200,
						"body": "id={http.auth.user.id} email={http.auth.user.email}"},
				}}},
			}}}},
		})
	}
	load := func(secrets ...string) {
		t.Helper()
		if code, body := caddy.adminDo(t, http.MethodPost, "/load", "application/json", config(secrets...)); code != http.StatusOK {
			t.Fatalf("POST /load (secrets %v): %d %s", secrets, code, body)
		}
	}
	getSecrets := func() []string {
		t.Helper()
		code, body := caddy.adminDo(t, http.MethodGet, secretsPath, "", nil)
		var got []string
		if code != http.StatusOK || json.Unmarshal(body, &got) != nil {
			t.Fatalf("GET %s: %d %s", secretsPath, code, body)
		}
		return got
	}
	checkPlaceholders := func() {
		t.Helper()
		code, body := caddy.adminDo(t, http.MethodGet, "/config/", "", nil)
		if code != http.StatusOK {
			t.Fatalf("GET /config/: %d", code)
		}
		s := string(body)
		if strings.Contains(s, oldSecretValue) || strings.Contains(s, dex.ClientSecret) {
			t.Fatalf("GET /config/ shows a secret's value instead of its placeholder:\n%s", s)
		}
		if !strings.Contains(s, `"{env.E2E_CLIENT_SECRET}"`) || !strings.Contains(s, `"`+oldSecret+`"`) {
			t.Fatalf("GET /config/ lost the {env.*} placeholders:\n%s", s)
		}
	}

	load(oldSecret)
	if got := getSecrets(); len(got) != 1 || got[0] != oldSecret {
		t.Fatalf("secrets after /load: %q", got)
	}
	checkPlaceholders()

	loginAs := func(b *browser) *http.Cookie {
		t.Helper()
		resp, err := testidp.LoginDex(b.client, base+"/page", dex.Email, dex.Password)
		if err != nil {
			t.Fatalf("login: %v", err)
		}
		resp.Body.Close()
		sc := setCookieNamed(resp, "_oauth2_proxy")
		if resp.StatusCode != http.StatusFound || sc == nil {
			t.Fatalf("callback: %d, cookie %v", resp.StatusCode, sc)
		}
		return &http.Cookie{Name: sc.Name, Value: sc.Value}
	}
	// Dex derives "sub" from the user ID and the connector: the email is
	// what is compared.
	want := "email=" + dex.Email
	works := func(c *http.Cookie) bool {
		t.Helper()
		resp := withCookie(t, base+"/page", c)
		switch {
		case resp.StatusCode == http.StatusOK:
			return true
		case resp.StatusCode == http.StatusFound && strings.HasPrefix(resp.Header.Get("Location"), dex.Issuer+"/auth"):
			return false
		}
		t.Fatalf("GET /page with a cookie: %d to %q, want 200 or a login at Dex", resp.StatusCode, resp.Header.Get("Location"))
		return false
	}

	b1 := newBrowser(t)
	oldSession := loginAs(b1)
	if resp, body := b1.navigate(base + "/page"); resp.StatusCode != http.StatusOK || !strings.HasSuffix(body, want) {
		t.Fatalf("page after login: %d %q", resp.StatusCode, body)
	}

	// Rotate: the new secret first, the old one still accepted.
	patch := mustJSON(t, []string{newSecret, oldSecret})
	if code, body := caddy.adminDo(t, http.MethodPatch, secretsPath, "application/json", patch); code != http.StatusOK {
		t.Fatalf("PATCH %s: %d %s", secretsPath, code, body)
	}
	if got := getSecrets(); len(got) != 2 || got[0] != newSecret || got[1] != oldSecret {
		t.Fatalf("secrets after PATCH: %q", got)
	}
	checkPlaceholders()
	if !works(oldSession) {
		t.Fatal("the session made before the rotation stopped working after the PATCH")
	}
	if resp, body := b1.navigate(base + "/page"); resp.StatusCode != http.StatusOK || !strings.HasSuffix(body, want) {
		t.Fatalf("old session in its browser after the PATCH: %d %q", resp.StatusCode, body)
	}
	b2 := newBrowser(t)
	newSession := loginAs(b2)
	if !works(newSession) {
		t.Fatal("a login after the PATCH does not work")
	}

	// Which secret made which cookie.
	load(oldSecret)
	if !works(oldSession) || works(newSession) {
		t.Fatalf("with only the old secret: old session works=%v, new session works=%v; want true, false", works(oldSession), works(newSession))
	}
	load(newSecret)
	if !works(newSession) || works(oldSession) {
		t.Fatalf("with only the new secret: new session works=%v, old session works=%v; want true, false", works(newSession), works(oldSession))
	}
	if got := getSecrets(); len(got) != 1 || got[0] != newSecret {
		t.Fatalf("secrets after the last /load: %q", got)
	}
}
