package bearer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

const bearerInvalid = `Bearer realm="api.test", error="invalid_token", error_description=`

func TestValidJWT(t *testing.T) {
	idp := newTestIdP(t)
	v := newTestVerifier(t, Config{ScopesRequired: []string{"read"}}, idp)
	now := time.Now()
	tok := idp.token(idp.claims(now))
	p, err := v.Verify(context.Background(), apiRequest("Bearer "+tok))
	if err != nil {
		t.Fatal(err)
	}
	if p.Issuer != idp.issuer || p.Subject != "user-1" || p.DPoP || p.Introspected {
		t.Errorf("principal %+v", p)
	}
	if strings.Join(p.Scopes, " ") != "read write" || p.Claims["email"] != "user@example.com" {
		t.Errorf("scopes %q, claims %v", p.Scopes, p.Claims)
	}
	if p.Expiry.Unix() != now.Add(5*time.Minute).Unix() {
		t.Errorf("expiry %s", p.Expiry)
	}
}

// TestJWTRefusals: each token is refused with 401 invalid_token and the
// Bearer challenge, and the refusal says why without echoing the token.
func TestJWTRefusals(t *testing.T) {
	idp := newTestIdP(t)
	other := newTestIdP(t) // another issuer, not trusted
	v := newTestVerifier(t, Config{}, idp)
	now := time.Now()
	with := func(change func(c map[string]any)) map[string]any {
		c := idp.claims(now)
		change(c)
		return c
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	forger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	valid := idp.token(idp.claims(now))
	parts := strings.Split(valid, ".")

	cases := []struct {
		name, token, want string
	}{
		{"wrong audience", idp.token(with(func(c map[string]any) { c["aud"] = "https://other.api" })), "aud does not name this API"},
		{"audience list without ours", idp.token(with(func(c map[string]any) { c["aud"] = []string{"a", "b"} })), "aud does not name this API"},
		{"no audience", idp.token(with(func(c map[string]any) { delete(c, "aud") })), "aud does not name this API"},
		{"client id as audience", idp.token(with(func(c map[string]any) { c["aud"] = testClientID })), "aud does not name this API"},
		{"another issuer's key, our kid", signJWT(t, other.key, jose.ES256, idp.kid, "at+jwt", idp.claims(now)), "signature does not verify"},
		{"forged key, our kid", signJWT(t, forger, jose.ES256, idp.kid, "at+jwt", idp.claims(now)), "signature does not verify"},
		{"another issuer's key, unknown kid", signJWT(t, rsaKey, jose.RS256, "k-other", "at+jwt", idp.claims(now)), "no key of the issuer's JWKS"},
		{"untrusted issuer", other.token(other.claims(now)), "iss is not a trusted issuer"},
		{"no issuer", idp.token(with(func(c map[string]any) { delete(c, "iss") })), "iss missing"},
		{"alg none", unsignedJWT(t, map[string]any{"alg": "none", "typ": "at+jwt"}, idp.claims(now)), "unsigned token (alg none)"},
		{"alg None", unsignedJWT(t, map[string]any{"alg": "None"}, idp.claims(now)), "unsigned token (alg none)"},
		{"HS256 keyed with the client secret", signJWT(t, []byte(testClientSecret), jose.HS256, idp.kid, "at+jwt", idp.claims(now)), "symmetric signature (HS256) not allowed"},
		{"unknown alg", unsignedJWT(t, map[string]any{"alg": "XX512"}, idp.claims(now)), "unsupported signature algorithm XX512"},
		{"crit header", unsignedJWT(t, map[string]any{"alg": "ES256", "crit": []string{"exp"}, "exp": 1}, idp.claims(now)), "header has crit"},
		{"expired", idp.token(with(func(c map[string]any) { c["exp"] = now.Add(-2 * time.Minute).Unix() })), "token expired (exp)"},
		{"no exp", idp.token(with(func(c map[string]any) { delete(c, "exp") })), "exp missing"},
		{"exp not a number", idp.token(with(func(c map[string]any) { c["exp"] = "tomorrow" })), "exp is not a valid date"},
		{"exp absurd", idp.token(with(func(c map[string]any) { c["exp"] = 1e300 })), "exp is not a valid date"},
		{"not yet valid", idp.token(with(func(c map[string]any) { c["nbf"] = now.Add(2 * time.Minute).Unix() })), "token not valid yet (nbf)"},
		{"issued in the future", idp.token(with(func(c map[string]any) { c["iat"] = now.Add(2 * time.Minute).Unix() })), "issued in the future"},
		{"no sub", idp.token(with(func(c map[string]any) { delete(c, "sub") })), "sub missing"},
		{"sub not a string", idp.token(with(func(c map[string]any) { c["sub"] = 42 })), "sub missing"},
		{"scope not a string", idp.token(with(func(c map[string]any) { c["scope"] = []string{"read"} })), "scope or scp is malformed"},
		{"typ dpop+jwt (a proof as a token)", signJWT(t, idp.key, jose.ES256, idp.kid, "dpop+jwt", idp.claims(now)), "typ dpop+jwt is not an access token type"},
		{"typ logout+jwt", signJWT(t, idp.key, jose.ES256, idp.kid, "logout+jwt", idp.claims(now)), "is not an access token type"},
		{"mTLS-bound (cnf without jkt)", idp.token(with(func(c map[string]any) { c["cnf"] = map[string]any{"x5t#S256": "abc"} })), "confirmation method"},
		{"payload swapped", parts[0] + "." + strings.Split(idp.token(with(func(c map[string]any) { c["sub"] = "admin" })), ".")[1] + "." + parts[2], "signature does not verify"},
		{"JWE", "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", "not a JWT, and introspection"},
		{"opaque without introspection", "opaque-token-123", "not a JWT, and introspection of opaque tokens is off"},
		{"token too large", strings.Repeat("a", maxTokenSize+1), "token too large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), apiRequest("Bearer "+tc.token))
			e := refusal(t, err, http.StatusUnauthorized, CodeInvalidToken, bearerInvalid, tc.token)
			if !strings.Contains(e.Description, tc.want) {
				t.Errorf("description %q, want %q", e.Description, tc.want)
			}
		})
	}
	// The valid token still passes: the refusals were about the tokens.
	if _, err := v.Verify(context.Background(), apiRequest("Bearer "+valid)); err != nil {
		t.Fatalf("valid token after the refusals: %v", err)
	}
}

