package lifecycle_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/internal/lifecycle"
	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/storetest"
)

// The request path of the cookie store, through the Keeper: a realistic
// Dex session (ID and access token ~900 bytes each) that needs no refresh
// and no touch.

// cookies mints n distinct sessions (each its own subject) through the
// cookie store.
func cookies(b *testing.B, st *sessions.CookieStore, n int) []string {
	b.Helper()
	now := time.Now()
	out := make([]string, n)
	for i := range out {
		s := storetest.DexSession(true)
		s.Subject = fmt.Sprintf("user-%d", i)
		s.CreatedAt, s.LastSeen, s.ExpiresAt = now, now, now.Add(time.Hour)
		v, err := st.Save(b.Context(), "", s)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = v
	}
	return out
}

func cookieKeeper(b *testing.B, cacheSize int, tokens bool) (*lifecycle.Keeper, *sessions.CookieStore) {
	b.Helper()
	st := &sessions.CookieStore{}
	if err := st.Bind(storetest.NewEnv(b)); err != nil {
		b.Fatal(err)
	}
	return lifecycle.New(lifecycle.Config{Store: st, CacheSize: cacheSize, Tokens: tokens}), st
}

func serve(b *testing.B, k *lifecycle.Keeper, values []string) {
	b.Helper()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s, c, err := k.Current(b.Context(), values[i%len(values)])
		if err != nil || s == nil || c.Action != lifecycle.Keep {
			b.Fatalf("Current: %v %v %v", s, c, err)
		}
		i++
	}
}

// BenchmarkCurrentMiss: every request misses the decoded-session cache
// (a cache of one, cycled through 64 sessions).
func BenchmarkCurrentMiss(b *testing.B) {
	k, st := cookieKeeper(b, 1, false)
	serve(b, k, cookies(b, st, 64))
}

// BenchmarkCurrentN cycles through N distinct sessions with the default
// cache, as N active users do; heap-B/session is the heap the Keeper holds
// per session once all of them have been served. "tokens": with
// Config.Tokens (an access-token header), which keeps them decoded.
func BenchmarkCurrentN(b *testing.B) {
	for _, tc := range []struct {
		n      int
		tokens bool
	}{{1, false}, {10_000, false}, {100_000, false}, {100_000, true}} {
		name := fmt.Sprintf("N=%d", tc.n)
		if tc.tokens {
			name += ",tokens"
		}
		b.Run(name, func(b *testing.B) {
			k, st := cookieKeeper(b, 0, tc.tokens)
			values := cookies(b, st, tc.n)
			before := heap()
			for _, v := range values {
				if _, _, err := k.Current(b.Context(), v); err != nil {
					b.Fatal(err)
				}
			}
			held := heap() - before
			serve(b, k, values)
			if tc.n > 1 { // one session is lost in the noise of the heap
				b.ReportMetric(float64(held)/float64(tc.n), "heap-B/session")
			}
			runtime.KeepAlive(k)
		})
	}
}

func heap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
