package testredis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually retries f for up to d and fails the test with its last error.
func eventually(t *testing.T, d time.Duration, what string, f func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = f(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestBinary(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"redis-server", "redis-sentinel", "redis-cli"} {
		if p := Binary(t, name); p == "" {
			t.Fatalf("Binary(%q) returned empty path", name)
		}
	}
}

func TestStandaloneStopRestart(t *testing.T) {
	t.Parallel()
	start := time.Now()
	s := Start(t, Options{})
	t.Logf("started %s in %v (%s)", s.Addr, time.Since(start), s.URL())
	if want := "redis://" + s.Addr + "/0"; s.URL() != want {
		t.Errorf("URL() = %q, want %q", s.URL(), want)
	}
	ctx := ctxT(t, 30*time.Second)
	c := s.Client()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET = %q, %v", got, err)
	}

	s.Stop()
	s.Stop() // idempotent
	if s.Running() {
		t.Fatal("Running() after Stop")
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING succeeded after Stop")
	}

	addr := s.Addr
	start = time.Now()
	s.Restart(t)
	t.Logf("restarted in %v", time.Since(start))
	if s.Addr != addr {
		t.Fatalf("Restart changed address %s -> %s", addr, s.Addr)
	}
	eventually(t, 5*time.Second, "PING after restart", func(ctx context.Context) error { return c.Ping(ctx).Err() })
	if err := c.Get(ctx, "k").Err(); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatalf("GET after restart: %v", err)
	}
}

func TestStandalonePassword(t *testing.T) {
	t.Parallel()
	const pw = `s3cr"et \ pw`
	s := Start(t, Options{Password: pw, Args: []string{"--maxmemory", "16mb"}})
	ctx := ctxT(t, 30*time.Second)

	if err := s.Client().Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET with password: %v", err)
	}
	noPW := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer noPW.Close()
	if err := noPW.Get(ctx, "k").Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("GET without password: err = %v, want NOAUTH", err)
	}
	wrong := redis.NewClient(&redis.Options{Addr: s.Addr, Password: "wrong", MaxRetries: -1})
	defer wrong.Close()
	if err := wrong.Ping(ctx).Err(); err == nil {
		t.Fatal("PING with wrong password succeeded")
	}

	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatalf("ParseURL(%q): %v", s.URL(), err)
	}
	if opt.Password != pw || opt.Addr != s.Addr || opt.DB != 0 {
		t.Fatalf("URL %q parses to addr=%q password=%q db=%d", s.URL(), opt.Addr, opt.Password, opt.DB)
	}
	byURL := redis.NewClient(opt)
	defer byURL.Close()
	if got, err := byURL.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET via URL = %q, %v", got, err)
	}
	if got, err := s.Client().ConfigGet(ctx, "maxmemory").Result(); err != nil || got["maxmemory"] != "16777216" {
		t.Fatalf("Args not applied: maxmemory = %v, %v", got, err)
	}
}