// TestJWEShapedTokenIsIntrospected: only three-part tokens are verified
// as JWTs; a JWE (five parts) is opaque to us and, with introspection on,
// the IdP judges it (here: not active).
func TestJWEShapedTokenIsIntrospected(t *testing.T) {
	idp := newTestIdP(t)
	v := newTestVerifier(t, Config{Introspection: true}, idp)
	jwe := "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d"
	_, err := v.Verify(context.Background(), apiRequest("Bearer "+jwe))
	refusal(t, err, http.StatusUnauthorized, CodeInvalidToken, bearerInvalid, jwe)
	if idp.introspectHits.Load() != 1 {
		t.Errorf("introspection hits %d", idp.introspectHits.Load())
	}
}

func TestLeewayBoundary(t *testing.T) {
	idp := newTestIdP(t)
	v := newTestVerifier(t, Config{}, idp)
	t0 := time.Unix(time.Now().Unix(), 0)
	c := idp.claims(t0)
	c["exp"] = t0.Unix()
	c["nbf"] = t0.Add(-time.Hour).Unix()
	c["iat"] = t0.Add(-time.Hour).Unix()
	expiring := idp.token(c)
	c = idp.claims(t0)
	c["nbf"] = t0.Unix()
	c["iat"] = t0.Unix()
	future := idp.token(c)

	cases := []struct {
		name  string
		token string
		now   time.Time
		ok    bool
	}{
		{"exp + 59s", expiring, t0.Add(59 * time.Second), true},
		{"exp + 60s", expiring, t0.Add(60 * time.Second), false},
		{"nbf - 60s", future, t0.Add(-60 * time.Second), true},
		{"nbf - 61s", future, t0.Add(-61 * time.Second), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A fresh cache each time: a cached verdict has its own expiry.
			v.tokens = newTokenCache(cacheEntries, cacheBytes)
			v.now = func() time.Time { return tc.now }
			_, err := v.Verify(context.Background(), apiRequest("Bearer "+tc.token))
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok {
				refusal(t, err, http.StatusUnauthorized, CodeInvalidToken, bearerInvalid, tc.token)
			}
		})
	}
}

