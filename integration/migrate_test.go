package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/oidc-session/oidc_session/internal/oauth2proxy"
	"github.com/oidc-session/oidc_session/internal/testcaddy"
	"github.com/oidc-session/oidc_session/internal/testenv"
	"github.com/oidc-session/oidc_session/internal/testidp"
	"github.com/oidc-session/oidc_session/internal/testredis"
)

// The secret the proxies whose sessions are taken over run with, and one
// that no site knows.
const (
	proxySecret      = "raw-secret-of-32-characters-abcd"
	otherProxySecret = "another-secret-32-characters-xyz"
	proxyCookie      = testidp.OAuth2ProxyDefaultCookie
	ourCookie        = "_oidc_session"
)

// migration is a switch from oauth2-proxy to oidc_session: a real Dex,
// a Redis, real oauth2-proxies that make the sessions (cookie store, Redis
// store, another secret, another client of the same Dex sharing the
// secret), and one Caddy whose sites take them over in different ways.
type migration struct {
	dex                                 *testidp.Dex
	redis                               *testredis.Server
	cookieP, redisP, otherSecretP, othP *testidp.OAuth2Proxy
	// Sites: cookie store under oauth2-proxy's cookie name; our cookie
	// name and Redis store beside the proxy's Redis, with userinfo; a short
	// cookie_expire; a window that is over; a rolling switch.
	cookieSite, redisSite, expireSite, overSite, keepSite string
}

// dexTokenTTL is the lifetime of Dex's tokens: short, so a session whose
// access token has expired can be made within the test.
const dexTokenTTL = 6 * time.Second

func startMigration(t *testing.T) *migration {
	t.Helper()
	testidp.OAuth2ProxyBinary(t)
	m := &migration{redis: testredis.Start(t, testredis.Options{})}
	proxyAddrs := []string{testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)}
	var callbacks []string
	for _, a := range proxyAddrs {
		callbacks = append(callbacks, testidp.OAuth2ProxyOptions{Addr: a}.CallbackURL())
	}
	m.dex = testidp.StartDex(t, testidp.DexOptions{
		RedirectURIs: callbacks,
		IDTokenTTL:   dexTokenTTL,
		ExtraClients: []testidp.DexClient{{ID: "other-app", Secret: "other-app-secret-0123456789abcdef"}},
	})
	base := testidp.OAuth2ProxyOptions{Issuer: m.dex.Issuer, ClientID: m.dex.ClientID, ClientSecret: m.dex.ClientSecret, CookieSecret: proxySecret}
	cookieOpts, redisOpts, otherSecretOpts, otherClientOpts := base, base, base, base
	cookieOpts.Addr = proxyAddrs[0]
	redisOpts.Addr, redisOpts.RedisURL = proxyAddrs[1], m.redis.URL()
	otherSecretOpts.Addr, otherSecretOpts.CookieSecret = proxyAddrs[2], otherProxySecret
	otherClientOpts.Addr, otherClientOpts.ClientID, otherClientOpts.ClientSecret = proxyAddrs[3], "other-app", "other-app-secret-0123456789abcdef"
	m.cookieP = testidp.StartOAuth2Proxy(t, cookieOpts)
	m.redisP = testidp.StartOAuth2Proxy(t, redisOpts)
	m.otherSecretP = testidp.StartOAuth2Proxy(t, otherSecretOpts)
	m.othP = testidp.StartOAuth2Proxy(t, otherClientOpts)

	until := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	redis := "redis {\n\t\t\t\turl " + m.redis.URL() + "\n\t\t\t}"
	sites := map[string]string{}
	site := func(cookieName, store, migrate string) string {
		addr := testenv.FreeAddr(t)
		sites[addr] = m.siteConfig(cookieName, store, migrate)
		return "http://" + addr
	}
	m.cookieSite = site("", "", "until "+until)
	m.redisSite = site(ourCookie, testcaddy.StoreBlock("redis", "url "+m.redis.URL(), "key_prefix oidc:")+"\n\t\tfetch_userinfo", redis+"\n\t\t\tuntil "+until)
	m.expireSite = site("", "", "cookie_expire 1s\n\t\t\tuntil "+until)
	m.overSite = site("", "", "until 2020-01-01")
	m.keepSite = site(ourCookie, "store memory", redis+"\n\t\t\tkeep_proxy_sessions\n\t\t\tuntil "+until)
	testcaddy.StartCaddySites(t, sites)
	return m
}

