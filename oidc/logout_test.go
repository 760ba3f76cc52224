package oidc

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const testClientSecret = "0123456789abcdef0123456789abcdef"

// fakeIdP serves discovery and a JWKS holding one RSA key, "k1", and
// "k2" once rotated holds one.
type fakeIdP struct {
	srv       *httptest.Server
	key       *rsa.PrivateKey
	rotated   atomic.Pointer[rsa.PrivateKey]
	keyFetch  atomic.Int32
	provider  *Provider
	discovery *Discovered
}

func newFakeIdP(t testing.TB) *fakeIdP {
	t.Helper()
	f := &fakeIdP{key: newRSAKey(t)}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                f.srv.URL,
			"authorization_endpoint":                f.srv.URL + "/auth",
			"token_endpoint":                        f.srv.URL + "/token",
			"jwks_uri":                              f.srv.URL + "/keys",
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"backchannel_logout_supported":          true,
			"backchannel_logout_session_supported":  true,
		})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		f.keyFetch.Add(1)
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
			Key: &f.key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig",
		}}}
		if k2 := f.rotated.Load(); k2 != nil {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k2.PublicKey, KeyID: "k2", Algorithm: "RS256", Use: "sig"})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)

	f.provider = NewProvider(Config{
		Issuer:       f.srv.URL,
		ClientID:     "app",
		ClientSecret: testClientSecret,
		Scopes:       []string{"openid"},
		HTTPClient:   f.srv.Client(),
	})
	d, err := f.provider.Discover(context.Background())
	if err != nil {
		t.Fatalf("discover: %v", err)
	}
	f.discovery = d
	return f
}

func newRSAKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// claims returns a valid logout token's claims, with both sub and sid.
func (f *fakeIdP) claims() map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": f.srv.URL,
		"aud": "app",
		"iat": now.Unix(),
		"exp": now.Add(2 * time.Minute).Unix(),
		"jti": rand.Text(),
		"sub": "alice",
		"sid": "session-1",
		"events": map[string]any{
			backchannelLogoutEvent: map[string]any{},
		},
	}
}

type signOpts struct {
	alg jose.SignatureAlgorithm // RS256 when empty
	key any                     // the IdP's key when nil
	kid string                  // "k1" when empty
	typ string                  // no typ header when empty
}

