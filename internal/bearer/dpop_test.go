package bearer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/go-jose/go-jose/v4"
)

const (
	dpopProofChallenge = `DPoP error="invalid_dpop_proof", error_description=`
	dpopTokenChallenge = `DPoP error="invalid_token", error_description=`
	thingsURL          = "http://api.test/things"
)

// boundToken is a valid access token bound to k (cnf.jkt).
func boundToken(idp *testIdP, k *dpopKey, now time.Time) string {
	c := idp.claims(now)
	c["cnf"] = map[string]any{"jkt": k.jkt}
	return idp.token(c)
}

// dpopRequest is a request with "Authorization: DPoP <token>" and the
// given DPoP proofs (none, one, or more headers).
func dpopRequest(method, target, token string, proofs ...string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	r.Header.Set("Authorization", "DPoP "+token)
	for _, p := range proofs {
		r.Header.Add("DPoP", p)
	}
	return r
}

// dpopFixture is a verifier (DPoP allowed), a client key and a token
// bound to it, made at now.
func dpopFixture(t *testing.T) (v *Verifier, k *dpopKey, tok string, now time.Time) {
	idp := newTestIdP(t)
	now = time.Now()
	k = newDPoPKey(t)
	return newTestVerifier(t, Config{}, idp), k, boundToken(idp, k, now), now
}

func TestDPoPValidProof(t *testing.T) {
	idp := newTestIdP(t)
	v := newTestVerifier(t, Config{}, idp)
	now := time.Now()
	for _, k := range []*dpopKey{newDPoPKey(t), newRSADPoPKey(t)} {
		tok := boundToken(idp, k, now)
		for i := range 2 { // the second request: token from the cache, a fresh proof
			proof := k.proof(t, proofClaims("GET", thingsURL, tok, now))
			p, err := v.Verify(context.Background(), dpopRequest("GET", thingsURL, tok, proof))
			if err != nil {
				t.Fatalf("%s request %d: %v", k.alg, i, err)
			}
			if !p.DPoP || p.Subject != "user-1" {
				t.Errorf("principal %+v", p)
			}
		}
	}
}