func (m *migration) siteConfig(cookieName, store, migrate string) string {
	name := ""
	if cookieName != "" {
		name = "name " + cookieName
	}
	return fmt.Sprintf(`	oidc_session {
		issuer %s
		client_id %s
		client_secret %s
		scopes openid email profile groups offline_access
		cookie {
			%s
			secret %s
			secure off
		}
		%s
		migrate_oauth2_proxy {
			cookie_secret %s
			%s
		}
	}
	respond "id={http.auth.user.id} email={http.auth.user.email} cookie={header.Cookie}" 200
`, m.dex.Issuer, m.dex.ClientID, m.dex.ClientSecret, name, testcaddy.TestSecret, store, proxySecret, migrate)
}

// browserWith is a browser holding cookies for site.
func browserWith(t *testing.T, site string, cookies []*http.Cookie) *testcaddy.Browser {
	b := testcaddy.NewBrowser(t)
	for _, c := range cookies {
		b.SetCookie(site, c.Name, c.Value)
	}
	return b
}

// servedAsDex checks that a page was served to Dex's user, without a
// login, and that the upstream saw no session cookie.
func (m *migration) servedAsDex(t *testing.T, resp *http.Response, body string) {
	t.Helper()
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "email="+m.dex.Email+" ") {
		t.Fatalf("%d %q (Location %q); want the page for %s", resp.StatusCode, body, resp.Header.Get("Location"), m.dex.Email)
	}
	if !strings.HasSuffix(body, "cookie=") {
		t.Errorf("the upstream saw cookies: %q", body)
	}
}