// TestCachedVerdictExpires: a cached token is refused once its exp +
// Leeway has passed, without asking the IdP.
func TestCachedVerdictExpires(t *testing.T) {
	idp := newTestIdP(t)
	v := newTestVerifier(t, Config{}, idp)
	t0 := time.Now()
	tok := idp.token(idp.claims(t0)) // exp t0+5m
	v.now = func() time.Time { return t0 }
	if _, err := v.Verify(context.Background(), apiRequest("Bearer "+tok)); err != nil {
		t.Fatal(err)
	}
	v.now = func() time.Time { return t0.Add(5*time.Minute + Leeway) }
	_, err := v.Verify(context.Background(), apiRequest("Bearer "+tok))
	e := refusal(t, err, http.StatusUnauthorized, CodeInvalidToken, bearerInvalid, tok)
	if e.Description != "token expired (exp)" {
		t.Errorf("description %q", e.Description)
	}
}

func TestExtraIssuer(t *testing.T) {
	idp := newTestIdP(t)
	extra := newTestIdP(t)
	v := newTestVerifier(t, Config{Issuers: []string{extra.issuer}}, idp)
	now := time.Now()

	p, err := v.Verify(context.Background(), apiRequest("Bearer "+extra.token(extra.claims(now))))
	if err != nil {
		t.Fatalf("extra issuer's valid token: %v", err)
	}
	if p.Issuer != extra.issuer {
		t.Errorf("issuer %q, want %q", p.Issuer, extra.issuer)
	}
	// The main issuer's still pass.
	if _, err := v.Verify(context.Background(), apiRequest("Bearer "+idp.token(idp.claims(now)))); err != nil {
		t.Fatalf("main issuer's token: %v", err)
	}
	// A token naming the extra issuer but signed with the main one's key
	// (same kid): each issuer's tokens verify with its own keys only.
	mixed := signJWT(t, idp.key, jose.ES256, extra.kid, "at+jwt", extra.claims(now))
	_, err = v.Verify(context.Background(), apiRequest("Bearer "+mixed))
	refusal(t, err, http.StatusUnauthorized, CodeInvalidToken, bearerInvalid, mixed)
	// Without it in issuers, the extra issuer's token is refused.
	v2 := newTestVerifier(t, Config{}, idp)
	_, err = v2.Verify(context.Background(), apiRequest("Bearer "+extra.token(extra.claims(now))))
	if e := refusal(t, err, http.StatusUnauthorized, CodeInvalidToken, bearerInvalid, ""); e.Description != "iss is not a trusted issuer" {
		t.Errorf("description %q", e.Description)
	}
}

// TestATJWTIssuers: an issuer listed in at_jwt_issuers must type its
// tokens at+jwt, so its ID tokens (typ JWT) cannot pass for access tokens;
// unlisted issuers may send JWT or no typ.
func TestATJWTIssuers(t *testing.T) {
	idp := newTestIdP(t)
	now := time.Now()
	plain := signJWT(t, idp.key, jose.ES256, idp.kid, "JWT", idp.claims(now))
	untyped := signJWT(t, idp.key, jose.ES256, idp.kid, "", idp.claims(now))
	typed := signJWT(t, idp.key, jose.ES256, idp.kid, "application/at+jwt", idp.claims(now))

	lax := newTestVerifier(t, Config{}, idp)
	for _, tok := range []string{plain, untyped, typed} {
		if _, err := lax.Verify(context.Background(), apiRequest("Bearer "+tok)); err != nil {
			t.Errorf("issuer not in at_jwt_issuers: %v", err)
		}
	}
	strict := newTestVerifier(t, Config{ATJWTIssuers: []string{idp.issuer}}, idp)
	for _, tok := range []string{plain, untyped} {
		_, err := strict.Verify(context.Background(), apiRequest("Bearer "+tok))
		refusal(t, err, http.StatusUnauthorized, CodeInvalidToken, bearerInvalid, tok)
	}
	if _, err := strict.Verify(context.Background(), apiRequest("Bearer "+typed)); err != nil {
		t.Errorf("application/at+jwt refused: %v", err)
	}
}

