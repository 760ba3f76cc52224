package bearer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// activeAnswer is an introspection answer for a valid token.
func activeAnswer(idp *testIdP, exp time.Time) map[string]any {
	return map[string]any{
		"active":     true,
		"iss":        idp.issuer,
		"aud":        []string{testAudience, "other"},
		"sub":        "user-9",
		"scope":      "read write",
		"exp":        exp.Unix(),
		"client_id":  "cli",
		"token_type": "Bearer",
	}
}

func TestIntrospectionActive(t *testing.T) {
	idp := newTestIdP(t)
	v := newTestVerifier(t, Config{Introspection: true, ScopesRequired: []string{"write"}}, idp)
	exp := time.Now().Add(10 * time.Minute)
	idp.setAnswer("opaque-1", activeAnswer(idp, exp))
	p, err := v.Verify(context.Background(), apiRequest("Bearer opaque-1"))
	if err != nil {
		t.Fatal(err)
	}
	if !p.Introspected || p.Issuer != idp.issuer || p.Subject != "user-9" || strings.Join(p.Scopes, " ") != "read write" || p.Expiry.Unix() != exp.Unix() || p.Claims["client_id"] != "cli" {
		t.Errorf("principal %+v", p)
	}
	// The IdP got the token and this client's credentials (Basic, the
	// RFC 8414 default when nothing is advertised).
	req := idp.lastIntrospection()
	if req.PostForm.Get("token") != "opaque-1" || req.PostForm.Get("token_type_hint") != "access_token" {
		t.Errorf("form %v", req.PostForm)
	}
	if id, secret, ok := req.BasicAuth(); !ok || id != testClientID || secret != testClientSecret {
		t.Errorf("basic auth %q %q %v", id, secret, ok)
	}
	if req.PostForm.Has("client_secret") {
		t.Error("client_secret in the form as well as in Basic")
	}
}

func TestIntrospectionClientSecretPost(t *testing.T) {
	idp := newTestIdP(t)
	idp.authMeth = []string{"client_secret_post", "private_key_jwt"}
	v := newTestVerifier(t, Config{Introspection: true}, idp)
	idp.setAnswer("opaque-1", activeAnswer(idp, time.Now().Add(time.Minute)))
	if _, err := v.Verify(context.Background(), apiRequest("Bearer opaque-1")); err != nil {
		t.Fatal(err)
	}
	req := idp.lastIntrospection()
	if _, _, ok := req.BasicAuth(); ok || req.PostForm.Get("client_id") != testClientID || req.PostForm.Get("client_secret") != testClientSecret {
		t.Errorf("want client_secret_post; form %v", req.PostForm)
	}
}

func TestIntrospectionRefusals(t *testing.T) {
	idp := newTestIdP(t)
	v := newTestVerifier(t, Config{Introspection: true, ScopesRequired: []string{"read"}}, idp)
	exp := time.Now().Add(10 * time.Minute)
	with := func(change func(a map[string]any)) map[string]any {
		a := activeAnswer(idp, exp)
		change(a)
		return a
	}
	cases := []struct {
		name   string
		answer map[string]any
		want   string
	}{
		{"active false", map[string]any{"active": false}, "token is not active"},
		{"active false with claims", with(func(a map[string]any) { a["active"] = false }), "token is not active"},
		{"active as a string", with(func(a map[string]any) { a["active"] = "true" }), "token is not active"},
		{"no active", with(func(a map[string]any) { delete(a, "active") }), "token is not active"},
		{"no aud", with(func(a map[string]any) { delete(a, "aud") }), "aud does not name this API"},
		{"another aud", with(func(a map[string]any) { a["aud"] = "https://other.api" }), "aud does not name this API"},
		{"another issuer", with(func(a map[string]any) { a["iss"] = "https://evil.example" }), "another issuer"},
		{"refresh token", with(func(a map[string]any) { a["token_type"] = "refresh_token" }), "not an access token"},
		{"expired", with(func(a map[string]any) { a["exp"] = time.Now().Add(-time.Hour).Unix() }), "token expired"},
		{"no sub", with(func(a map[string]any) { delete(a, "sub") }), "sub missing"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := fmt.Sprintf("opaque-refused-%d", i)
			idp.setAnswer(tok, tc.answer)
			_, err := v.Verify(context.Background(), apiRequest("Bearer "+tok))
			e := refusal(t, err, http.StatusUnauthorized, CodeInvalidToken, bearerInvalid, tok)
			if !strings.Contains(e.Description, tc.want) {
				t.Errorf("description %q, want %q", e.Description, tc.want)
			}
		})
	}
	tok := "opaque-no-scope"
	idp.setAnswer(tok, with(func(a map[string]any) { a["scope"] = "write" }))
	_, err := v.Verify(context.Background(), apiRequest("Bearer "+tok))
	refusal(t, err, http.StatusForbidden, CodeInsufficientScope, `Bearer realm="api.test", error="insufficient_scope"`, tok)
}

