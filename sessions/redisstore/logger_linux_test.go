package redisstore

import (
	"context"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/oidc-session/oidc_session/sessions/storetest"
)

// The store does not replace go-redis's process-wide logger (go-redis has
// no per-client one): other modules in the binary that use go-redis keep
// theirs. Here a go-redis message of a client that is not the store's
// still reaches go-redis's default logger on stderr after a store has been
// provisioned.
func TestGoRedisLoggerNotReplaced(t *testing.T) {
	newStore(t, &Store{Connection: Connection{URL: "redis://127.0.0.1:1", DialTimeout: caddy.Duration(100 * time.Millisecond)}}, storetest.NewEnv(t))

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved, err := syscall.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Dup3(int(w.Fd()), 2, 0); err != nil {
		t.Fatal(err)
	}
	restore := func() {
		_ = syscall.Dup3(saved, 2, 0)
		_ = syscall.Close(saved)
		w.Close()
	}
	foreign := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: "someone-elses", SentinelAddrs: []string{"127.0.0.1:1"},
		DialTimeout: 100 * time.Millisecond, MaxRetries: -1,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = foreign.Ping(ctx).Err()
	cancel()
	_ = foreign.Close()
	restore()
	out, _ := io.ReadAll(r)
	if !strings.Contains(string(out), "someone-elses") {
		t.Errorf("go-redis's message about another client did not reach its default logger on stderr; got %q", out)
	}
}
