package memstore

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/storetest"
)

// BenchmarkMemoryPerSession measures the heap the memory store takes per
// realistic session (storetest.DexSession with its tokens, one user each,
// with an IdP session id) with 100k sessions stored: the session record,
// its metadata, two index entries, and the bookkeeping. It reports, it
// does not assert. Run it alone:
//
//	go test -run '^$' -bench MemoryPerSession -benchtime 1x ./sessions/memstore/
func BenchmarkMemoryPerSession(b *testing.B) {
	const n = 100000
	for _, withTokens := range []bool{true, false} {
		b.Run(fmt.Sprintf("tokens=%v", withTokens), func(b *testing.B) {
			for b.Loop() {
				perSession, record := measure(b, n, withTokens)
				b.ReportMetric(perSession, "heap-bytes/session")
				b.ReportMetric(float64(record), "record-bytes")
				b.Logf("%d sessions (tokens: %v): %.0f heap bytes per session; the encrypted session record is %d bytes",
					n, withTokens, perSession, record)
			}
		})
	}
}

func measure(b *testing.B, n int, withTokens bool) (float64, int) {
	env := storetest.NewEnv(b)
	base := storetest.DexSession(withTokens)
	sessionsList := make([]*sessions.Session, n)
	for i := range sessionsList {
		s := storetest.Clone(base)
		s.Subject = fmt.Sprintf("%s-%06d", base.Subject, i)
		s.Email = fmt.Sprintf("user%06d@example.com", i)
		s.SID = fmt.Sprintf("%08x-e5f6-7890-abcd-ef0123456789", i)
		sessionsList[i] = s
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	st := &Store{}
	st.TicketStore = sessions.TicketStore{Backend: newState(n), Name: "memory"}
	if err := st.Bind(env); err != nil {
		b.Fatal(err)
	}
	var last string
	for _, s := range sessionsList {
		v, err := st.Save(b.Context(), "", s)
		if err != nil {
			b.Fatal(err)
		}
		last = v
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	t, _ := sessions.ParseTicket(env.CookieName, last)
	rec, err := st.TicketStore.Backend.Get(b.Context(), st.Key(t))
	if err != nil {
		b.Fatal(err)
	}
	runtime.KeepAlive(st)
	runtime.KeepAlive(sessionsList)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n), len(rec)
}

func BenchmarkLoad(b *testing.B) {
	st := &Store{}
	st.TicketStore = sessions.TicketStore{Backend: newState(DefaultMaxSessions), Name: "memory"}
	st.Bind(storetest.NewEnv(b))
	v, err := st.Save(b.Context(), "", storetest.DexSession(true))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := st.Load(b.Context(), v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSave(b *testing.B) {
	st := &Store{}
	st.TicketStore = sessions.TicketStore{Backend: newState(1 << 30), Name: "memory"}
	st.Bind(storetest.NewEnv(b))
	s := storetest.DexSession(true)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := st.Save(b.Context(), "", s); err != nil {
			b.Fatal(err)
		}
	}
}