// normalLogin checks that a request was answered as one without a session:
// a navigation goes to Dex, an API call gets 401; never a 5xx.
func (m *migration) normalLogin(t *testing.T, site string, cookies []*http.Cookie) {
	t.Helper()
	resp, body := browserWith(t, site, cookies).Navigate(site + "/page")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), m.dex.Issuer+"/") {
		t.Fatalf("navigation: %d to %q (%q); want a login at Dex", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if resp, _ := browserWith(t, site, cookies).Do(http.MethodGet, site+"/api", "Accept: application/json"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API call: %d; want 401", resp.StatusCode)
	}
}

// cleared reports whether resp tells the browser to drop the cookie name.
func cleared(resp *http.Response, name string) bool {
	c := testcaddy.SetCookieNamed(resp, name)
	return c != nil && c.MaxAge < 0
}

// TestMigrateOAuth2Proxy: users logged in through a real oauth2-proxy are
// served by oidc_session without visiting Dex, once converted; sessions
// that do not verify get a normal login.
func TestMigrateOAuth2Proxy(t *testing.T) {
	m := startMigration(t)

	t.Run("cookie store", func(t *testing.T) {
		l := m.cookieP.LoginDex(t, m.dex)
		b := browserWith(t, m.cookieSite, l.Cookies)
		resp, body := b.Navigate(m.cookieSite + "/page")
		m.servedAsDex(t, resp, body)
		ours := testcaddy.SetCookieNamed(resp, proxyCookie)
		if ours == nil || ours.Value == l.Cookies[0].Value || ours.MaxAge <= 0 {
			t.Fatalf("no session cookie of ours in place of the proxy's: %v", ours)
		}
		// The second request uses our session: nothing is converted or
		// written again.
		resp, body = b.Navigate(m.cookieSite + "/page")
		m.servedAsDex(t, resp, body)
		if len(resp.Cookies()) != 0 {
			t.Errorf("second request set cookies %v", resp.Cookies())
		}
		// The proxy's cookie, replayed right after (a request the browser
		// sent before our cookie reached it), gets the same session.
		resp, _ = browserWith(t, m.cookieSite, l.Cookies).Navigate(m.cookieSite + "/page")
		if again := testcaddy.SetCookieNamed(resp, proxyCookie); resp.StatusCode != http.StatusOK || again == nil || again.Value != ours.Value {
			t.Errorf("replayed proxy cookie: %d, cookie %v; want the session already made", resp.StatusCode, again)
		}
	})

	t.Run("parallel requests convert once", func(t *testing.T) {
		l := m.cookieP.LoginDex(t, m.dex)
		const n = 10
		values := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, body := browserWith(t, m.cookieSite, l.Cookies).Do(http.MethodGet, m.cookieSite+"/api", "Accept: application/json")
				if c := testcaddy.SetCookieNamed(resp, proxyCookie); resp.StatusCode == http.StatusOK && c != nil {
					values[i] = c.Value
				} else {
					t.Errorf("request %d: %d %q", i, resp.StatusCode, body)
				}
			}()
		}
		wg.Wait()
		for i := range values {
			if values[i] != values[0] {
				t.Fatalf("request %d got another session than request 0: %d conversions", i, n)
			}
		}
	})

	t.Run("redis store", func(t *testing.T) {
		l := m.redisP.LoginDex(t, m.dex)
		key := proxyRedisKey(t, m, l.Cookies)
		b := browserWith(t, m.redisSite, l.Cookies)
		resp, body := b.Navigate(m.redisSite + "/page")
		m.servedAsDex(t, resp, body)
		if testcaddy.SetCookieNamed(resp, ourCookie) == nil {
			t.Fatal("no session cookie of ours")
		}
		if !cleared(resp, proxyCookie) || b.Cookie(m.redisSite, proxyCookie) != nil {
			t.Fatalf("oauth2-proxy cookie not cleared: %v", resp.Header.Values("Set-Cookie"))
		}
		// Its record goes soon after: the ticket cannot be converted twice.
		if ttl := m.redis.Client().TTL(context.Background(), key).Val(); ttl <= 0 || ttl > 30*time.Second {
			t.Errorf("oauth2-proxy record TTL %v after the takeover; want 30s at most", ttl)
		}
		resp, body = b.Navigate(m.redisSite + "/page")
		m.servedAsDex(t, resp, body)
		if len(resp.Cookies()) != 0 {
			t.Errorf("second request set cookies %v", resp.Cookies())
		}
	})

	t.Run("refused", func(t *testing.T) {
		good := m.cookieP.LoginDex(t, m.dex).Cookies[0]
		payload, rest, _ := strings.Cut(good.Value, "|")
		cases := map[string][]*http.Cookie{
			"tampered":       {{Name: proxyCookie, Value: payload[:20] + flip(payload[20]) + payload[21:] + "|" + rest}},
			"other secret":   m.otherSecretP.LoginDex(t, m.dex).Cookies,
			"other client":   m.othP.LoginDex(t, m.dex).Cookies,
			"not a cookie":   {{Name: proxyCookie, Value: "garbage"}},
			"ticket, no key": m.redisP.LoginDex(t, m.dex).Cookies, // the cookie site has no Redis
		}
		for what, cookies := range cases {
			t.Run(what, func(t *testing.T) { m.normalLogin(t, m.cookieSite, cookies) })
		}
		t.Run("expired", func(t *testing.T) {
			// cookie_expire 1s: a proxy cookie signed two seconds ago is
			// older than the proxy would accept.
			time.Sleep(time.Until(time.Unix(signedAt(t, good), 0).Add(2 * time.Second)))
			m.normalLogin(t, m.expireSite, []*http.Cookie{good})
			// The same cookie is fine where the lifetime is the default.
			resp, body := browserWith(t, m.cookieSite, []*http.Cookie{good}).Navigate(m.cookieSite + "/page")
			m.servedAsDex(t, resp, body)
		})
	})

	t.Run("window over", func(t *testing.T) {
		m.normalLogin(t, m.overSite, m.cookieP.LoginDex(t, m.dex).Cookies)
		if log, _ := os.ReadFile(testcaddy.Running().LogFile); !strings.Contains(string(log), "migration window is over") {
			t.Error("no warning at start that the window is over")
		}
	})

	t.Run("rolling switch keeps the proxy's session", func(t *testing.T) {
		l := m.redisP.LoginDex(t, m.dex)
		key := proxyRedisKey(t, m, l.Cookies)
		ttl := m.redis.Client().TTL(context.Background(), key).Val()
		b := browserWith(t, m.keepSite, l.Cookies)
		resp, body := b.Navigate(m.keepSite + "/page")
		m.servedAsDex(t, resp, body) // the upstream sees neither cookie
		if testcaddy.SetCookieNamed(resp, ourCookie) == nil || testcaddy.SetCookieNamed(resp, proxyCookie) != nil {
			t.Fatalf("Set-Cookie %v; want ours only", resp.Header.Values("Set-Cookie"))
		}
		if after := m.redis.Client().TTL(context.Background(), key).Val(); after < ttl-time.Minute {
			t.Errorf("record TTL %v, was %v: the proxy's record was touched", after, ttl)
		}
		if !m.redisP.Serves(t, l.Cookies) {
			t.Error("oauth2-proxy no longer serves its session")
		}
		resp, body = b.Navigate(m.keepSite + "/page")
		m.servedAsDex(t, resp, body)
		if len(resp.Cookies()) != 0 {
			t.Errorf("second request set cookies %v", resp.Cookies())
		}
		// Signing out clears the kept proxy cookie too, or the next
		// request would take its session over again.
		resp, _ = b.Navigate(m.keepSite + "/oauth2/sign_out")
		if !cleared(resp, proxyCookie) || !cleared(resp, ourCookie) {
			t.Fatalf("sign_out Set-Cookie %v; want both cookies cleared", resp.Header.Values("Set-Cookie"))
		}
		if resp, _ := b.Navigate(m.keepSite + "/page"); resp.StatusCode != http.StatusFound {
			t.Errorf("after sign_out: %d; want a login", resp.StatusCode)
		}
	})

	t.Run("expired access token", func(t *testing.T) {
		// Two sessions whose access tokens run out. Dex keeps one refresh
		// token per user and client, so the earlier login's is refused by
		// now: a normal login. The later one's is good: Dex renews it, and
		// the user is served.
		refused := m.cookieP.LoginDex(t, m.dex)
		good := m.cookieP.LoginDex(t, m.dex)
		time.Sleep(time.Until(good.After.Add(dexTokenTTL + time.Second)))
		if s := readProxySession(t, m, good.Cookies); !s.ExpiresOn.Before(time.Now()) {
			t.Fatalf("access token expires %v, not yet", s.ExpiresOn)
		}
		m.normalLogin(t, m.cookieSite, refused.Cookies)
		resp, body := browserWith(t, m.cookieSite, good.Cookies).Navigate(m.cookieSite + "/page")
		m.servedAsDex(t, resp, body)
	})

	t.Run("no secret or cookie in the log", func(t *testing.T) {
		l := m.cookieP.LoginDex(t, m.dex)
		browserWith(t, m.cookieSite, l.Cookies).Navigate(m.cookieSite + "/page")
		log, err := os.ReadFile(testcaddy.Running().LogFile)
		if err != nil {
			t.Fatal(err)
		}
		s := readProxySession(t, m, l.Cookies)
		for what, v := range map[string]string{"proxy secret": proxySecret, "other secret": otherProxySecret, "proxy cookie": l.Cookies[0].Value[:40],
			"ID token": s.IDToken, "refresh token": s.RefreshToken, "access token": s.AccessToken} {
			if strings.Contains(string(log), v) {
				t.Errorf("the log contains the %s", what)
			}
		}
		if !strings.Contains(string(log), "oauth2-proxy session taken over") {
			t.Error("no log line for the takeovers")
		}
	})

	// Last: it stops Redis.
	t.Run("redis down", func(t *testing.T) {
		l := m.redisP.LoginDex(t, m.dex)
		m.redis.Stop()
		resp, _ := browserWith(t, m.redisSite, l.Cookies).Navigate(m.redisSite + "/page")
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("oauth2-proxy's Redis down: %d; want 503", resp.StatusCode)
		}
		if len(resp.Cookies()) != 0 {
			t.Errorf("Set-Cookie %v while Redis is down; the proxy's cookie must stay", resp.Cookies())
		}
	})
}