func TestScopes(t *testing.T) {
	idp := newTestIdP(t)
	v := newTestVerifier(t, Config{ScopesRequired: []string{"read", "write"}}, idp)
	now := time.Now()
	tok := func(change func(c map[string]any)) string {
		c := idp.claims(now)
		delete(c, "scope")
		change(c)
		return idp.token(c)
	}
	for name, token := range map[string]string{
		"scope superset":   tok(func(c map[string]any) { c["scope"] = "admin write read" }),
		"scp list":         tok(func(c map[string]any) { c["scp"] = []string{"read", "write"} }),
		"scp string":       tok(func(c map[string]any) { c["scp"] = "write read" }),
		"scope before scp": tok(func(c map[string]any) { c["scope"] = "read write"; c["scp"] = []string{} }),
	} {
		p, err := v.Verify(context.Background(), apiRequest("Bearer "+token))
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if len(p.Scopes) < 2 {
			t.Errorf("%s: scopes %q", name, p.Scopes)
		}
	}
	for name, token := range map[string]string{
		"one missing":   tok(func(c map[string]any) { c["scope"] = "read" }),
		"none":          tok(func(map[string]any) {}),
		"scp not used":  tok(func(c map[string]any) { c["scope"] = "read"; c["scp"] = []string{"read", "write"} }),
		"case matters":  tok(func(c map[string]any) { c["scope"] = "READ WRITE" }),
		"prefix only":   tok(func(c map[string]any) { c["scope"] = "read:all write:all" }),
		"in a list str": tok(func(c map[string]any) { c["scp"] = []string{"read write"} }),
	} {
		_, err := v.Verify(context.Background(), apiRequest("Bearer "+token))
		e := refusal(t, err, http.StatusForbidden, CodeInsufficientScope,
			`Bearer realm="api.test", error="insufficient_scope", error_description="token lacks a required scope", scope="read write"`, token)
		if e.Status != http.StatusForbidden {
			t.Errorf("%s: %d", name, e.Status)
		}
	}
	bad := tok(func(c map[string]any) { c["scp"] = []any{"read", 7} })
	_, err := v.Verify(context.Background(), apiRequest("Bearer "+bad))
	refusal(t, err, http.StatusUnauthorized, CodeInvalidToken, bearerInvalid, bad)
}

// TestTokenInQueryOrForm: RFC 6750 sections 2.2 and 2.3 allow them; we
// refuse them with 400 invalid_request, even beside a good header.
func TestTokenInQueryOrForm(t *testing.T) {
	idp := newTestIdP(t)
	v := newTestVerifier(t, Config{}, idp)
	tok := idp.token(idp.claims(time.Now()))

	for _, target := range []string{
		"http://api.test/things?access_token=" + tok,
		"http://api.test/things?a=1&access_token=",
	} {
		for _, auth := range []string{"", "Bearer " + tok} {
			r := httptest.NewRequest(http.MethodGet, target, nil)
			if auth != "" {
				r.Header.Set("Authorization", auth)
			}
			_, err := v.Verify(context.Background(), r)
			e := refusal(t, err, http.StatusBadRequest, CodeInvalidRequest, `Bearer realm="api.test", error="invalid_request"`, tok)
			if !strings.Contains(e.Description, "query string") {
				t.Errorf("description %q", e.Description)
			}
		}
	}
	// access_token named only in a value is not a parameter.
	r := httptest.NewRequest(http.MethodGet, "http://api.test/things?q=access_token", nil)
	if _, err := v.Verify(context.Background(), r); !errors.Is(err, ErrNoToken) {
		t.Errorf("query mentioning access_token: %v", err)
	}

	form := func(body, cookie string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "http://api.test/things", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		if cookie != "" {
			r.Header.Set("Cookie", cookie)
		}
		return r
	}
	_, err := v.Verify(context.Background(), form("x=1&access_token="+tok, ""))
	if e := refusal(t, err, http.StatusBadRequest, CodeInvalidRequest, `Bearer realm="api.test", error="invalid_request"`, tok); !strings.Contains(e.Description, "form body") {
		t.Errorf("description %q", e.Description)
	}
	// A browser's form (it has cookies) is left to the session, and a form
	// without the parameter reaches the next handler whole.
	for _, r := range []*http.Request{form("access_token=abc", "_oauth2_proxy=x"), form("name=access_token&x="+strings.Repeat("y", 2*maxFormPeek), "")} {
		want, _ := io.ReadAll(io.NopCloser(strings.NewReader(mustBody(t, r))))
		if _, err := v.Verify(context.Background(), r); !errors.Is(err, ErrNoToken) {
			t.Errorf("form: %v", err)
		}
		got, _ := io.ReadAll(r.Body)
		if string(got) != string(want) {
			t.Errorf("body after Verify: %d bytes, want %d", len(got), len(want))
		}
	}
}