func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	start := time.Now()
	s := StartSentinel(t, SentinelOptions{MasterName: "sessions", Password: "data-pw", SentinelPassword: "sentinel-pw"})
	t.Logf("StartSentinel took %v: master %s replica %s sentinels %v", time.Since(start), s.Master.Addr, s.Replica.Addr, s.SentinelAddrs)
	oldMaster, oldReplica := s.Master, s.Replica

	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:       s.MasterName,
		SentinelAddrs:    s.SentinelAddrs,
		Password:         "data-pw",
		SentinelPassword: "sentinel-pw",
	})
	defer c.Close()
	ctx := ctxT(t, 60*time.Second)
	if err := c.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatalf("SET before failover: %v", err)
	}
	// The sentinels must not be usable without their password.
	noPW := redis.NewSentinelClient(&redis.Options{Addr: s.SentinelAddrs[0], MaxRetries: -1})
	defer noPW.Close()
	if err := noPW.GetMasterAddrByName(ctx, s.MasterName).Err(); err == nil {
		t.Fatal("sentinel answered without its password")
	}

	start = time.Now()
	s.Failover(t)
	t.Logf("Failover took %v", time.Since(start))
	if s.Master != oldReplica || s.Replica != oldMaster {
		t.Fatal("Failover did not swap Master and Replica")
	}

	start = time.Now()
	eventually(t, 10*time.Second, "write after failover", func(ctx context.Context) error {
		if err := c.Set(ctx, "after", "2", 0).Err(); err != nil {
			return err
		}
		got, err := c.Get(ctx, "after").Result()
		if err != nil {
			return err
		}
		if got != "2" {
			return fmt.Errorf("GET after = %q", got)
		}
		return nil
	})
	t.Logf("failover client recovered in %v", time.Since(start))
	// The write went to the new master.
	if got, err := s.Master.Client().Get(ctx, "after").Result(); err != nil || got != "2" {
		t.Fatalf("GET on new master %s = %q, %v", s.Master.Addr, got, err)
	}
	// Data written before the failover was replicated.
	if got, err := c.Get(ctx, "before").Result(); err != nil || got != "1" {
		t.Fatalf("GET before = %q, %v", got, err)
	}

	start = time.Now()
	s.WaitReplicaSynced(t)
	t.Logf("former master resynced as replica in %v", time.Since(start))

	// And back: the pair is complete again.
	start = time.Now()
	s.Failover(t)
	t.Logf("second Failover took %v", time.Since(start))
	if s.Master != oldMaster {
		t.Fatal("second Failover did not return to the original master")
	}
	eventually(t, 10*time.Second, "read after second failover", func(ctx context.Context) error {
		got, err := c.Get(ctx, "after").Result()
		if err == nil && got != "2" {
			err = fmt.Errorf("got %q", got)
		}
		return err
	})
}

func TestSentinelKillMaster(t *testing.T) {
	t.Parallel()
	s := StartSentinel(t, SentinelOptions{})
	if s.MasterName != "mymaster" {
		t.Fatalf("default MasterName = %q", s.MasterName)
	}
	c := s.FailoverClient()
	ctx := ctxT(t, 60*time.Second)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	// Give the replica the write before the master dies.
	eventually(t, 5*time.Second, "replicated", func(ctx context.Context) error {
		got, err := s.Replica.Client().Get(ctx, "k").Result()
		if err == nil && got != "v" {
			err = fmt.Errorf("got %q", got)
		}
		return err
	})
	start := time.Now()
	s.KillMaster(t)
	t.Logf("KillMaster (promotion) took %v", time.Since(start))
	if s.Replica.Running() {
		t.Fatal("former master still running")
	}
	start = time.Now()
	eventually(t, 10*time.Second, "read after promotion", func(ctx context.Context) error {
		got, err := c.Get(ctx, "k").Result()
		if err == nil && got != "v" {
			err = fmt.Errorf("got %q", got)
		}
		return err
	})
	t.Logf("failover client recovered in %v", time.Since(start))

	// The killed master comes back empty and becomes a replica again.
	s.Replica.Restart(t)
	start = time.Now()
	s.WaitReplicaSynced(t)
	t.Logf("restarted former master resynced in %v", time.Since(start))
	if got, err := s.Replica.Client().Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET on resynced replica = %q, %v", got, err)
	}
}

