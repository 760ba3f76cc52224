package sessions_test

import (
	"context"
	"testing"

	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/storetest"
)

// The realistic Dex session (ID and access token ~900 bytes each, opaque
// refresh token), as every request with a cookie store decodes it.

func BenchmarkCookieStoreLoad(b *testing.B) {
	benchLoad(b, (*sessions.CookieStore).Load)
}

// benchLoad reads a cookie of the realistic Dex session with load.
func benchLoad(b *testing.B, load func(*sessions.CookieStore, context.Context, string) (*sessions.Session, error)) {
	st := newCookieStore(b, storetest.NewEnv(b))
	v, err := st.Save(b.Context(), "", storetest.DexSession(true))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(v)))
	for b.Loop() {
		if _, err := load(st, b.Context(), v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCookieStoreSave(b *testing.B) {
	st := newCookieStore(b, storetest.NewEnv(b))
	s := storetest.DexSession(true)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := st.Save(b.Context(), "", s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	s := storetest.DexSession(true)
	b.ReportAllocs()
	for b.Loop() {
		sessions.Encode(s)
	}
}

func BenchmarkDecode(b *testing.B) {
	rec := sessions.Encode(storetest.DexSession(true))
	b.ReportAllocs()
	b.SetBytes(int64(len(rec)))
	for b.Loop() {
		if _, err := sessions.Decode(rec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCookieStoreLoadLazy is the request path's read of a cookie it
// has not seen (a cache miss): the identity, without the tokens.
func BenchmarkCookieStoreLoadLazy(b *testing.B) {
	benchLoad(b, (*sessions.CookieStore).LoadLazy)
}

// BenchmarkDecodeTokens is what a refresh, an access-token header or a
// logout adds to a lazily read session: inflating and re-encoding the
// tokens.
func BenchmarkDecodeTokens(b *testing.B) {
	rec := sessions.Encode(storetest.DexSession(true))
	b.ReportAllocs()
	for b.Loop() {
		s, err := sessions.DecodeLazy(rec)
		if err == nil {
			err = s.DecodeTokens()
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}