// mustBody reads r's body and puts it back.
func mustBody(t *testing.T, r *http.Request) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	r.Body = io.NopCloser(strings.NewReader(string(b)))
	return string(b)
}

func TestHeaderForms(t *testing.T) {
	idp := newTestIdP(t)
	v := newTestVerifier(t, Config{}, idp)
	tok := idp.token(idp.claims(time.Now()))

	accepted := []string{"Bearer " + tok, "bearer " + tok, "BEARER " + tok, "Bearer    " + tok}
	for _, h := range accepted {
		if _, err := v.Verify(context.Background(), apiRequest(h)); err != nil {
			t.Errorf("%.20q: %v", h, err)
		}
	}
	for _, h := range []string{"", "Basic dXNlcjpwYXNz", "Negotiate abc", "Bearertoken", "Bearer\t" + tok} {
		if _, err := v.Verify(context.Background(), apiRequest(h)); !errors.Is(err, ErrNoToken) {
			t.Errorf("%.20q: %v, want ErrNoToken", h, err)
		}
	}
	for _, h := range []string{"Bearer", "Bearer ", "Bearer " + tok + " extra", "Bearer Bearer " + tok, "Bearer " + tok + ",", "Bearer a\"b", "Bearer ===", "Bearer " + tok + "=x"} {
		_, err := v.Verify(context.Background(), apiRequest(h))
		refusal(t, err, http.StatusBadRequest, CodeInvalidRequest, `Bearer realm="api.test", error="invalid_request"`, tok)
	}
	// Two Authorization headers, even a Basic one beside ours.
	for _, second := range []string{"Bearer " + tok, "Basic dXNlcjpwYXNz"} {
		r := apiRequest("Bearer " + tok)
		r.Header.Add("Authorization", second)
		_, err := v.Verify(context.Background(), r)
		e := refusal(t, err, http.StatusBadRequest, CodeInvalidRequest, `Bearer realm="api.test", error="invalid_request"`, tok)
		if e.Description != "more than one Authorization header" {
			t.Errorf("description %q", e.Description)
		}
	}
	// A hostile Host header cannot break out of the realm's quotes.
	r := apiRequest("Bearer x.y")
	r.Host = `evil", error="none`
	_, err := v.Verify(context.Background(), r)
	refusal(t, err, http.StatusUnauthorized, CodeInvalidToken, `Bearer realm="evil\", error=\"none", error="invalid_token"`, "")
}

// TestKeysCachedAndRefetchLimited: verified tokens are served from the
// cache with the IdP down; made-up kids do not make every request fetch
// the JWKS.
func TestKeysCachedAndRefetchLimited(t *testing.T) {
	idp := newTestIdP(t)
	v := newTestVerifier(t, Config{}, idp)
	now := time.Now()
	tok := idp.token(idp.claims(now))
	if _, err := v.Verify(context.Background(), apiRequest("Bearer "+tok)); err != nil {
		t.Fatal(err)
	}
	// A second token with the same key: no JWKS fetch.
	c := idp.claims(now)
	c["sub"] = "user-2"
	if _, err := v.Verify(context.Background(), apiRequest("Bearer "+idp.token(c))); err != nil {
		t.Fatal(err)
	}
	if n := idp.jwksHits.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", n)
	}
	for i := range 50 {
		forged := signJWT(t, idp.key, jose.ES256, fmt.Sprintf("kid-%d", i), "at+jwt", idp.claims(now))
		_, err := v.Verify(context.Background(), apiRequest("Bearer "+forged))
		refusal(t, err, http.StatusUnauthorized, CodeInvalidToken, bearerInvalid, forged)
	}
	if n := idp.jwksHits.Load(); n > 2 {
		t.Errorf("50 unknown kids fetched the JWKS %d times, want at most 1 more", n-1)
	}

	idp.down.Store(true)
	p, err := v.Verify(context.Background(), apiRequest("Bearer "+tok))
	if err != nil || p.Subject != "user-1" {
		t.Fatalf("cached token with the IdP down: %v", err)
	}
}