// TestStartRetriesOnBindFailure: a process that cannot bind is retried on
// a new port.
func TestStartRetriesOnBindFailure(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	attempts := 0
	s, err := startServer(t, "retry", Binary(t, "redis-server"), "", func(port int, dir string) ([]string, error) {
		attempts++
		if attempts == 1 {
			port = taken // fails: address already in use
		}
		return serverArgs(port, dir, "", nil), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if attempts != 2 {
		t.Fatalf("%d attempts, want 2", attempts)
	}
	if err := s.Client().Ping(ctxT(t, 5*time.Second)).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	if log := tail(s.LogPath(), 100); !strings.Contains(log, "Address already in use") {
		t.Errorf("log does not show the bind failure:\n%s", log)
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	start := time.Now()
	cl := StartCluster(t, ClusterOptions{Password: "cluster-pw"})
	t.Logf("StartCluster took %v: %v", time.Since(start), cl.Addrs)
	if len(cl.Nodes) != 3 {
		t.Fatalf("%d nodes, want 3", len(cl.Nodes))
	}
	cc := cl.ClusterClient()
	ctx := ctxT(t, 60*time.Second)

	const n = 200
	keyNode := map[string]string{} // key -> addr of the master owning its slot
	slotOwner := map[int64]string{}
	shards, err := cc.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatalf("CLUSTER SLOTS: %v", err)
	}
	for _, sh := range shards {
		for slot := sh.Start; slot <= sh.End; slot++ {
			slotOwner[int64(slot)] = sh.Nodes[0].Addr
		}
	}
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("key:%d", i)
		if err := cc.Set(ctx, k, i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
		slot, err := cc.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT %s: %v", k, err)
		}
		keyNode[k] = slotOwner[slot]
	}
	perOwner := map[string]int{}
	for _, a := range keyNode {
		perOwner[a]++
	}

	var mu sync.Mutex
	sizes := map[string]int64{}
	err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		size, err := c.DBSize(ctx).Result()
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		sizes[c.Options().Addr] = size
		return nil
	})
	if err != nil {
		t.Fatalf("ForEachMaster: %v", err)
	}
	if len(sizes) != 3 {
		t.Fatalf("ForEachMaster saw %d masters, want 3", len(sizes))
	}
	var total int64
	for a, size := range sizes {
		if size == 0 || size != int64(perOwner[a]) {
			t.Errorf("master %s: DBSIZE %d, keys by KEYSLOT %d", a, size, perOwner[a])
		}
		total += size
	}
	if total != n {
		t.Errorf("total DBSIZE %d, want %d", total, n)
	}
	t.Logf("keys per master: %v", sizes)

	// Restart the node owning key:0.
	victim := -1
	for i, a := range cl.Addrs {
		if a == keyNode["key:0"] {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatalf("owner %s of key:0 is not a node", keyNode["key:0"])
	}
	start = time.Now()
	cl.RestartNode(t, victim)
	t.Logf("RestartNode(%d) took %v", victim, time.Since(start))

	eventually(t, 10*time.Second, "reads after RestartNode", func(ctx context.Context) error {
		for k, owner := range keyNode {
			got, err := cc.Get(ctx, k).Result()
			if owner == cl.Addrs[victim] {
				// The restarted master came back empty.
				if err != nil && !errors.Is(err, redis.Nil) {
					return fmt.Errorf("GET %s on restarted node: %v", k, err)
				}
				continue
			}
			if err != nil {
				return fmt.Errorf("GET %s: %v", k, err)
			}
			if k != "key:"+got {
				return fmt.Errorf("GET %s = %q", k, got)
			}
		}
		return nil
	})
	for i, node := range cl.Nodes {
		info, err := node.Client().ClusterInfo(ctx).Result()
		if err != nil || infoField(info, "cluster_state") != "ok" {
			t.Fatalf("node %d: cluster_state=%q, %v", i, infoField(info, "cluster_state"), err)
		}
	}
}

func TestClusterWithReplicas(t *testing.T) {
	t.Parallel()
	start := time.Now()
	cl := StartCluster(t, ClusterOptions{ReplicasPerMaster: 1})
	t.Logf("StartCluster with replicas took %v", time.Since(start))
	if len(cl.Nodes) != 6 {
		t.Fatalf("%d nodes, want 6", len(cl.Nodes))
	}
	cc := cl.ClusterClient()
	ctx := ctxT(t, 30*time.Second)
	if err := cc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	var mu sync.Mutex
	replicas := 0
	err := cc.ForEachSlave(ctx, func(ctx context.Context, c *redis.Client) error {
		mu.Lock()
		replicas++
		mu.Unlock()
		return nil
	})
	if err != nil || replicas != 3 {
		t.Fatalf("ForEachSlave: %d replicas, %v", replicas, err)
	}
}