func (f *fakeIdP) sign(t *testing.T, claims map[string]any, o signOpts) string {
	t.Helper()
	if o.alg == "" {
		o.alg = jose.RS256
	}
	if o.key == nil {
		o.key = f.key
	}
	if o.kid == "" {
		o.kid = "k1"
	}
	so := &jose.SignerOptions{}
	so.WithHeader("kid", o.kid)
	if o.typ != "" {
		so.WithType(jose.ContentType(o.typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: o.alg, Key: o.key}, so)
	if err != nil {
		t.Fatalf("signer: %v", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func (f *fakeIdP) verify(raw string) (*LogoutToken, error) {
	return f.provider.VerifyLogoutToken(context.Background(), f.discovery, raw, nil)
}

// checkRefusal asserts err is a refusal naming want, without the token.
func checkRefusal(t *testing.T, raw string, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want refusal %q", want)
	}
	t.Logf("refused: %v", err)
	if !errors.Is(err, ErrInvalidLogoutToken) {
		t.Errorf("error %q does not wrap ErrInvalidLogoutToken", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	for _, part := range strings.Split(raw, ".") {
		if len(part) >= 16 && strings.Contains(err.Error(), part) {
			t.Errorf("error %q echoes the token", err)
		}
	}
}

func TestVerifyLogoutTokenValid(t *testing.T) {
	f := newFakeIdP(t)
	c := f.claims()
	lt, err := f.verify(f.sign(t, c, signOpts{}))
	if err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	if lt.Issuer != f.srv.URL || lt.Subject != "alice" || lt.SID != "session-1" || lt.JTI != c["jti"] {
		t.Errorf("fields: %+v", lt)
	}
	if lt.IssuedAt.Unix() != c["iat"] || lt.Expiry.Unix() != c["exp"] {
		t.Errorf("times: iat %v exp %v", lt.IssuedAt, lt.Expiry)
	}
}

func TestVerifyLogoutTokenAccepted(t *testing.T) {
	f := newFakeIdP(t)
	cases := []struct {
		name   string
		mutate func(map[string]any)
		opts   signOpts
		check  func(*testing.T, *LogoutToken)
	}{
		{name: "only sid", mutate: func(c map[string]any) { delete(c, "sub") },
			check: func(t *testing.T, lt *LogoutToken) {
				if lt.Subject != "" || lt.SID != "session-1" {
					t.Errorf("%+v", lt)
				}
			}},
		{name: "only sub", mutate: func(c map[string]any) { delete(c, "sid") },
			check: func(t *testing.T, lt *LogoutToken) {
				if lt.Subject != "alice" || lt.SID != "" {
					t.Errorf("%+v", lt)
				}
			}},
		{name: "no exp", mutate: func(c map[string]any) { delete(c, "exp") },
			check: func(t *testing.T, lt *LogoutToken) {
				if !lt.Expiry.IsZero() {
					t.Errorf("expiry %v", lt.Expiry)
				}
			}},
		{name: "aud array", mutate: func(c map[string]any) { c["aud"] = []string{"other", "app"} }},
		{name: "iat fractional", mutate: func(c map[string]any) { c["iat"] = float64(time.Now().UnixMilli()) / 1000 }},
		{name: "iat slightly in the future", mutate: func(c map[string]any) { c["iat"] = time.Now().Add(time.Minute).Unix() }},
		{name: "iat 9 minutes old", mutate: func(c map[string]any) { c["iat"] = time.Now().Add(-9 * time.Minute).Unix() }},
		{name: "exp just passed within skew", mutate: func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() }},
		{name: "event with members", mutate: func(c map[string]any) {
			c["events"] = map[string]any{backchannelLogoutEvent: map[string]any{"x": 1}, "other": "y"}
		}},
		{name: "extra claims", mutate: func(c map[string]any) { c["azp"] = "app"; c["trace"] = []int{1} }},
		{name: "typ logout+jwt", opts: signOpts{typ: "logout+jwt"}},
		{name: "typ application/logout+jwt", opts: signOpts{typ: "application/logout+jwt"}},
		{name: "typ JWT", opts: signOpts{typ: "JWT"}},
		{name: "typ jwt lower case", opts: signOpts{typ: "jwt"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := f.claims()
			if tc.mutate != nil {
				tc.mutate(c)
			}
			lt, err := f.verify(f.sign(t, c, tc.opts))
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tc.check != nil {
				tc.check(t, lt)
			}
		})
	}
}

func TestVerifyLogoutTokenRefused(t *testing.T) {
	f := newFakeIdP(t)
	otherKey := newRSAKey(t)
	cases := []struct {
		name   string
		mutate func(map[string]any)
		opts   signOpts
		want   string
	}{
		{name: "other key same kid", opts: signOpts{key: otherKey}, want: "signature"},
		{name: "HS256 with client secret", opts: signOpts{alg: jose.HS256, key: []byte(testClientSecret)}, want: "symmetric"},
		{name: "HS512 with client secret", opts: signOpts{alg: jose.HS512, key: []byte(testClientSecret + testClientSecret)}, want: "symmetric"},
		{name: "RS384 not advertised", opts: signOpts{alg: jose.RS384}, want: "signature"},
		{name: "wrong aud", mutate: func(c map[string]any) { c["aud"] = "other" }, want: "aud"},
		{name: "aud array without client", mutate: func(c map[string]any) { c["aud"] = []string{"a", "b"} }, want: "aud"},
		{name: "aud missing", mutate: func(c map[string]any) { delete(c, "aud") }, want: "aud"},
		{name: "wrong iss", mutate: func(c map[string]any) { c["iss"] = "https://evil.example" }, want: "iss"},
		{name: "iss missing", mutate: func(c map[string]any) { delete(c, "iss") }, want: "iss"},
		{name: "iss with trailing slash", mutate: func(c map[string]any) { c["iss"] = f.srv.URL + "/" }, want: "iss"},
		{name: "iat missing", mutate: func(c map[string]any) { delete(c, "iat") }, want: "iat missing"},
		{name: "iat null", mutate: func(c map[string]any) { c["iat"] = nil }, want: "iat missing"},
		{name: "iat 5 minutes in the future", mutate: func(c map[string]any) { c["iat"] = time.Now().Add(5 * time.Minute).Unix() }, want: "iat is in the future"},
		{name: "iat too old", mutate: func(c map[string]any) { c["iat"] = time.Now().Add(-11 * time.Minute).Unix() }, want: "iat is older"},
		{name: "iat negative", mutate: func(c map[string]any) { c["iat"] = -5 }, want: "iat"},
		{name: "iat huge", mutate: func(c map[string]any) { c["iat"] = 1e300 }, want: "iat"},
		{name: "exp passed", mutate: func(c map[string]any) { c["exp"] = time.Now().Add(-5 * time.Minute).Unix() }, want: "expired"},
		{name: "jti missing", mutate: func(c map[string]any) { delete(c, "jti") }, want: "jti"},
		{name: "jti empty", mutate: func(c map[string]any) { c["jti"] = "" }, want: "jti"},
		{name: "events missing", mutate: func(c map[string]any) { delete(c, "events") }, want: "events missing"},
		{name: "events null", mutate: func(c map[string]any) { c["events"] = nil }, want: "events is not a JSON object"},
		{name: "events an array", mutate: func(c map[string]any) { c["events"] = []any{backchannelLogoutEvent} }, want: "events is not a JSON object"},
		{name: "events a string", mutate: func(c map[string]any) { c["events"] = backchannelLogoutEvent }, want: "events is not a JSON object"},
		{name: "events without back-channel member", mutate: func(c map[string]any) {
			c["events"] = map[string]any{"http://schemas.openid.net/event/other": map[string]any{}}
		}, want: "no back-channel logout event"},
		{name: "event member a string", mutate: func(c map[string]any) {
			c["events"] = map[string]any{backchannelLogoutEvent: "yes"}
		}, want: "event is not a JSON object"},
		{name: "event member true", mutate: func(c map[string]any) {
			c["events"] = map[string]any{backchannelLogoutEvent: true}
		}, want: "event is not a JSON object"},
		{name: "event member null", mutate: func(c map[string]any) {
			c["events"] = map[string]any{backchannelLogoutEvent: nil}
		}, want: "event is not a JSON object"},
		{name: "event member an array", mutate: func(c map[string]any) {
			c["events"] = map[string]any{backchannelLogoutEvent: []any{}}
		}, want: "event is not a JSON object"},
		{name: "nonce present", mutate: func(c map[string]any) { c["nonce"] = "n-0S6_WzA2Mj" }, want: "nonce"},
		{name: "nonce empty", mutate: func(c map[string]any) { c["nonce"] = "" }, want: "nonce"},
		{name: "nonce null", mutate: func(c map[string]any) { c["nonce"] = nil }, want: "nonce"},
		{name: "neither sub nor sid", mutate: func(c map[string]any) { delete(c, "sub"); delete(c, "sid") }, want: "neither sub nor sid"},
		{name: "sub and sid empty", mutate: func(c map[string]any) { c["sub"] = ""; c["sid"] = "" }, want: "neither sub nor sid"},
		{name: "sid not a string", mutate: func(c map[string]any) { c["sid"] = 42 }, want: "sid is not a string"},
		{name: "typ at+jwt", opts: signOpts{typ: "at+jwt"}, want: "typ"},
		{name: "typ secevent+jwt", opts: signOpts{typ: "secevent+jwt"}, want: "typ"},
		{name: "typ blank", opts: signOpts{typ: " "}, want: "typ"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := f.claims()
			if tc.mutate != nil {
				tc.mutate(c)
			}
			raw := f.sign(t, c, tc.opts)
			lt, err := f.verify(raw)
			if lt != nil {
				t.Errorf("returned a token with the error")
			}
			checkRefusal(t, raw, err, tc.want)
		})
	}
}

// An ID token (it has a nonce and no events) must not pass for a logout
// token, even though it is validly signed for this client.
func TestVerifyLogoutTokenRefusesIDToken(t *testing.T) {
	f := newFakeIdP(t)
	now := time.Now()
	raw := f.sign(t, map[string]any{
		"iss": f.srv.URL, "aud": "app", "sub": "alice", "nonce": "abc",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}, signOpts{typ: "JWT"})
	_, err := f.verify(raw)
	checkRefusal(t, raw, err, "")
}

func TestVerifyLogoutTokenAlgNone(t *testing.T) {
	f := newFakeIdP(t)
	payload, _ := json.Marshal(f.claims())
	for _, hdr := range []string{
		`{"alg":"none"}`,
		`{"alg":"none","typ":"logout+jwt"}`,
		`{"alg":"None","kid":"k1"}`,
		`{"alg":"NONE"}`,
	} {
		for _, sig := range []string{"", b64("x")} {
			raw := b64(hdr) + "." + b64(string(payload)) + "." + sig
			_, err := f.verify(raw)
			checkRefusal(t, raw, err, "alg none")
		}
	}
	// A valid RS256 signature with the header swapped for alg none.
	good := f.sign(t, f.claims(), signOpts{})
	parts := strings.Split(good, ".")
	raw := b64(`{"alg":"none","kid":"k1"}`) + "." + parts[1] + "." + parts[2]
	_, err := f.verify(raw)
	checkRefusal(t, raw, err, "alg none")
}

func TestVerifyLogoutTokenMaxAge(t *testing.T) {
	f := newFakeIdP(t)
	c := f.claims()
	c["iat"] = time.Now().Add(-5 * time.Minute).Unix()
	raw := f.sign(t, c, signOpts{})
	ctx := context.Background()
	if _, err := f.provider.VerifyLogoutTokenMaxAge(ctx, f.discovery, raw, 0, nil); err != nil {
		t.Errorf("max age 0 (default) refused a 5 minute old token: %v", err)
	}
	if _, err := f.provider.VerifyLogoutTokenMaxAge(ctx, f.discovery, raw, 10*time.Minute, nil); err != nil {
		t.Errorf("max age 10m refused a 5 minute old token: %v", err)
	}
	_, err := f.provider.VerifyLogoutTokenMaxAge(ctx, f.discovery, raw, time.Minute, nil)
	checkRefusal(t, raw, err, "iat is older than 1m0s")
}

func TestVerifyLogoutTokenNotDiscovered(t *testing.T) {
	p := NewProvider(Config{Issuer: "https://idp.invalid", ClientID: "app"})
	if _, err := p.VerifyLogoutToken(context.Background(), nil, "a.b.c", nil); err == nil {
		t.Fatal("accepted without a discovered IdP")
	}
}

func TestVerifyLogoutTokenGarbage(t *testing.T) {
	f := newFakeIdP(t)
	good := f.sign(t, f.claims(), signOpts{typ: "logout+jwt"})
	parts := strings.Split(good, ".")

	inputs := []string{
		"", ".", "..", "...", "....", "a", "a.b", "a.b.c", "a.b.c.d", "a.b.c.d.e",
		"\x00\x01\x02", strings.Repeat("A", 100), strings.Repeat(".", 1000),
		"eyJ.eyJ.eyJ", "!!.!!.!!", "\xff\xfe.\xff.\xff",
		strings.Repeat("A", maxLogoutTokenSize+1),
		b64("[]") + "." + parts[1] + "." + parts[2],
		b64("null") + "." + parts[1] + "." + parts[2],
		b64(`"RS256"`) + "." + parts[1] + "." + parts[2],
		b64("{") + "." + parts[1] + "." + parts[2],
		b64(`{}`) + "." + parts[1] + "." + parts[2],
		b64(`{"alg":1}`) + "." + parts[1] + "." + parts[2],
		b64(`{"alg":"RS256","typ":1}`) + "." + parts[1] + "." + parts[2],
		b64(`{"alg":"`+strings.Repeat("X", 500)+`"}`) + "." + parts[1] + "." + parts[2],
		b64(`{"alg":"RSA-OAEP","enc":"A256GCM"}`) + ".a.b.c.d",
		parts[0] + "." + parts[1],
		parts[0] + "." + parts[1] + ".",
		parts[0] + ".." + parts[2],
		parts[0] + "." + b64("null") + "." + parts[2],
		parts[0] + "." + b64("[1,2]") + "." + parts[2],
		parts[0] + "." + b64("not json") + "." + parts[2],
		parts[0] + "." + parts[1] + "x." + parts[2],
		parts[0] + "." + parts[1] + "." + parts[2] + "x",
		good + ".",
		" " + good,
		good + " ",
		good + good,
	}
	// Truncations and single-byte corruptions of a valid token.
	for i := 0; i < len(good); i += 13 {
		inputs = append(inputs, good[:i])
		b := []byte(good)
		b[i] ^= 0x01
		inputs = append(inputs, string(b))
	}
	for _, raw := range inputs {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("panic on %.40q: %v", raw, r)
				}
			}()
			lt, err := f.verify(raw)
			if err == nil {
				// Flipping the low bit of the last base64 character of the
				// signature may leave the decoded bytes unchanged.
				if lt == nil || lt.Subject != "alice" {
					t.Errorf("accepted %.40q", raw)
				}
				return
			}
			if len(raw) >= 16 && strings.Contains(err.Error(), raw) {
				t.Errorf("error echoes the token: %v", err)
			}
		}()
	}
}