func TestDPoPRefusals(t *testing.T) {
	v, k, tok, now := dpopFixture(t)
	other := newDPoPKey(t)
	claims := func(change func(c map[string]any)) map[string]any {
		c := proofClaims("GET", thingsURL, tok, now)
		change(c)
		return c
	}
	same := func(map[string]any) {}
	hmacProof := signJWT(t, []byte(testClientSecret), jose.HS256, "", "dpop+jwt", claims(same))
	noJWK := signJWT(t, k.priv, k.alg, "", "dpop+jwt", claims(same))
	privJWK := unsignedJWT(t, map[string]any{"alg": "ES256", "typ": "dpop+jwt", "jwk": privateJWK(t)}, claims(same)) + "c2ln"

	cases := []struct {
		name      string
		method    string
		target    string
		proofs    []string
		challenge string
		want      string
	}{
		{"missing", "GET", thingsURL, nil, dpopProofChallenge, "DPoP proof missing"},
		{"two proofs", "GET", thingsURL, []string{k.proof(t, claims(same)), k.proof(t, claims(same))}, dpopProofChallenge, "more than one DPoP header"},
		{"other URL", "GET", "http://api.test/admin", []string{k.proof(t, claims(same))}, dpopProofChallenge, "htu is not this request's URL"},
		{"other host", "GET", thingsURL, []string{k.proof(t, claims(func(c map[string]any) { c["htu"] = "http://evil.test/things" }))}, dpopProofChallenge, "htu"},
		{"https for http", "GET", thingsURL, []string{k.proof(t, claims(func(c map[string]any) { c["htu"] = "https://api.test/things" }))}, dpopProofChallenge, "htu"},
		{"htu not a URL", "GET", thingsURL, []string{k.proof(t, claims(func(c map[string]any) { c["htu"] = "/things" }))}, dpopProofChallenge, "htu"},
		{"other method", "POST", thingsURL, []string{k.proof(t, claims(same))}, dpopProofChallenge, "htm is not this request's method"},
		{"method case", "GET", thingsURL, []string{k.proof(t, claims(func(c map[string]any) { c["htm"] = "get" }))}, dpopProofChallenge, "htm"},
		{"wrong key", "GET", thingsURL, []string{other.proof(t, claims(same))}, dpopTokenChallenge, "signed by another key"},
		{"old", "GET", thingsURL, []string{k.proof(t, claims(func(c map[string]any) { c["iat"] = now.Add(-proofWindow - 2*time.Second).Unix() }))}, dpopProofChallenge, "too old"},
		{"future", "GET", thingsURL, []string{k.proof(t, claims(func(c map[string]any) { c["iat"] = now.Add(proofWindow + 2*time.Second).Unix() }))}, dpopProofChallenge, "in the future"},
		{"no iat", "GET", thingsURL, []string{k.proof(t, claims(func(c map[string]any) { delete(c, "iat") }))}, dpopProofChallenge, "iat missing"},
		{"ath of another token", "GET", thingsURL, []string{k.proof(t, claims(func(c map[string]any) { c["ath"] = tokenHash("other") }))}, dpopProofChallenge, "ath is not the hash"},
		{"no ath", "GET", thingsURL, []string{k.proof(t, claims(func(c map[string]any) { delete(c, "ath") }))}, dpopProofChallenge, "ath"},
		{"no jti", "GET", thingsURL, []string{k.proof(t, claims(func(c map[string]any) { delete(c, "jti") }))}, dpopProofChallenge, "jti missing"},
		{"huge jti", "GET", thingsURL, []string{k.proof(t, claims(func(c map[string]any) { c["jti"] = strings.Repeat("j", maxJTISize+1) }))}, dpopProofChallenge, "jti"},
		{"typ JWT", "GET", thingsURL, []string{k.proofTyped(t, "JWT", claims(same))}, dpopProofChallenge, "typ is not dpop+jwt"},
		{"HS256", "GET", thingsURL, []string{hmacProof}, dpopProofChallenge, "symmetric signature"},
		{"alg none", "GET", thingsURL, []string{unsignedJWT(t, map[string]any{"alg": "none", "typ": "dpop+jwt", "jwk": k.jwk}, claims(same))}, dpopProofChallenge, "alg none"},
		{"no jwk", "GET", thingsURL, []string{noJWK}, dpopProofChallenge, "no jwk header"},
		{"private jwk", "GET", thingsURL, []string{privJWK}, dpopProofChallenge, "public key"},
		{"not a JWS", "GET", thingsURL, []string{"garbage"}, dpopProofChallenge, "not a compact JWS"},
		{"too large", "GET", thingsURL, []string{strings.Repeat("a", maxProofSize+1)}, dpopProofChallenge, "too large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), dpopRequest(tc.method, tc.target, tok, tc.proofs...))
			e := refusal(t, err, http.StatusUnauthorized, strings.TrimSuffix(strings.TrimPrefix(tc.challenge, `DPoP error="`), `", error_description=`), tc.challenge, tok)
			if !strings.Contains(e.Description, tc.want) {
				t.Errorf("description %q, want %q", e.Description, tc.want)
			}
			if !strings.Contains(e.Challenges[0], `algs="ES256 `) {
				t.Errorf("challenge %q has no algs", e.Challenges[0])
			}
		})
	}
}

// privateJWK is an EC private key as a JWK, which a proof must not carry.
func privateJWK(t *testing.T) jose.JSONWebKey {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return jose.JSONWebKey{Key: priv}
}

func TestDPoPReplay(t *testing.T) {
	v, k, tok, now := dpopFixture(t)
	proof := k.proof(t, proofClaims("GET", thingsURL, tok, now))
	if _, err := v.Verify(context.Background(), dpopRequest("GET", thingsURL, tok, proof)); err != nil {
		t.Fatal(err)
	}
	_, err := v.Verify(context.Background(), dpopRequest("GET", thingsURL, tok, proof))
	if e := refusal(t, err, http.StatusUnauthorized, CodeInvalidDPoPProof, dpopProofChallenge, tok); !strings.Contains(e.Description, "replayed") {
		t.Errorf("description %q", e.Description)
	}
	// A proof refused for another reason is not spent: sent first to the
	// wrong URL, it still works where it belongs.
	fresh := k.proof(t, proofClaims("GET", thingsURL, tok, now))
	if _, err := v.Verify(context.Background(), dpopRequest("GET", "http://api.test/other", tok, fresh)); err == nil {
		t.Fatal("proof for another URL accepted")
	}
	if _, err := v.Verify(context.Background(), dpopRequest("GET", thingsURL, tok, fresh)); err != nil {
		t.Fatalf("proof after a refusal elsewhere: %v", err)
	}
}

