package oauth2proxy

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/oauth2-proxy/mockoidc"
	"golang.org/x/oauth2"

	"github.com/oidc-session/oidc_session/internal/testenv"
	"github.com/oidc-session/oidc_session/internal/testidp"
	"github.com/oidc-session/oidc_session/internal/testredis"
)

// Secrets the proxies under test run with, one for each way oauth2-proxy
// turns a secret into an AES key: a base64url-encoded 32-byte key (as its
// docs generate it); 32 characters of the base64url alphabet, which it
// decodes to a 24-byte key; 32 characters that are not base64, taken as
// they are. otherSecret is used by no proxy.
var (
	encodedSecret  = base64.URLEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	alphabetSecret = "raw-secret-of-32-characters-abcd"
	plainSecret    = "plain secret (not base64!) 32 ch"
	otherSecret    = "another-secret-32-characters-xyz"
)

const otherClientID, otherClientSecret = "other-app", "other-app-secret-0123456789abcdef"

// world is one Dex, one Redis and the oauth2-proxies under test: two by
// cookie store (with secrets read differently as keys), one by Redis
// store, and one for another client of the same Dex that shares the first
// one's cookie secret.
type world struct {
	dex                               *testidp.Dex
	redis                             *testredis.Server
	cookieP, plainP, redisP, otherApp *testidp.OAuth2Proxy
}

func newWorld(t *testing.T) *world {
	t.Helper()
	testidp.OAuth2ProxyBinary(t)
	redisSrv := testredis.Start(t, testredis.Options{})
	addrs := []string{testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)}
	var callbacks []string
	for _, a := range addrs {
		callbacks = append(callbacks, testidp.OAuth2ProxyOptions{Addr: a}.CallbackURL())
	}
	dex := testidp.StartDex(t, testidp.DexOptions{
		RedirectURIs: callbacks,
		ExtraClients: []testidp.DexClient{{ID: otherClientID, Secret: otherClientSecret}},
	})
	base := testidp.OAuth2ProxyOptions{Issuer: dex.Issuer, ClientID: dex.ClientID, ClientSecret: dex.ClientSecret}
	cookieOpts, plainOpts, redisOpts, otherOpts := base, base, base, base
	cookieOpts.Addr, cookieOpts.CookieSecret = addrs[0], alphabetSecret
	plainOpts.Addr, plainOpts.CookieSecret = addrs[1], plainSecret
	redisOpts.Addr, redisOpts.CookieSecret, redisOpts.RedisURL = addrs[2], plainSecret, redisSrv.URL()
	otherOpts.Addr, otherOpts.CookieSecret = addrs[3], alphabetSecret
	otherOpts.ClientID, otherOpts.ClientSecret = otherClientID, otherClientSecret
	return &world{
		dex:      dex,
		redis:    redisSrv,
		cookieP:  testidp.StartOAuth2Proxy(t, cookieOpts),
		plainP:   testidp.StartOAuth2Proxy(t, plainOpts),
		redisP:   testidp.StartOAuth2Proxy(t, redisOpts),
		otherApp: testidp.StartOAuth2Proxy(t, otherOpts),
	}
}

