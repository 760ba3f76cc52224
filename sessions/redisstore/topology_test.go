package redisstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/oidc-session/oidc_session/internal/testredis"
	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/storetest"
)

// eventually retries f until it succeeds or the timeout passes.
func eventually(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSentinelFailoverInUse: sessions live through a Sentinel failover that
// happens while requests are running; errors during the switch are
// ErrUnavailable (a 503, cookie kept), never "no session". The db number
// in the sentinel URL and both passwords are honoured.
func TestSentinelFailoverInUse(t *testing.T) {
	sen := testredis.StartSentinel(t, testredis.SentinelOptions{Password: "data-pass", SentinelPassword: "sentinel-pass"})
	urls := []string{"redis://" + sen.SentinelAddrs[0] + "/3", sen.SentinelAddrs[1], sen.SentinelAddrs[2]}
	newSentinelStore := func(t *testing.T) sessions.Store {
		return newStore(t, &Store{Connection: Connection{SentinelMaster: sen.MasterName, SentinelURLs: urls,
			SentinelPassword: "sentinel-pass", Password: "data-pass",
			DialTimeout: ms(300), ReadTimeout: ms(500), WriteTimeout: ms(500)}}, storetest.NewEnv(t))
	}
	storetest.Run(t, newSentinelStore)
	t.Run("announcements", func(t *testing.T) {
		checkAnnouncements(t, Store{Connection: Connection{SentinelMaster: sen.MasterName, SentinelURLs: urls,
			SentinelPassword: "sentinel-pass", Password: "data-pass"}})
	})

	st := newSentinelStore(t).(*Store)
	ctx := context.Background()
	var values []string
	for i := 0; i < 20; i++ {
		v, err := st.Save(ctx, "", storetest.FullSession())
		if err != nil {
			t.Fatal(err)
		}
		values = append(values, v)
	}
	master := sen.Master.Client()
	if n := master.Do(ctx, "SELECT", 3).Err(); n != nil {
		t.Fatal(n)
	}
	if err := master.Do(ctx, "WAIT", 1, 5000).Err(); err != nil {
		t.Fatalf("WAIT for the replica: %v", err)
	}

	// Traffic during the failover.
	stop := make(chan struct{})
	var wrong atomic.Int32
	var ok atomic.Int32
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, err := st.Load(ctx, values[(g+i)%len(values)])
				switch {
				case err == nil:
					ok.Add(1)
				case !errors.Is(err, sessions.ErrUnavailable):
					wrong.Add(1)
					t.Errorf("during failover: %v (want a session or ErrUnavailable)", err)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}(g)
	}
	sen.Failover(t)
	close(stop)
	wg.Wait()
	if wrong.Load() != 0 {
		t.Fatalf("%d loads said no session during the failover", wrong.Load())
	}
	for _, v := range values {
		if err := eventually(15*time.Second, func() error { _, err := st.Load(ctx, v); return err }); err != nil {
			t.Fatalf("session after failover: %v", err)
		}
	}
	if _, err := st.Save(ctx, "", storetest.FullSession()); err != nil {
		t.Errorf("save on the new master: %v", err)
	}
	// The sessions are in db 3 of the new master.
	nm := sen.Master.Client()
	nm.Do(ctx, "SELECT", 3)
	if n := nm.DBSize(ctx).Val(); n < int64(len(values)) {
		t.Errorf("new master db 3 has %d keys, want >= %d", n, len(values))
	}
	t.Logf("loads served during failover: %d", ok.Load())
}

// TestClusterSpreadAndNodeRestart: sessions spread over the three masters
// of a Cluster; a restarted node makes only its own sessions unavailable
// for a while (ErrUnavailable, not "no session").
func TestClusterSpreadAndNodeRestart(t *testing.T) {
	cl := testredis.StartCluster(t, testredis.ClusterOptions{Masters: 3, Password: "cluster-pass"})
	newClusterStore := func(t *testing.T) sessions.Store {
		return newStore(t, &Store{Connection: Connection{ClusterURLs: cl.Addrs, Password: "cluster-pass",
			DialTimeout: ms(300), ReadTimeout: ms(500), WriteTimeout: ms(500)}}, storetest.NewEnv(t))
	}
	storetest.Run(t, newClusterStore)
	t.Run("announcements", func(t *testing.T) {
		// Published at one node, heard by a subscriber at another.
		checkAnnouncements(t, Store{Connection: Connection{ClusterURLs: cl.Addrs, Password: "cluster-pass"}})
	})

	st := newClusterStore(t).(*Store)
	ctx := context.Background()
	var values []string
	for i := 0; i < 60; i++ {
		v, err := st.Save(ctx, "", storetest.FullSession())
		if err != nil {
			t.Fatal(err)
		}
		values = append(values, v)
	}
	var mu sync.Mutex
	perMaster := map[string]int64{}
	err := cl.ClusterClient().ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		n, err := c.DBSize(ctx).Result()
		mu.Lock()
		perMaster[c.Options().Addr] = n
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(perMaster) != 3 {
		t.Fatalf("masters: %v", perMaster)
	}
	for addr, n := range perMaster {
		if n == 0 {
			t.Errorf("master %s holds no session: %v", addr, perMaster)
		}
	}
	if err := st.Ping(ctx); err != nil {
		t.Errorf("ping: %v", err)
	}

	cl.RestartNode(t, 0)
	// Afterwards the cluster serves again; sessions on the other masters
	// never went away.
	lost := 0
	for _, v := range values {
		err := eventually(15*time.Second, func() error {
			_, err := st.Load(ctx, v)
			if errors.Is(err, sessions.ErrNoSession) {
				return nil // on the restarted node, which keeps no data
			}
			return err
		})
		if err != nil {
			t.Fatalf("load after node restart: %v", err)
		}
		if _, err := st.Load(ctx, v); errors.Is(err, sessions.ErrNoSession) {
			lost++
		}
	}
	if lost == 0 || lost >= len(values) {
		t.Errorf("%d of %d sessions gone after restarting one of three masters (without persistence), want some, not all", lost, len(values))
	}
	if _, err := st.Save(ctx, "", storetest.FullSession()); err != nil {
		t.Errorf("save after node restart: %v", err)
	}
}

func ms(n int) caddy.Duration { return caddy.Duration(time.Duration(n) * time.Millisecond) }