// TestDPoPModes: which scheme and binding each mode accepts.
func TestDPoPModes(t *testing.T) {
	idp := newTestIdP(t)
	now := time.Now()
	k := newDPoPKey(t)
	bound := boundToken(idp, k, now)
	unbound := idp.token(idp.claims(now))
	proof := func(tok string) string { return k.proof(t, proofClaims("GET", thingsURL, tok, now)) }

	type outcome struct {
		ok        bool
		challenge string
	}
	bearerReq := func(tok string) *http.Request { return apiRequest("Bearer " + tok) }
	cases := []struct {
		mode string
		req  func() *http.Request
		want outcome
	}{
		{DPoPAllowed, func() *http.Request { return bearerReq(unbound) }, outcome{ok: true}},
		{DPoPAllowed, func() *http.Request { return dpopRequest("GET", thingsURL, bound, proof(bound)) }, outcome{ok: true}},
		{DPoPAllowed, func() *http.Request { return bearerReq(bound) }, outcome{challenge: dpopTokenChallenge + `"token is DPoP-bound (cnf.jkt): send it with the DPoP scheme and a proof"`}},
		{DPoPAllowed, func() *http.Request { r := bearerReq(bound); r.Header.Set("DPoP", proof(bound)); return r }, outcome{challenge: dpopTokenChallenge}},
		{DPoPAllowed, func() *http.Request { return dpopRequest("GET", thingsURL, unbound, proof(unbound)) }, outcome{challenge: dpopTokenChallenge + `"token is not DPoP-bound`}},
		{DPoPRequired, func() *http.Request { return dpopRequest("GET", thingsURL, bound, proof(bound)) }, outcome{ok: true}},
		{DPoPRequired, func() *http.Request { return bearerReq(unbound) }, outcome{challenge: dpopTokenChallenge + `"only DPoP-bound tokens are accepted here; send Authorization: DPoP with a proof"`}},
		{DPoPRequired, func() *http.Request { return bearerReq(bound) }, outcome{challenge: dpopTokenChallenge + `"only DPoP-bound tokens`}},
		{DPoPRequired, func() *http.Request { return dpopRequest("GET", thingsURL, unbound, proof(unbound)) }, outcome{challenge: dpopTokenChallenge + `"token is not DPoP-bound`}},
		{DPoPOff, func() *http.Request { return bearerReq(unbound) }, outcome{ok: true}},
		{DPoPOff, func() *http.Request { return bearerReq(bound) }, outcome{challenge: bearerInvalid + `"token is DPoP-bound (cnf.jkt) and DPoP is off here"`}},
		{DPoPOff, func() *http.Request { return dpopRequest("GET", thingsURL, bound, proof(bound)) }, outcome{challenge: bearerInvalid + `"the DPoP scheme is not accepted here`}},
	}
	verifiers := map[string]*Verifier{}
	for i, tc := range cases {
		v := verifiers[tc.mode]
		if v == nil {
			v = newTestVerifier(t, Config{DPoP: tc.mode}, idp)
			verifiers[tc.mode] = v
		}
		p, err := v.Verify(context.Background(), tc.req())
		if tc.want.ok {
			if err != nil {
				t.Errorf("case %d (%s): %v", i, tc.mode, err)
			}
			continue
		}
		if p != nil || err == nil {
			t.Errorf("case %d (%s): accepted", i, tc.mode)
			continue
		}
		refusal(t, err, http.StatusUnauthorized, CodeInvalidToken, tc.want.challenge, bound)
	}
}

// TestDPoPUsesOriginalURL: a rewrite by an earlier handler does not change
// the URL the proof must name (the client's).
func TestDPoPUsesOriginalURL(t *testing.T) {
	v, k, tok, now := dpopFixture(t)
	rewritten := func(keepOriginal bool) *http.Request {
		r := dpopRequest("GET", thingsURL, tok, k.proof(t, proofClaims("GET", thingsURL, tok, now)))
		if keepOriginal {
			r = r.WithContext(context.WithValue(r.Context(), caddyhttp.OriginalRequestCtxKey, *r.Clone(r.Context())))
		}
		r.URL.Path = "/internal/things"
		return r
	}
	if _, err := v.Verify(context.Background(), rewritten(true)); err != nil {
		t.Fatalf("rewritten request: %v", err)
	}
	// Control: without the original request, the rewritten URL is compared.
	_, err := v.Verify(context.Background(), rewritten(false))
	refusal(t, err, http.StatusUnauthorized, CodeInvalidDPoPProof, dpopProofChallenge, tok)
}

