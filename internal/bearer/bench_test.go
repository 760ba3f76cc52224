package bearer

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// Benchmarks of Verify, each on one request with a token of the in-process
// IdP (ES256, about 450 bytes). Speed targets live here, never in timed
// tests.

// benchVerify runs Verify b.N times on the request made by req, failing on
// the first error.
func benchVerify(b *testing.B, v *Verifier, req func() *http.Request) {
	b.Helper()
	ctx := context.Background()
	r := req()
	if _, err := v.Verify(ctx, r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyNoToken is what Verify adds to a browser request (no
// Authorization header, no query): the cost of finding there is no token.
func BenchmarkVerifyNoToken(b *testing.B) {
	v := newTestVerifier(b, Config{}, newTestIdP(b))
	r := apiRequest("")
	r.Header.Set("Cookie", "_oauth2_proxy=abc")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, r); err != ErrNoToken {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyJWTFirst is a JWT's first verification: header and
// claims, the signature (ES256) with the cached JWKS; the verdict cache
// keeps nothing.
func BenchmarkVerifyJWTFirst(b *testing.B) {
	idp := newTestIdP(b)
	v := newTestVerifier(b, Config{ScopesRequired: []string{"read"}}, idp)
	v.tokens = newTokenCache(0, 0)
	tok := idp.token(idp.claims(time.Now()))
	b.SetBytes(int64(len(tok)))
	benchVerify(b, v, func() *http.Request { return apiRequest("Bearer " + tok) })
}

// BenchmarkVerifyJWTCached is a repeated call with the same JWT: a hash
// and a map lookup.
func BenchmarkVerifyJWTCached(b *testing.B) {
	idp := newTestIdP(b)
	v := newTestVerifier(b, Config{ScopesRequired: []string{"read"}}, idp)
	tok := idp.token(idp.claims(time.Now()))
	b.SetBytes(int64(len(tok)))
	benchVerify(b, v, func() *http.Request { return apiRequest("Bearer " + tok) })
}

// BenchmarkVerifyJWTCachedParallel is BenchmarkVerifyJWTCached from all
// cores at once (the cache's read lock is shared).
func BenchmarkVerifyJWTCachedParallel(b *testing.B) {
	idp := newTestIdP(b)
	v := newTestVerifier(b, Config{}, idp)
	tok := idp.token(idp.claims(time.Now()))
	ctx := context.Background()
	if _, err := v.Verify(ctx, apiRequest("Bearer "+tok)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := apiRequest("Bearer " + tok)
		for pb.Next() {
			if _, err := v.Verify(ctx, r); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkVerifyIntrospectedCached is a repeated call with an opaque
// token whose introspection answer is cached.
func BenchmarkVerifyIntrospectedCached(b *testing.B) {
	idp := newTestIdP(b)
	v := newTestVerifier(b, Config{Introspection: true}, idp)
	// Far from its 60 s cap at the benchmark's clock.
	start := time.Now()
	v.now = func() time.Time { return start }
	idp.setAnswer("opaque-bench-token", activeAnswer(idp, start.Add(time.Hour)))
	benchVerify(b, v, func() *http.Request { return apiRequest("Bearer opaque-bench-token") })
	if n := idp.introspectHits.Load(); n != 1 {
		b.Fatalf("IdP asked %d times", n)
	}
}

// BenchmarkVerifyDPoP is a repeated call with a cached DPoP-bound token
// and a fresh proof (ES256), whose check (signature, claims, replay cache)
// is the cost. Making the proofs is not timed.
func BenchmarkVerifyDPoP(b *testing.B) {
	idp := newTestIdP(b)
	v := newTestVerifier(b, Config{}, idp)
	k := newDPoPKey(b)
	now := time.Now()
	tok := boundToken(idp, k, now)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		r := dpopRequest("GET", thingsURL, tok, k.proof(b, proofClaims("GET", thingsURL, tok, time.Now())))
		b.StartTimer()
		if _, err := v.Verify(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}