// TestIdPDown: a token that cannot be judged because the IdP is down is
// unavailable (the handler's unavailable_status), never a 401; once the
// IdP is back, it is judged.
func TestIdPDown(t *testing.T) {
	idp := newTestIdP(t)
	v := newTestVerifier(t, Config{}, idp)
	tok := idp.token(idp.claims(time.Now()))
	idp.down.Store(true)
	_, err := v.Verify(context.Background(), apiRequest("Bearer "+tok))
	var e *Error
	if !errors.Is(err, ErrUnavailable) || errors.As(err, &e) {
		t.Fatalf("err = %v, want ErrUnavailable and no *Error", err)
	}
	// Within discoveryRetry the IdP is not asked again.
	hits := idp.jwksHits.Load()
	idp.down.Store(false)
	if _, err := v.Verify(context.Background(), apiRequest("Bearer "+tok)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("right after the failure: %v", err)
	}
	v.main.mu.Lock()
	v.main.lastTry = time.Now().Add(-discoveryRetry)
	v.main.mu.Unlock()
	if _, err := v.Verify(context.Background(), apiRequest("Bearer "+tok)); err != nil {
		t.Fatalf("IdP back: %v", err)
	}
	if idp.jwksHits.Load() != hits+1 {
		t.Errorf("JWKS hits %d, want %d", idp.jwksHits.Load(), hits+1)
	}
}

// TestJWKSDown: discovery works but the JWKS cannot be fetched:
// unavailable, not 401.
func TestJWKSDown(t *testing.T) {
	idp := newTestIdP(t)
	v := newTestVerifier(t, Config{}, idp)
	if _, err := v.main.meta(context.Background()); err != nil {
		t.Fatal(err)
	}
	idp.down.Store(true)
	_, err := v.Verify(context.Background(), apiRequest("Bearer "+idp.token(idp.claims(time.Now()))))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "JWKS") {
		t.Fatalf("err = %v, want ErrUnavailable for the JWKS", err)
	}
}

func TestNewVerifierErrors(t *testing.T) {
	idp := newTestIdP(t)
	cases := []struct {
		name string
		cfg  Config
		idp  IdP
		want string
	}{
		{"no audiences", Config{}, IdP{Issuer: idp.issuer}, "audiences is required"},
		{"at_jwt issuer not trusted", Config{Audiences: []string{"a"}, ATJWTIssuers: []string{"https://elsewhere.example"}}, IdP{Issuer: idp.issuer}, "neither the issuer nor one of issuers"},
		{"introspection without secret", Config{Audiences: []string{"a"}, Introspection: true}, IdP{Issuer: idp.issuer, ClientID: "c"}, "introspection needs client_secret"},
		{"no main issuer", Config{Audiences: []string{"a"}}, IdP{}, "issuer"},
		{"placeholder resolving to nothing", Config{Audiences: []string{"{env.OIDC_SESSION_BEARER_UNSET_TEST}"}}, IdP{Issuer: idp.issuer}, "empty audience"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewVerifier(tc.cfg, tc.idp)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	t.Setenv("OIDC_SESSION_BEARER_AUD_TEST", testAudience)
	v, err := NewVerifier(Config{Audiences: []string{"{env.OIDC_SESSION_BEARER_AUD_TEST}"}}, IdP{Issuer: idp.issuer})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), apiRequest("Bearer "+idp.token(idp.claims(time.Now())))); err != nil {
		t.Fatalf("audience from the environment: %v", err)
	}
}
