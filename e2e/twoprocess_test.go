package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/internal/testenv"
	"github.com/oidc-session/oidc_session/internal/testidp"
	"github.com/oidc-session/oidc_session/internal/testredis"
)

// TestTwoCaddyProcessesShareRedis: two Caddy processes (A and B, same
// cookie secret, store redis) in front of one real Redis and Dex. A login
// through A is a session at B too (same host 127.0.0.1, so the browser
// sends the cookie to both ports); a logout through B ends it at A, which
// served the session from memory a moment before and hears of the end only
// through B's announcement on Redis pub/sub, and a copy of the old cookie
// is dead at both.
func TestTwoCaddyProcessesShareRedis(t *testing.T) {
	testidp.DexBinary(t) // skip (or fail in CI) before building Caddy
	testredis.Binary(t, "redis-server")
	bin := caddyBinary(t)
	rds := testredis.Start(t, testredis.Options{Password: "e2e-redis-pw"})
	addrA, addrB := testenv.FreeAddr(t), testenv.FreeAddr(t)
	adminA, adminB := testenv.FreeAddr(t), testenv.FreeAddr(t)
	baseA, baseB := "http://"+addrA, "http://"+addrB
	dex := testidp.StartDex(t, testidp.DexOptions{
		RedirectURIs: []string{baseA + "/oauth2/callback", baseB + "/oauth2/callback"},
	})

	env := []string{
		"E2E_COOKIE_SECRET=" + cookieSecret,
		"E2E_CLIENT_SECRET=" + dex.ClientSecret,
		"E2E_REDIS_PASSWORD=e2e-redis-pw",
	}
	start := func(name, addr, admin string) *caddyProc {
		dir := t.TempDir()
		cfg := globalOptions(admin, dir) + fmt.Sprintf(`http://%s {
	oidc_session {
		issuer %s
		client_id %s
		client_secret {env.E2E_CLIENT_SECRET}
		scopes openid email profile offline_access
		cookie {
			secret {env.E2E_COOKIE_SECRET}
			secure off
		}
		store redis {
			url redis://%s/0
			password {env.E2E_REDIS_PASSWORD}
			key_prefix e2e:
			# Only the announcement can tell A of the end in time.
			recheck_interval 1h
		}
	}
	respond "via=%s id={http.auth.user.id} email={http.auth.user.email}" 200
}
`, addr, dex.Issuer, dex.ClientID, rds.Addr, name)
		return startCaddy(t, caddyOpts{bin: bin, adminAddr: admin, caddyfile: cfg, env: env, waitAddrs: []string{addr}})
	}
	start("A", addrA, adminA)
	start("B", addrB, adminB)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rc := rds.Client()
	keys := func() []string {
		t.Helper()
		k, err := rc.Keys(ctx, "e2e:*").Result()
		if err != nil {
			t.Fatalf("redis KEYS: %v", err)
		}
		return k
	}

	b := newBrowser(t)
	resp, err := testidp.LoginDex(b.client, baseA+"/page", dex.Email, dex.Password)
	if err != nil {
		t.Fatalf("login through A: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/page" || !strings.HasPrefix(resp.Request.URL.String(), baseA+"/oauth2/callback?") {
		t.Fatalf("callback at A: %s answered %d to %q", resp.Request.URL, resp.StatusCode, resp.Header.Get("Location"))
	}
	sc := setCookieNamed(resp, "_oauth2_proxy")
	if sc == nil {
		t.Fatal("no session cookie from A's callback")
	}
	oldCookie := &http.Cookie{Name: sc.Name, Value: sc.Value}
	ks := keys()
	var sessionKey string
	for _, k := range ks {
		if strings.HasPrefix(k, "e2e:_oauth2_proxy-") && !strings.HasSuffix(k, ".meta") {
			if sessionKey != "" {
				t.Fatalf("two session keys in redis after one login: %v", ks)
			}
			sessionKey = k
		}
	}
	if sessionKey == "" {
		t.Fatalf("no session key in redis after the login: %v", ks)
	}
	t.Logf("redis keys after the login: %v; cookie value %d bytes", ks, len(sc.Value))

	for _, s := range []struct{ name, base string }{{"A", baseA}, {"B", baseB}, {"A", baseA}} {
		resp, body := b.navigate(s.base + "/page")
		want := fmt.Sprintf("via=%s id=", s.name)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, want) || !strings.Contains(body, "email="+dex.Email) {
			t.Fatalf("%s/page with the session made at A: %d %q", s.name, resp.StatusCode, body)
		}
	}
	if b.cookie(baseB, "_oauth2_proxy") == nil {
		t.Fatal("the jar does not send A's cookie to B")
	}

	// Logout through B (Dex has no end_session_endpoint: a local logout).
	resp, _ = b.navigate(baseB + "/oauth2/sign_out?rd=/bye")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/bye" {
		t.Fatalf("sign_out at B: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if b.cookie(baseA, "_oauth2_proxy") != nil {
		t.Fatal("session cookie still in the jar after sign_out at B")
	}
	for _, k := range keys() {
		if strings.HasPrefix(k, sessionKey) {
			t.Errorf("redis still has %s after sign_out at B", k)
		}
	}
	t.Logf("redis keys after the logout: %v", keys())

	// The browser, whose cookie sign_out cleared, is sent to log in at A.
	resp, _ = b.navigate(baseA + "/page")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), dex.Issuer+"/auth") {
		t.Fatalf("A after logout at B: %d to %q, want a login at Dex", resp.StatusCode, resp.Header.Get("Location"))
	}
	// A copy of the old cookie is dead at both.
	for _, base := range []string{baseA, baseB} {
		resp := withCookie(t, base+"/page", oldCookie)
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), dex.Issuer+"/auth") {
			t.Fatalf("old cookie replayed at %s after logout: %d to %q, want a login at Dex", base, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}