// TestIntrospectionUnavailable: the IdP down, refusing our credentials or
// answering junk is unavailable (unavailable_status), never a 401.
func TestIntrospectionUnavailable(t *testing.T) {
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusUnauthorized, http.StatusBadRequest, http.StatusTooManyRequests} {
		idp := newTestIdP(t)
		v := newTestVerifier(t, Config{Introspection: true}, idp)
		idp.setAnswer("opaque-1", activeAnswer(idp, time.Now().Add(time.Minute)))
		idp.introspectStatus.Store(int32(status))
		_, err := v.Verify(context.Background(), apiRequest("Bearer opaque-1"))
		var e *Error
		if !errors.Is(err, ErrUnavailable) || errors.As(err, &e) {
			t.Errorf("introspection answering %d: err = %v, want ErrUnavailable", status, err)
		}
		if err != nil && strings.Contains(err.Error(), "opaque-1") {
			t.Errorf("error contains the token: %v", err)
		}
		// Failures are not cached: once the IdP answers, the token passes.
		idp.introspectStatus.Store(0)
		if _, err := v.Verify(context.Background(), apiRequest("Bearer opaque-1")); err != nil {
			t.Errorf("after the IdP recovered: %v", err)
		}
	}
	idp := newTestIdP(t)
	v := newTestVerifier(t, Config{Introspection: true}, idp)
	idp.srv.Close()
	if _, err := v.Verify(context.Background(), apiRequest("Bearer opaque-1")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("IdP gone: %v", err)
	}
}

// TestIntrospectionCache: an answer is reused for at most min(exp, 60 s).
func TestIntrospectionCache(t *testing.T) {
	idp := newTestIdP(t)
	v := newTestVerifier(t, Config{Introspection: true}, idp)
	t0 := time.Now()
	clock := t0
	v.now = func() time.Time { return clock }
	idp.setAnswer("long", activeAnswer(idp, t0.Add(10*time.Minute)))
	idp.setAnswer("short", activeAnswer(idp, t0.Add(20*time.Second)))

	ask := func(tok string, at time.Duration) int32 {
		t.Helper()
		clock = t0.Add(at)
		before := idp.introspectHits.Load()
		if _, err := v.Verify(context.Background(), apiRequest("Bearer "+tok)); err != nil {
			t.Fatalf("%s at %s: %v", tok, at, err)
		}
		return idp.introspectHits.Load() - before
	}
	steps := []struct {
		tok  string
		at   time.Duration
		asks int32
	}{
		{"long", 0, 1},
		{"long", 30 * time.Second, 0},
		{"long", 59 * time.Second, 0},
		{"long", 60 * time.Second, 1}, // 60 s cap
		{"long", 61 * time.Second, 0},
		{"short", 0, 1},
		{"short", 19 * time.Second, 0},
		{"short", 20 * time.Second, 1}, // its exp, sooner than 60 s
	}
	for _, s := range steps {
		if got := ask(s.tok, s.at); got != s.asks {
			t.Errorf("%s at %s: IdP asked %d times, want %d", s.tok, s.at, got, s.asks)
		}
	}
	// Inactive answers are not cached: a token the IdP refuses is asked
	// again (and not kept in memory at all).
	before := idp.introspectHits.Load()
	for range 3 {
		if _, err := v.Verify(context.Background(), apiRequest("Bearer unknown")); err == nil {
			t.Fatal("unknown token accepted")
		}
	}
	if n := idp.introspectHits.Load() - before; n != 3 {
		t.Errorf("inactive token asked %d times, want 3", n)
	}
}

// TestIntrospectionCacheBound: the cache keeps at most its bound; an
// evicted token is asked again.
func TestIntrospectionCacheBound(t *testing.T) {
	idp := newTestIdP(t)
	v := newTestVerifier(t, Config{Introspection: true}, idp)
	v.tokens = newTokenCache(3, cacheBytes)
	for i := range 5 {
		tok := fmt.Sprintf("opaque-%d", i)
		idp.setAnswer(tok, activeAnswer(idp, time.Now().Add(time.Hour)))
		if _, err := v.Verify(context.Background(), apiRequest("Bearer "+tok)); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.tokens.order.Len(); n != 3 {
		t.Errorf("cache holds %d entries, want 3", n)
	}
	before := idp.introspectHits.Load()
	for _, tok := range []string{"opaque-4", "opaque-0"} {
		if _, err := v.Verify(context.Background(), apiRequest("Bearer "+tok)); err != nil {
			t.Fatal(err)
		}
	}
	if n := idp.introspectHits.Load() - before; n != 1 {
		t.Errorf("IdP asked %d times for a kept and an evicted token, want 1", n)
	}
}

// TestIntrospectionNotAdvertised: an IdP without introspection_endpoint
// makes opaque tokens unavailable, with a message that says why.
func TestIntrospectionNotAdvertised(t *testing.T) {
	idp := newTestIdP(t)
	v := newTestVerifier(t, Config{Introspection: true}, idp)
	m, err := v.main.meta(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m.introspection = ""
	_, err = v.Verify(context.Background(), apiRequest("Bearer opaque-1"))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "introspection_endpoint") {
		t.Fatalf("err = %v", err)
	}
}

// TestIntrospectionWithoutAud: an answer without aud is for the client
// that asked, so it passes only where that client_id is an audience.
func TestIntrospectionWithoutAud(t *testing.T) {
	idp := newTestIdP(t)
	answer := activeAnswer(idp, time.Now().Add(time.Minute))
	delete(answer, "aud")
	idp.setAnswer("opaque-1", answer)
	strict := newTestVerifier(t, Config{Introspection: true}, idp)
	_, err := strict.Verify(context.Background(), apiRequest("Bearer opaque-1"))
	refusal(t, err, http.StatusUnauthorized, CodeInvalidToken, bearerInvalid, "opaque-1")
	own := newTestVerifier(t, Config{Introspection: true, Audiences: []string{testAudience, testClientID}}, idp)
	if _, err := own.Verify(context.Background(), apiRequest("Bearer opaque-1")); err != nil {
		t.Fatalf("client_id among audiences: %v", err)
	}
}
