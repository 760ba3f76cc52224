package redisstore

import (
	"context"
	"testing"

	"github.com/oidc-session/oidc_session/internal/testredis"
	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/storetest"
)

// TestBytesPerSession reports what a Dex-like session costs in Redis
// (MEMORY USAGE of its keys): the record, its metadata and its share of
// the subject index. It logs; the figures go into BENCHMARKS.md.
func TestBytesPerSession(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	st := newStore(t, &Store{Connection: Connection{URL: srv.URL()}}, storetest.NewEnv(t))
	rdb := srv.Client()
	ctx := context.Background()
	for _, withTokens := range []bool{true, false} {
		value, err := st.Save(ctx, "", storetest.DexSession(withTokens))
		if err != nil {
			t.Fatal(err)
		}
		tk, _ := sessions.ParseTicket(st.Env().CookieName, value)
		record := rdb.MemoryUsage(ctx, st.Key(tk)).Val()
		meta := rdb.MemoryUsage(ctx, st.Key(tk)+".meta").Val()
		raw := len(rdb.Get(ctx, st.Key(tk)).Val())
		if record == 0 || meta == 0 {
			t.Fatalf("MEMORY USAGE found no keys for %s", tk.Handle)
		}
		t.Logf("tokens=%v: record %d B (value %d B), metadata %d B, cookie %d B", withTokens, record, raw, meta, len(value))
		_ = st.Delete(ctx, value)
	}
	var idx int64
	for i := 0; i < 100; i++ {
		s := storetest.DexSession(false)
		s.Subject = "bulk-user"
		if _, err := st.Save(ctx, "", s); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range rdb.Keys(ctx, "*:sub:*").Val() {
		idx += rdb.MemoryUsage(ctx, k).Val()
	}
	t.Logf("subject index: %d B for 100 sessions of one user (%d B per session)", idx, idx/100)
}