func TestJTICache(t *testing.T) {
	c := NewJTICache(time.Minute, 100)
	if c.Record("https://idp", "j1") {
		t.Error("first Record reported true")
	}
	if !c.Record("https://idp", "j1") {
		t.Error("second Record reported false")
	}
	if c.Record("https://other-idp", "j1") {
		t.Error("same jti, other issuer reported seen")
	}
	if c.Record("https://idp", "j2") {
		t.Error("other jti reported seen")
	}
	// The separator keeps ("a", "bc") and ("ab", "c") apart.
	if c.Record("a", "bc") || c.Record("ab", "c") {
		t.Error("issuer/jti boundary ambiguous")
	}
}

// Used looks without recording: a token checked but whose logout failed is
// still fresh when the IdP retries it.
func TestJTICacheUsedDoesNotRecord(t *testing.T) {
	c := NewJTICache(time.Minute, 100)
	if c.Used("iss", "j") || c.Used("iss", "j") {
		t.Fatal("Used reported a pair never recorded")
	}
	if c.Record("iss", "j") {
		t.Fatal("Record after Used reported the pair as already recorded")
	}
	if !c.Used("iss", "j") {
		t.Error("Used misses a recorded pair")
	}
}

func TestJTICacheEviction(t *testing.T) {
	c := NewJTICache(time.Hour, 3)
	for _, j := range []string{"1", "2", "3", "4"} {
		if c.Record("iss", j) {
			t.Fatalf("%s seen on first use", j)
		}
	}
	if n := c.Len(); n != 3 {
		t.Errorf("len %d, want 3", n)
	}
	// "1", the oldest, was evicted; "2".."4" are remembered.
	for _, j := range []string{"4", "3", "2"} {
		if !c.Record("iss", j) {
			t.Errorf("%s forgotten", j)
		}
	}
	if c.Record("iss", "1") {
		t.Error("evicted 1 still seen")
	}
	if n := c.Len(); n != 3 {
		t.Errorf("len %d, want 3", n)
	}
}