func TestNormalizeHTU(t *testing.T) {
	same := map[string][]string{
		"http://api.test/things": {
			"HTTP://API.TEST/things",
			"http://api.test:80/things",
			"http://api.test/things?x=1#f",
			"http://api.test/a/../things",
			"http://api.test/./things",
			"http://api.test/%74hings",
		},
		"https://api.test/":           {"https://api.test", "https://api.test:443", "https://API.test:443/"},
		"https://api.test:8443/a%2Fb": {"https://api.test:8443/a%2fb"},
		"http://[::1]:8080/x":         {"http://[::1]:8080/x"},
	}
	for want, variants := range same {
		for _, in := range append(variants, want) {
			got, err := normalizeHTU(in)
			if err != nil || got != want {
				t.Errorf("normalizeHTU(%q) = %q, %v; want %q", in, got, err, want)
			}
		}
	}
	different := [][2]string{
		{"http://api.test/things", "https://api.test/things"},
		{"http://api.test/things", "http://api.test:8080/things"},
		{"http://api.test/things", "http://api.test/Things"},
		{"http://api.test/a/b", "http://api.test/a%2Fb"},
		{"http://api.test/things", "http://api.test/things/"},
	}
	for _, pair := range different {
		a, _ := normalizeHTU(pair[0])
		b, _ := normalizeHTU(pair[1])
		if a == b {
			t.Errorf("%q and %q normalise alike (%q)", pair[0], pair[1], a)
		}
	}
	for _, bad := range []string{"/things", "ftp://api.test/x", "http://user@api.test/x", "http://api.test/%zz", "http://api.test/%4", "mailto:a@b"} {
		if got, err := normalizeHTU(bad); err == nil {
			t.Errorf("normalizeHTU(%q) = %q, want an error", bad, got)
		}
	}
}

func TestRemoveDotSegments(t *testing.T) {
	// RFC 3986 section 5.2.4's examples, and some edges.
	for in, want := range map[string]string{
		"/a/b/c/./../../g":   "/a/g",
		"mid/content=5/../6": "mid/6",
		"/..":                "/",
		"/../../x":           "/x",
		"/a//b":              "/a//b",
		"/a/.":               "/a/",
		"":                   "",
		"/":                  "/",
	} {
		if got := removeDotSegments(in); got != want {
			t.Errorf("removeDotSegments(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDPoPIntrospected: an opaque token whose introspection answer has
// cnf.jkt (RFC 9449 section 6.2) is bound like a JWT.
func TestDPoPIntrospected(t *testing.T) {
	idp := newTestIdP(t)
	v := newTestVerifier(t, Config{Introspection: true}, idp)
	k := newDPoPKey(t)
	now := time.Now()
	answer := activeAnswer(idp, now.Add(time.Hour))
	answer["cnf"] = map[string]any{"jkt": k.jkt}
	idp.setAnswer("opaque-bound", answer)

	_, err := v.Verify(context.Background(), apiRequest("Bearer opaque-bound"))
	refusal(t, err, http.StatusUnauthorized, CodeInvalidToken, dpopTokenChallenge, "opaque-bound")
	_, err = v.Verify(context.Background(), dpopRequest("GET", thingsURL, "opaque-bound", newDPoPKey(t).proof(t, proofClaims("GET", thingsURL, "opaque-bound", now))))
	refusal(t, err, http.StatusUnauthorized, CodeInvalidToken, dpopTokenChallenge, "opaque-bound")
	p, err := v.Verify(context.Background(), dpopRequest("GET", thingsURL, "opaque-bound", k.proof(t, proofClaims("GET", thingsURL, "opaque-bound", now))))
	if err != nil || !p.DPoP || !p.Introspected {
		t.Fatalf("bound introspected token with its proof: %v %+v", err, p)
	}
}