// flip is another base64url character than c.
func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// signedAt is the signing time in an oauth2-proxy cookie value.
func signedAt(t *testing.T, c *http.Cookie) int64 {
	t.Helper()
	parts := strings.Split(c.Value, "|")
	var unix int64
	if len(parts) != 3 {
		t.Fatalf("cookie value of %d parts", len(parts))
	}
	if _, err := fmt.Sscan(parts[1], &unix); err != nil {
		t.Fatal(err)
	}
	return unix
}

// readProxySession reads an oauth2-proxy session as the sites do.
func readProxySession(t *testing.T, m *migration, cookies []*http.Cookie) *oauth2proxy.Session {
	t.Helper()
	r, err := oauth2proxy.New(oauth2proxy.Config{CookieSecrets: []string{proxySecret}, Redis: m.redis.Client()})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://site.test/", nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	s, err := r.Read(context.Background(), req)
	if err != nil {
		t.Fatalf("read the proxy's session: %v", err)
	}
	return s
}

// proxyRedisKey is the Redis key of an oauth2-proxy ticket cookie.
func proxyRedisKey(t *testing.T, m *migration, cookies []*http.Cookie) string {
	t.Helper()
	s := readProxySession(t, m, cookies)
	if s.Store != oauth2proxy.StoreRedis {
		t.Fatalf("session in the %s store; want Redis", s.Store)
	}
	return s.RedisKey
}