func TestJTICacheExpiry(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := NewJTICache(time.Minute, 100)
	c.now = func() time.Time { return now }
	c.Record("iss", "a")
	now = now.Add(30 * time.Second)
	c.Record("iss", "b")
	now = now.Add(29 * time.Second)
	if !c.Record("iss", "a") {
		t.Error("a forgotten before ttl")
	}
	now = now.Add(2 * time.Second) // a is 61s old, b 31s
	if c.Record("iss", "a") {
		t.Error("a still seen after ttl")
	}
	if !c.Record("iss", "b") {
		t.Error("b forgotten before ttl")
	}
	// Recording b again did not renew it.
	now = now.Add(30 * time.Second)
	if c.Record("iss", "b") {
		t.Error("b still seen after ttl")
	}
	if n := c.Len(); n != 2 { // a (re-recorded) and b (re-recorded)
		t.Errorf("len %d, want 2", n)
	}
	now = now.Add(time.Hour)
	c.Record("iss", "z")
	if n := c.Len(); n != 1 {
		t.Errorf("expired entries kept: len %d, want 1", n)
	}
}

func TestJTICacheDefaults(t *testing.T) {
	c := NewJTICache(0, 0)
	if c.ttl != DefaultLogoutMaxAge+LogoutClockSkew || c.max != 10000 {
		t.Errorf("defaults: ttl %v max %d", c.ttl, c.max)
	}
}

