package bearer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// testIdP is an in-process issuer: discovery, JWKS and an introspection
// endpoint whose answers the test sets.
type testIdP struct {
	t      testing.TB
	srv    *httptest.Server
	issuer string
	key    *ecdsa.PrivateKey // signs tokens, kid "k1", ES256
	kid    string

	down             atomic.Bool // every endpoint answers 503
	jwksHits         atomic.Int32
	introspectHits   atomic.Int32
	introspectStatus atomic.Int32 // non-zero: introspection answers this status

	mu       sync.Mutex
	answers  map[string]map[string]any // introspection answer by token
	authMeth []string                  // introspection_endpoint_auth_methods_supported
	lastReq  *http.Request             // last introspection request, form parsed
}

const (
	testClientID     = "api-client"
	testClientSecret = "api-client-secret-0123456789abcdef"
	testAudience     = "https://api.test"
)

func newTestIdP(t testing.TB) *testIdP {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := &testIdP{t: t, key: key, kid: "k1", answers: map[string]map[string]any{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		methods := p.authMeth
		p.mu.Unlock()
		writeJSON(w, map[string]any{
			"issuer":                 p.issuer,
			"authorization_endpoint": p.issuer + "/auth",
			"token_endpoint":         p.issuer + "/token",
			"jwks_uri":               p.issuer + "/jwks",
			"introspection_endpoint": p.issuer + "/introspect",
			"introspection_endpoint_auth_methods_supported": methods,
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		p.jwksHits.Add(1)
		writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &p.key.PublicKey, KeyID: p.kid, Algorithm: string(jose.ES256), Use: "sig"},
		}})
	})
	mux.HandleFunc("/introspect", func(w http.ResponseWriter, r *http.Request) {
		p.introspectHits.Add(1)
		if s := p.introspectStatus.Load(); s != 0 {
			http.Error(w, "no", int(s))
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		p.lastReq = r
		answer, ok := p.answers[r.PostForm.Get("token")]
		p.mu.Unlock()
		if !ok {
			answer = map[string]any{"active": false}
		}
		writeJSON(w, answer)
	})
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	p.issuer = p.srv.URL
	return p
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// claims returns valid access token claims for this issuer: aud
// testAudience, sub "user-1", scope "read write", 5 minutes left.
func (p *testIdP) claims(now time.Time) map[string]any {
	return map[string]any{
		"iss":   p.issuer,
		"aud":   testAudience,
		"sub":   "user-1",
		"scope": "read write",
		"iat":   now.Unix(),
		"exp":   now.Add(5 * time.Minute).Unix(),
		"email": "user@example.com",
	}
}

// token signs claims with the IdP's key as an at+jwt.
func (p *testIdP) token(claims map[string]any) string {
	return signJWT(p.t, p.key, jose.ES256, p.kid, "at+jwt", claims)
}

// setAnswer makes the introspection endpoint answer for token.
func (p *testIdP) setAnswer(token string, answer map[string]any) {
	p.mu.Lock()
	p.answers[token] = answer
	p.mu.Unlock()
}

// lastIntrospection returns the last introspection request.
func (p *testIdP) lastIntrospection() *http.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastReq
}

// signJWT signs claims as a compact JWS with key (a private key, or the
// []byte of an HMAC), alg, kid and typ ("" leaves either out).
func signJWT(t testing.TB, key any, alg jose.SignatureAlgorithm, kid, typ string, claims map[string]any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts.WithType(jose.ContentType(typ))
	}
	if kid != "" {
		opts.WithHeader("kid", kid)
	}
	return signWith(t, key, alg, opts, claims)
}

// signWith signs claims as a compact JWS with key, alg and opts.
func signWith(t testing.TB, key any, alg jose.SignatureAlgorithm, opts *jose.SignerOptions, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// unsignedJWT builds a token with the given header and no signature.
func unsignedJWT(t testing.TB, header, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "."
}

// dpopKey is a client's DPoP key.
type dpopKey struct {
	priv crypto.Signer
	alg  jose.SignatureAlgorithm
	jwk  jose.JSONWebKey // public
	jkt  string
}

func newDPoPKey(t testing.TB) *dpopKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return dpopKeyOf(t, priv, jose.ES256)
}

func newRSADPoPKey(t testing.TB) *dpopKey {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return dpopKeyOf(t, priv, jose.PS256)
}

func dpopKeyOf(t testing.TB, priv crypto.Signer, alg jose.SignatureAlgorithm) *dpopKey {
	jwk := jose.JSONWebKey{Key: priv.Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return &dpopKey{priv: priv, alg: alg, jwk: jwk, jkt: base64.RawURLEncoding.EncodeToString(tp)}
}

// proofClaims are what a DPoP proof for method, htu and token says.
func proofClaims(method, htu, token string, iat time.Time) map[string]any {
	return map[string]any{
		"jti": randomID(),
		"htm": method,
		"htu": htu,
		"iat": iat.Unix(),
		"ath": tokenHash(token),
	}
}

// proof signs a DPoP proof with k, the public key in the jwk header.
func (k *dpopKey) proof(t testing.TB, claims map[string]any) string {
	return k.proofTyped(t, "dpop+jwt", claims)
}

func (k *dpopKey) proofTyped(t testing.TB, typ string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{EmbedJWK: true}).WithType(jose.ContentType(typ))
	return signWith(t, k.priv, k.alg, opts, claims)
}

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// newTestVerifier makes a verifier trusting idp as its main issuer.
func newTestVerifier(t testing.TB, cfg Config, idp *testIdP) *Verifier {
	t.Helper()
	if cfg.Audiences == nil {
		cfg.Audiences = []string{testAudience}
	}
	v, err := NewVerifier(cfg, IdP{Issuer: idp.issuer, ClientID: testClientID, ClientSecret: testClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// apiRequest is a GET of http://api.test/things with the Authorization
// header value auth ("" for none).
func apiRequest(auth string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://api.test/things", nil)
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	return r
}

// refusal asserts err is an *Error with status and code, whose first
// challenge starts with prefix and which never contains the token.
func refusal(t testing.TB, err error, status int, code, prefix, token string) *Error {
	t.Helper()
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("err = %v (%T), want *Error %d %s", err, err, status, code)
	}
	if e.Status != status || e.Code != code {
		t.Fatalf("refusal %d %s (%s), want %d %s", e.Status, e.Code, e.Description, status, code)
	}
	if len(e.Challenges) == 0 || !strings.HasPrefix(e.Challenges[0], prefix) {
		t.Fatalf("challenge %q, want prefix %q", e.Challenges, prefix)
	}
	if token != "" && (strings.Contains(e.Error(), token) || strings.Contains(strings.Join(e.Challenges, ""), token)) {
		t.Fatalf("refusal contains the token: %v", e)
	}
	return e
}