func newReader(t testing.TB, cfg Config) *Reader {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRealProxySessions logs in through the real oauth2-proxy with Dex
// and reads what it stored, in its cookie store and in its Redis store.
func TestRealProxySessions(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, w.dex.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	verifier := provider.Verifier(&oidc.Config{ClientID: w.dex.ClientID})

	for what, p := range map[string]*testidp.OAuth2Proxy{"decoded": w.cookieP, "as is": w.plainP} {
		t.Run("cookie store, secret "+what, func(t *testing.T) {
			l := p.LoginDex(t, w.dex)
			if !p.Serves(t, l.Cookies) {
				t.Fatal("oauth2-proxy does not serve its own session")
			}
			r := newReader(t, Config{CookieSecrets: []string{p.Options.CookieSecret}})
			s := mustRead(t, r, requestWith(l.Cookies...))
			checkDexSession(t, w, provider, verifier, l, s)
			if s.Store != StoreCookie || s.RedisKey != "" {
				t.Errorf("store %q key %q, want the cookie store", s.Store, s.RedisKey)
			}
			if again := mustRead(t, r, requestWith(l.Cookies...)); again.ID != s.ID || s.ID == "" {
				t.Errorf("ID %q then %q: want one stable ID", s.ID, again.ID)
			}
		})
	}

	t.Run("redis store", func(t *testing.T) {
		l := w.redisP.LoginDex(t, w.dex)
		if !w.redisP.Serves(t, l.Cookies) {
			t.Fatal("oauth2-proxy does not serve its own session")
		}
		client := w.redis.Client()
		r := newReader(t, Config{CookieSecrets: []string{w.redisP.Options.CookieSecret}, Redis: client})
		s := mustRead(t, r, requestWith(l.Cookies...))
		checkDexSession(t, w, provider, verifier, l, s)
		if s.Store != StoreRedis || s.ID != s.RedisKey || !validTicketKey(s.RedisKey) || !strings.HasPrefix(s.RedisKey, DefaultCookieName+"-") {
			t.Fatalf("store %q key %q ID %q, want the Redis store and oauth2-proxy's key", s.Store, s.RedisKey, s.ID)
		}
		ttl, err := client.TTL(ctx, s.RedisKey).Result()
		if err != nil || ttl < DefaultCookieExpire-time.Minute || ttl > DefaultCookieExpire {
			t.Errorf("record TTL %v (%v): not the proxy's record", ttl, err)
		}
	})
}

// checkDexSession checks a session read from a login through the proxy
// against what Dex issued.
func checkDexSession(t *testing.T, w *world, provider *oidc.Provider, verifier *oidc.IDTokenVerifier, l testidp.ProxyLogin, s *Session) {
	t.Helper()
	ctx := context.Background()
	idt, err := verifier.Verify(ctx, s.IDToken)
	if err != nil {
		t.Fatalf("ID token does not verify with Dex: %v", err)
	}
	var claims struct {
		Email             string   `json:"email"`
		PreferredUsername string   `json:"preferred_username"`
		Groups            []string `json:"groups"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if s.Email != w.dex.Email || claims.Email != s.Email {
		t.Errorf("email %q, ID token %q, Dex user %q", s.Email, claims.Email, w.dex.Email)
	}
	if s.User != idt.Subject || s.User == "" {
		t.Errorf("user %q, want the ID token's sub %q", s.User, idt.Subject)
	}
	// Dex's static users have neither preferred_username nor groups:
	// TestRealProxyChunks reads both from another IdP.
	if s.PreferredUsername != claims.PreferredUsername {
		t.Errorf("preferred username %q, ID token %q", s.PreferredUsername, claims.PreferredUsername)
	}
	if !slices.Equal(s.Groups, claims.Groups) {
		t.Errorf("groups %q, ID token %q", s.Groups, claims.Groups)
	}
	// The access token is Dex's: its userinfo endpoint accepts it.
	info, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: s.AccessToken, TokenType: "Bearer"}))
	if err != nil || info.Email != w.dex.Email {
		t.Errorf("userinfo with the access token: %v, email %v", err, info)
	}
	// The refresh token is Dex's: its token endpoint redeems it.
	conf := oauth2.Config{ClientID: w.dex.ClientID, ClientSecret: w.dex.ClientSecret, Endpoint: provider.Endpoint()}
	if tok, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: s.RefreshToken}).Token(); err != nil || tok.AccessToken == "" {
		t.Errorf("refresh with the session's refresh token: %v", err)
	}
	if s.CreatedAt.Before(l.Before.Add(-time.Second)) || s.CreatedAt.After(l.After) {
		t.Errorf("created %v, login between %v and %v", s.CreatedAt, l.Before, l.After)
	}
	if d := s.ExpiresOn.Sub(idt.Expiry); d < -5*time.Second || d > 5*time.Second {
		t.Errorf("expires on %v, Dex's tokens expire %v", s.ExpiresOn, idt.Expiry)
	}
	if want := time.Unix(s.CreatedAt.Unix(), 0).Add(DefaultCookieExpire); !s.Expires.Equal(want) {
		t.Errorf("cookie ends %v, want signing time + 168h = %v", s.Expires, want)
	}
	if s.CookieName != DefaultCookieName || !slices.Equal(s.Cookies, cookieNames(l.Cookies)) {
		t.Errorf("cookie %q, cookies %q; want %q", s.CookieName, s.Cookies, cookieNames(l.Cookies))
	}
}

// TestRealProxyRefusals changes real oauth2-proxy cookies the way an
// attacker (or time) would: every change is refused, and where the proxy
// can be asked, it refuses the same cookie too.
func TestRealProxyRefusals(t *testing.T) {
	w := newWorld(t)
	l := w.cookieP.LoginDex(t, w.dex)
	if len(l.Cookies) != 1 {
		t.Fatalf("%d cookies; this test changes a single one", len(l.Cookies))
	}
	good := l.Cookies[0]
	secret := w.cookieP.Options.CookieSecret
	r := newReader(t, Config{CookieSecrets: []string{secret}})
	with := func(value string) *http.Request {
		return requestWith(&http.Cookie{Name: good.Name, Value: value})
	}
	payload, ts, sig := fields(t, good.Value)
	changed := map[string]string{
		"payload":       tamper(payload, len(payload)/2) + "|" + ts + "|" + sig,
		"time":          payload + "|" + strconv.Itoa(mustAtoi(t, ts)+1) + "|" + sig,
		"signature":     payload + "|" + ts + "|" + tamper(sig, 3),
		"no signature":  payload + "|" + ts + "|",
		"signature cut": payload + "|" + ts + "|" + sig[:len(sig)-4],
	}
	for what, value := range changed {
		t.Run("tampered "+what, func(t *testing.T) {
			wantErr(t, r, with(value), ErrSignature)
			if w.cookieP.Serves(t, []*http.Cookie{{Name: good.Name, Value: value}}) {
				t.Error("oauth2-proxy itself serves it")
			}
		})
	}
	t.Run("another secret", func(t *testing.T) {
		wantErr(t, newReader(t, Config{CookieSecrets: []string{otherSecret}}), with(good.Value), ErrSignature)
		// With the right one among several (a rotation), it reads.
		mustRead(t, newReader(t, Config{CookieSecrets: []string{otherSecret, secret}}), with(good.Value))
	})
	t.Run("moved to another cookie name", func(t *testing.T) {
		// The name is signed: a value does not verify under another name.
		two := newReader(t, Config{CookieNames: []string{"_other", DefaultCookieName}, CookieSecrets: []string{secret}})
		wantErr(t, two, requestWith(&http.Cookie{Name: "_other", Value: good.Value}), ErrSignature)
		wantErr(t, newReader(t, Config{CookieNames: []string{"_other"}, CookieSecrets: []string{secret}}), with(good.Value), ErrNoCookie)
	})
	t.Run("expired", func(t *testing.T) {
		signed := time.Unix(int64(mustAtoi(t, ts)), 0)
		late := newReader(t, Config{CookieSecrets: []string{secret}})
		late.now = func() time.Time { return signed.Add(DefaultCookieExpire) }
		wantErr(t, late, with(good.Value), ErrExpired)
		late.now = func() time.Time { return signed.Add(DefaultCookieExpire - time.Second) }
		mustRead(t, late, with(good.Value))
		short := newReader(t, Config{CookieSecrets: []string{secret}, CookieExpire: time.Hour})
		short.now = func() time.Time { return signed.Add(time.Hour) }
		wantErr(t, short, with(good.Value), ErrExpired)
	})
	t.Run("signed in the future", func(t *testing.T) {
		early := newReader(t, Config{CookieSecrets: []string{secret}})
		early.now = func() time.Time { return time.Unix(int64(mustAtoi(t, ts)), 0).Add(-maxFutureSkew) }
		wantErr(t, early, with(good.Value), ErrExpired)
	})
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRealProxyOtherClient: a proxy for another client of the same IdP
// that shares the cookie secret makes cookies the Reader accepts (it
// cannot tell clients apart); the ID token it exposes is how the caller
// can, and must.
func TestRealProxyOtherClient(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	l := w.otherApp.LoginDex(t, w.dex)
	s := mustRead(t, newReader(t, Config{CookieSecrets: []string{w.cookieP.Options.CookieSecret}}), requestWith(l.Cookies...))
	provider, err := oidc.NewProvider(ctx, w.dex.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	_, err = provider.Verifier(&oidc.Config{ClientID: w.dex.ClientID}).Verify(ctx, s.IDToken)
	if err == nil || !strings.Contains(err.Error(), "audience") {
		t.Fatalf("our client's verifier: %v; want an audience error", err)
	}
	if _, err := provider.Verifier(&oidc.Config{ClientID: otherClientID}).Verify(ctx, s.IDToken); err != nil {
		t.Fatalf("the other client's verifier refuses its own token: %v", err)
	}
}

// TestRealProxyRedis covers the Redis store beyond a plain read: the older
// ticket form (written into Redis by the real proxy), key prefixes, a
// record that is gone, a ticket with the wrong secret, no Redis
// configured, and Redis down.
func TestRealProxyRedis(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	client := w.redis.Client()
	r := newReader(t, Config{CookieSecrets: []string{plainSecret}, Redis: client})

	t.Run("older ticket form", func(t *testing.T) {
		// oauth2-proxy reuses a valid ticket it finds in the login's
		// request, of either form. So a browser holding a ticket cookie
		// of the older form (key.secret) gets its session written by the
		// real proxy under that key and secret.
		tk := newTicket(DefaultCookieName)
		old := &http.Cookie{Name: DefaultCookieName, Value: sign(plainSecret, DefaultCookieName, tk.legacy(), time.Now())}
		l := w.redisP.LoginDex(t, w.dex, old)
		s := mustRead(t, r, requestWith(old))
		if s.RedisKey != tk.key || s.Email != w.dex.Email {
			t.Fatalf("key %q email %q; want the proxy's record under %q", s.RedisKey, s.Email, tk.key)
		}
		if fresh := mustRead(t, r, requestWith(l.Cookies...)); fresh.RedisKey != tk.key {
			t.Fatalf("the proxy's new cookie names %q, not the reused %q", fresh.RedisKey, tk.key)
		}
		// The same key with another secret does not open the record.
		wrong := tk
		wrong.secret = newTicket(DefaultCookieName).secret
		err := wantErr(t, r, requestWith(&http.Cookie{Name: DefaultCookieName, Value: sign(plainSecret, DefaultCookieName, wrong.v2(), time.Now())}), ErrDecrypt)
		if !strings.Contains(err.Error(), "ticket") {
			t.Errorf("error %q does not say the ticket is wrong", err)
		}
	})

	l := w.redisP.LoginDex(t, w.dex)
	s := mustRead(t, r, requestWith(l.Cookies...))

	t.Run("key prefix", func(t *testing.T) {
		record, err := client.Get(ctx, s.RedisKey).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if err := client.Set(ctx, "site-a:"+s.RedisKey, record, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		prefixed := newReader(t, Config{CookieSecrets: []string{plainSecret}, Redis: client, RedisKeyPrefix: "site-a:"})
		ps := mustRead(t, prefixed, requestWith(l.Cookies...))
		if ps.RedisKey != "site-a:"+s.RedisKey || ps.ID != ps.RedisKey || ps.Email != s.Email {
			t.Fatalf("prefixed key %q ID %q", ps.RedisKey, ps.ID)
		}
		wantErr(t, newReader(t, Config{CookieSecrets: []string{plainSecret}, Redis: client, RedisKeyPrefix: "site-b:"}), requestWith(l.Cookies...), ErrNotFound)
	})
	t.Run("no Redis configured", func(t *testing.T) {
		wantErr(t, newReader(t, Config{CookieSecrets: []string{plainSecret}}), requestWith(l.Cookies...), ErrDecrypt)
	})
	t.Run("record gone", func(t *testing.T) {
		l2 := w.redisP.LoginDex(t, w.dex)
		s2 := mustRead(t, r, requestWith(l2.Cookies...))
		if err := client.Del(ctx, s2.RedisKey).Err(); err != nil {
			t.Fatal(err)
		}
		wantErr(t, r, requestWith(l2.Cookies...), ErrNotFound)
		if w.redisP.Serves(t, l2.Cookies) {
			t.Error("oauth2-proxy serves a session whose record is gone")
		}
	})
	t.Run("redis down", func(t *testing.T) {
		w.redis.Stop()
		shortCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := r.Read(shortCtx, requestWith(l.Cookies...))
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Read with Redis down: %v; want ErrUnavailable", err)
		}
		// Unavailable wins over another name's plain refusal, so the
		// caller answers 503 rather than start a login.
		two := newReader(t, Config{CookieNames: []string{"_first", DefaultCookieName}, CookieSecrets: []string{plainSecret}, Redis: client})
		_, err = two.Read(shortCtx, requestWith(append([]*http.Cookie{{Name: "_first", Value: "garbage"}}, l.Cookies...)...))
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("two names, Redis down: %v; want ErrUnavailable", err)
		}
	})
}

// TestRealProxyChunks: a session too big for one cookie, split by the real
// proxy into chunks (a user in 300 groups, from an IdP that puts them in
// the ID token), read whole; broken sets are refused.
func TestRealProxyChunks(t *testing.T) {
	testidp.OAuth2ProxyBinary(t)
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	groups := make([]string, 300)
	for i := range groups {
		b := make([]byte, 6)
		rand.Read(b)
		groups[i] = fmt.Sprintf("group-%d-%x", i, b)
	}
	user := mockoidc.DefaultUser()
	user.Groups = groups
	m.QueueUser(user)
	p := testidp.StartOAuth2Proxy(t, testidp.OAuth2ProxyOptions{
		Addr:         testenv.FreeAddr(t),
		Issuer:       m.Issuer(),
		ClientID:     m.ClientID,
		ClientSecret: m.ClientSecret,
		CookieSecret: encodedSecret,
		Scopes:       "openid email profile groups",
	})
	l := p.LoginAuto(t)
	if len(l.Cookies) < 3 {
		t.Fatalf("%d cookies; want a session in three chunks or more", len(l.Cookies))
	}
	for i, c := range l.Cookies {
		if c.Name != chunkName(DefaultCookieName, i) {
			t.Fatalf("cookie %d is %q", i, c.Name)
		}
	}
	if !p.Serves(t, l.Cookies) {
		t.Fatal("oauth2-proxy does not serve its own chunked session")
	}
	r := newReader(t, Config{CookieSecrets: []string{encodedSecret}})
	s := mustRead(t, r, requestWith(l.Cookies...))
	if !slices.Equal(s.Groups, groups) || s.Email != user.Email || s.User != user.Subject || s.PreferredUsername != user.PreferredUsername {
		t.Fatalf("read %d groups, email %q user %q; want the 300 groups of %q", len(s.Groups), s.Email, s.User, user.Email)
	}
	if !slices.Equal(s.Cookies, cookieNames(l.Cookies)) {
		t.Errorf("cookies %q, want %q", s.Cookies, cookieNames(l.Cookies))
	}
	// Made for another issuer than the caller's: its verifier tells.
	keys := oidc.NewRemoteKeySet(context.Background(), m.JWKSEndpoint())
	cfg := &oidc.Config{ClientID: m.ClientID}
	if _, err := oidc.NewVerifier("https://idp.example.com", keys, cfg).Verify(context.Background(), s.IDToken); err == nil || !strings.Contains(err.Error(), "different provider") {
		t.Errorf("verifier of another issuer: %v; want an issuer error", err)
	}
	if _, err := oidc.NewVerifier(m.Issuer(), keys, cfg).Verify(context.Background(), s.IDToken); err != nil {
		t.Errorf("the issuer's own verifier: %v", err)
	}

	n := len(l.Cookies)
	broken := map[string][]*http.Cookie{
		"last chunk missing":   l.Cookies[:n-1],
		"middle chunk missing": append(slices.Clone(l.Cookies[:1]), l.Cookies[2:]...),
		"chunks swapped":       swapValues(l.Cookies, 0, 1),
	}
	for what, cookies := range broken {
		t.Run(what, func(t *testing.T) {
			_, err := r.Read(context.Background(), requestWith(cookies...))
			if !errors.Is(err, ErrSignature) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v; want a signature or format refusal", err)
			}
		})
	}
	t.Run("chunk 0 missing", func(t *testing.T) {
		wantErr(t, r, requestWith(l.Cookies[1:]...), ErrMalformed)
	})
	t.Run("single cookie wins over leftover chunks", func(t *testing.T) {
		// A smaller session saved later is one cookie; oauth2-proxy does
		// not expire the chunks of the bigger one before it.
		small := &http.Cookie{Name: DefaultCookieName, Value: sign(encodedSecret, DefaultCookieName, encodeCookieSession(t, encodedSecret, &state{Email: "later@example.com"}), time.Now())}
		s := mustRead(t, r, requestWith(append(slices.Clone(l.Cookies), small)...))
		if s.Email != "later@example.com" {
			t.Fatalf("read %q, want the single cookie's session", s.Email)
		}
		want := append(cookieNames(l.Cookies), DefaultCookieName)
		if !slices.Equal(s.Cookies, want) {
			t.Errorf("cookies to clear %q, want %q", s.Cookies, want)
		}
	})
}

func swapValues(cookies []*http.Cookie, i, j int) []*http.Cookie {
	out := make([]*http.Cookie, len(cookies))
	for k, c := range cookies {
		cc := *c
		out[k] = &cc
	}
	out[i].Value, out[j].Value = out[j].Value, out[i].Value
	return out
}