// TestMigrateRotatedSigningKey: an oauth2-proxy session whose ID token was
// signed with a key the IdP no longer publishes is taken over only when
// the IdP redeems its refresh token for this client and sends a new ID
// token; when it refuses, a normal login.
func TestMigrateRotatedSigningKey(t *testing.T) {
	idp := testcaddy.NewMockIdP(t, 0, false)
	var rotated atomic.Bool
	if err := idp.AddMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if rotated.Load() {
				rotateKey(t, idp, w, r, next)
				return
			}
			next.ServeHTTP(w, r)
		})
	}); err != nil {
		t.Fatal(err)
	}
	testcaddy.StartIdP(t, idp)
	p := testidp.StartOAuth2Proxy(t, testidp.OAuth2ProxyOptions{
		Addr: testenv.FreeAddr(t), Issuer: idp.Issuer(), ClientID: idp.ClientID, ClientSecret: idp.ClientSecret,
		CookieSecret: proxySecret, Scopes: "openid email profile groups",
	})
	good, refused := p.LoginAuto(t), p.LoginAuto(t)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, fmt.Sprintf(`migrate_oauth2_proxy {
			cookie_secret %s
			until %s
		}`, proxySecret, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))))
	// From now on the IdP publishes its key under another key ID, and
	// signs new ID tokens with it: the proxy's ID tokens no longer verify.
	rotated.Store(true)

	resp, body := browserWith(t, base, good.Cookies).Navigate(base + "/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "id="+mockoidc.DefaultUser().Subject+" ") {
		t.Fatalf("%d %q; want the page for the proxy's user", resp.StatusCode, body)
	}
	// The refreshed ID token has no email; the proxy's, which did not
	// verify, had one: nothing of it is kept.
	if !strings.Contains(body, "email= ") {
		t.Errorf("page %q: a claim of the unverified ID token was kept", body)
	}
	if n := idp.Refreshes.Load(); n != 1 {
		t.Fatalf("%d refreshes; the IdP must vouch for the session once", n)
	}
	idp.FailRefresh.Store("invalid_grant")
	resp, _ = browserWith(t, base, refused.Cookies).Navigate(base + "/")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), idp.Issuer()) {
		t.Fatalf("refresh refused: %d to %q; want a login", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// rotatedKID is the key ID the mock IdP uses once rotated.
const rotatedKID = "rotated"

// rotateKey serves the mock IdP's JWKS with its key under rotatedKID, and
// its token responses with the ID token signed under rotatedKID, without
// the email claims.
func rotateKey(t *testing.T, idp *testcaddy.MockIdP, w http.ResponseWriter, r *http.Request, next http.Handler) {
	switch {
	case strings.HasSuffix(r.URL.Path, mockoidc.JWKSEndpoint):
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
			Key: idp.Keypair.PublicKey, KeyID: rotatedKID, Algorithm: "RS256", Use: "sig",
		}}})
	case strings.HasSuffix(r.URL.Path, mockoidc.TokenEndpoint):
		rec := testcaddy.NewRecorder()
		next.ServeHTTP(rec, r)
		var doc map[string]any
		if rec.Status != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &doc) != nil {
			w.WriteHeader(rec.Status)
			_, _ = w.Write(rec.Body.Bytes())
			return
		}
		if raw, ok := doc["id_token"].(string); ok {
			doc["id_token"] = resign(t, idp, raw)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(doc)
	default:
		next.ServeHTTP(w, r)
	}
}

// resign signs the claims of raw but its email again with the mock IdP's
// key under rotatedKID.
func resign(t *testing.T, idp *testcaddy.MockIdP, raw string) string {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Error(err)
		return raw
	}
	claims := map[string]any{}
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
		t.Error(err)
		return raw
	}
	delete(claims, "email")
	delete(claims, "email_verified")
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: idp.Keypair.PrivateKey}, (&jose.SignerOptions{}).WithHeader("kid", rotatedKID))
	if err != nil {
		t.Error(err)
		return raw
	}
	out, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Error(err)
		return raw
	}
	return out
}