func TestJTICacheConcurrent(t *testing.T) {
	c := NewJTICache(time.Minute, 10000) // never full: "same" stays
	var fresh atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				if !c.Record("iss", "same") {
					fresh.Add(1)
				}
				c.Record("iss", rand.Text())
			}
		}()
	}
	wg.Wait()
	if n := fresh.Load(); n != 1 {
		t.Errorf("same jti reported fresh %d times, want 1", n)
	}
	if n := c.Len(); n > 10000 {
		t.Errorf("len %d beyond max", n)
	}
}

// A token refused by its header or claims costs no JWKS fetch.
func TestVerifyLogoutTokenJunkFetchesNoKeys(t *testing.T) {
	f := newFakeIdP(t)
	if _, err := f.verify(f.sign(t, f.claims(), signOpts{})); err != nil {
		t.Fatal(err) // loads the key cache
	}
	before := f.keyFetch.Load()
	other := newRSAKey(t)
	c := f.claims()
	delete(c, "events")
	for _, raw := range []string{
		f.sign(t, c, signOpts{key: other, kid: "k9"}),
		f.sign(t, f.claims(), signOpts{alg: jose.HS256, key: []byte(testClientSecret), kid: "k9"}),
		f.sign(t, f.claims(), signOpts{key: other, kid: "k9", typ: "at+jwt"}),
	} {
		if _, err := f.verify(raw); err == nil {
			t.Fatal("accepted")
		}
	}
	if n := f.keyFetch.Load() - before; n != 0 {
		t.Errorf("%d JWKS fetches for junk", n)
	}
}
