package redisstore

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/oidc-session/oidc_session/internal/testredis"
	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/storetest"
)

// newStore provisions a Store as Caddy would and binds it to env.
func newStore(t *testing.T, s *Store, env sessions.Env) *Store {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	if err := s.Provision(ctx); err != nil {
		cancel()
		t.Fatalf("provision: %v", err)
	}
	t.Cleanup(func() {
		_ = s.Cleanup()
		cancel()
	})
	if err := s.Bind(env); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	storetest.Run(t, func(t *testing.T) sessions.Store {
		return newStore(t, &Store{Connection: Connection{URL: srv.URL()}}, storetest.NewEnv(t))
	})
}

// TestFormat inspects Redis directly: the ticket and key format of the
// seed documents, the TTL, encryption, and deletion.
func TestFormat(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{Password: "redis-pass-1"})
	env := storetest.NewEnv(t)
	env.CookieName = "my.app-session" // dots and dashes must still parse
	env.IdleTimeout = time.Hour
	st := newStore(t, &Store{Connection: Connection{URL: "redis://" + srv.Addr, Password: "redis-pass-1"}, KeyPrefix: "pfx:"}, env)
	rdb := srv.Client()
	ctx := context.Background()

	sess := storetest.FullSession()
	value, err := st.Save(ctx, "", sess)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^(my\.app-session-([0-9a-f]{32}))\.([A-Za-z0-9_-]{22})$`).FindStringSubmatch(value)
	if m == nil {
		t.Fatalf("cookie value %q is not {CookieName}-{32 hex}.{22 base64url}", value)
	}
	key := "pfx:" + m[1]
	raw, err := rdb.Get(ctx, key).Bytes()
	if err != nil {
		t.Fatalf("no Redis key %q: %v", key, err)
	}
	for _, secret := range []string{sess.Subject, sess.Email, sess.Name, sess.RefreshToken, sess.Groups[0], m[3]} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("Redis value contains %q in clear", secret)
		}
	}
	// A JWT's claims would show up decoded (the codec stores JWT parts raw).
	if strings.Contains(string(raw), `"sub"`) || strings.Contains(string(raw), "eyJ") {
		t.Errorf("Redis value holds readable token material")
	}
	ttl := rdb.TTL(ctx, key).Val()
	want := time.Until(sess.Deadline(env.IdleTimeout))
	if ttl <= 0 || ttl > want+2*time.Second || ttl < want-5*time.Second {
		t.Errorf("TTL %v, want about %v (the session's deadline)", ttl, want)
	}

	// An update keeps the ticket; a new login mints another.
	sess.AccessToken = "new-access-token"
	again, err := st.Save(ctx, value, sess)
	if err != nil || again != value {
		t.Errorf("update changed the ticket: %q -> %q (%v)", value, again, err)
	}
	other, _ := st.Save(ctx, "", sess)
	if other == value || strings.HasPrefix(other, m[1]) {
		t.Errorf("a new session reused the ticket")
	}

	// The secret in the cookie is needed: a forged secret reads as no session.
	forged := m[1] + "." + strings.Repeat("A", 22)
	if _, err := st.Load(ctx, forged); !errors.Is(err, sessions.ErrNoSession) {
		t.Errorf("forged secret: %v, want ErrNoSession", err)
	}
	// A record moved to another key does not open.
	moved := "my.app-session-" + strings.Repeat("0", 32)
	rdb.Set(ctx, "pfx:"+moved, raw, time.Minute)
	if _, err := st.Load(ctx, moved+"."+m[3]); !errors.Is(err, sessions.ErrNoSession) {
		t.Errorf("record under another handle: %v, want ErrNoSession", err)
	}
	// Corrupt value in Redis: no session, not an error.
	rdb.Set(ctx, key+"x", "garbage", time.Minute)
	if _, err := st.Load(ctx, m[1]+"x."+m[3]); !errors.Is(err, sessions.ErrNoSession) {
		t.Errorf("unparsable ticket: %v", err)
	}

	// A session near its absolute end gets a TTL to that end, not to idle.
	short := storetest.FullSession()
	short.ExpiresAt = storetest.Now().Add(10 * time.Second)
	v2, err := st.Save(ctx, "", short)
	if err != nil {
		t.Fatal(err)
	}
	t2, _ := sessions.ParseTicket(env.CookieName, v2)
	if ttl := rdb.TTL(ctx, "pfx:"+t2.Handle).Val(); ttl > 11*time.Second || ttl <= 0 {
		t.Errorf("TTL %v past the absolute lifetime (10 s)", ttl)
	}

	if err := st.Delete(ctx, value); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, key).Val(); n != 0 {
		t.Errorf("key still there after Delete")
	}
}

// TestRedisDownAndBack: while Redis is down every operation reports
// ErrUnavailable (never ErrNoSession, which would log the user out), and
// sessions work again when it is back.
func TestRedisDownAndBack(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{Args: []string{"--appendonly", "yes", "--appendfsync", "always"}})
	st := newStore(t, &Store{Connection: Connection{URL: srv.URL(), DialTimeout: caddy.Duration(300 * time.Millisecond)}}, storetest.NewEnv(t))
	ctx := context.Background()
	value, err := st.Save(ctx, "", storetest.FullSession())
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, err := st.Load(ctx, value); !errors.Is(err, sessions.ErrUnavailable) {
		t.Errorf("Load with Redis down: %v, want ErrUnavailable", err)
	}
	if _, err := st.Save(ctx, value, storetest.FullSession()); !errors.Is(err, sessions.ErrUnavailable) {
		t.Errorf("Save with Redis down: %v, want ErrUnavailable", err)
	}
	if _, err := st.Lock(ctx, value); !errors.Is(err, sessions.ErrUnavailable) {
		t.Errorf("Lock with Redis down: %v, want ErrUnavailable", err)
	}
	srv.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = st.Load(ctx, value)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("session after Redis came back: %v", err)
	}
}

func TestLock(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	env := storetest.NewEnv(t)
	a := newStore(t, &Store{Connection: Connection{URL: srv.URL()}, LockTTL: caddy.Duration(300 * time.Millisecond), LockWait: caddy.Duration(5 * time.Second)}, env)
	b := newStore(t, &Store{Connection: Connection{URL: srv.URL()}, LockTTL: caddy.Duration(300 * time.Millisecond), LockWait: caddy.Duration(5 * time.Second)}, env)
	ctx := context.Background()
	value, _ := a.Save(ctx, "", storetest.FullSession())

	release, err := a.Lock(ctx, value)
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		rel, err := b.Lock(ctx, value)
		if err != nil {
			t.Errorf("second lock: %v", err)
			return
		}
		got.Store(true)
		rel()
	}()
	// Held for over three lock TTLs: renewal must keep the other out.
	time.Sleep(1200 * time.Millisecond)
	if got.Load() {
		t.Fatal("the lock was taken while held (not renewed?)")
	}
	release()
	<-done
	if !got.Load() {
		t.Fatal("the waiter never got the lock")
	}

	// A holder that never releases makes waiters give up after LockWait.
	short := newStore(t, &Store{Connection: Connection{URL: srv.URL()}, LockWait: caddy.Duration(200 * time.Millisecond)}, env)
	release, _ = a.Lock(ctx, value)
	defer release()
	if _, err := short.Lock(ctx, value); !errors.Is(err, errLockTimeout) {
		t.Errorf("waiting past lock_wait: %v, want a timeout", err)
	}
}

func TestConnectionCheck(t *testing.T) {
	for _, c := range []struct {
		c    Connection
		want string
	}{
		{Connection{}, "one of url"},
		{Connection{SentinelMaster: "m", SentinelURLs: []string{"a:1"}, ClusterURLs: []string{"b:1"}}, "mutually exclusive"},
		{Connection{URL: "redis://x", ClusterURLs: []string{"b:1"}}, "only one connection mode"},
		{Connection{SentinelMaster: "m"}, "both sentinel_master and sentinel_urls"},
		{Connection{ClusterURLs: []string{"b:1"}, DB: 2}, "only db 0"},
		{Connection{URL: "redis://x", TLS: &TLSConfig{Cert: "c"}}, "cert and key"},
	} {
		err := c.c.Check()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.c, err, c.want)
		}
	}
	if err := (&Connection{URL: "redis://127.0.0.1:6379/0"}).Check(); err != nil {
		t.Errorf("valid url: %v", err)
	}
}

// TestClientSharedAcrossReloads: two provisions of the same connection
// config share one client; it survives the first one's cleanup.
func TestClientSharedAcrossReloads(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	env := storetest.NewEnv(t)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	old := &Store{Connection: Connection{URL: srv.URL()}}
	if err := old.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	_ = old.Bind(env)
	value, err := old.Save(context.Background(), "", storetest.FullSession())
	if err != nil {
		t.Fatal(err)
	}
	reloaded := newStore(t, &Store{Connection: Connection{URL: srv.URL()}}, env)
	if reloaded.client != old.client || reloaded.feed != old.feed {
		t.Error("a reload with the same connection config made a new client or feed")
	}
	_ = old.Cleanup()
	if _, err := reloaded.Load(context.Background(), value); err != nil {
		t.Errorf("session after the old config's cleanup: %v", err)
	}
}

// The Redis backend on standalone Redis and on a Cluster (keys spread over
// the nodes, SCAN on every master), its checks batched as the store's are.
func TestBackendConformance(t *testing.T) {
	newBackend := func(t *testing.T, client redis.UniversalClient) sessions.Backend {
		checks := newCheckBatcher(client)
		t.Cleanup(checks.stop)
		return backend{client: client, checks: checks}
	}
	srv := testredis.Start(t, testredis.Options{})
	t.Run("standalone", func(t *testing.T) {
		storetest.RunBackend(t, func(t *testing.T) sessions.Backend { return newBackend(t, srv.Client()) })
	})
	cl := testredis.StartCluster(t, testredis.ClusterOptions{})
	t.Run("cluster", func(t *testing.T) {
		storetest.RunBackend(t, func(t *testing.T) sessions.Backend { return newBackend(t, cl.ClusterClient()) })
	})
}

// TestConnectionOpen: Open shares the client of the same settings with the
// store, and each use is given back on its own: the client lives until
// the last release.
func TestConnectionOpen(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	ctx := context.Background()
	conn := Connection{URL: srv.URL()}
	st := newStore(t, &Store{Connection: conn}, storetest.NewEnv(t))
	client, release, err := conn.Open()
	if err != nil {
		t.Fatal(err)
	}
	if client != st.client {
		t.Error("Open made another client for the store's settings")
	}
	second, releaseSecond, err := conn.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := second.Ping(ctx).Err(); err != nil {
		t.Fatalf("client after another use was released: %v", err)
	}
	if err := releaseSecond(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := (&Connection{}).Open(); err == nil || !strings.Contains(err.Error(), "one of url") {
		t.Fatalf("Open without settings: %v", err)
	}
}
