package testredis

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// syncTimeout bounds waiting for a replica to be in sync and for the
	// sentinels to discover each other and the replica.
	syncTimeout = 20 * time.Second
	// failoverTimeout bounds waiting for a promotion.
	failoverTimeout = 30 * time.Second
)

// SentinelOptions configures StartSentinel.
type SentinelOptions struct {
	// MasterName is the name the sentinels monitor; default "mymaster".
	MasterName string
	// Password is requirepass on the master and the replica (and their
	// masterauth) and the sentinels' "sentinel auth-pass".
	Password string
	// SentinelPassword is requirepass on the sentinels themselves (clients:
	// redis.FailoverOptions.SentinelPassword).
	SentinelPassword string
}

// Sentinel is one master, one replica and three sentinels (quorum 2,
// down-after-milliseconds 1000, failover-timeout 5000).
type Sentinel struct {
	// MasterName is the monitored master's name.
	MasterName string
	// SentinelAddrs are the three sentinels' "127.0.0.1:port".
	SentinelAddrs []string
	// Master is the current master and Replica the other data server.
	// Failover and KillMaster swap them.
	Master, Replica *Server
	// Sentinels are the three redis-sentinel processes.
	Sentinels []*Server

	opts SentinelOptions
	mu   sync.Mutex
}

// StartSentinel starts a master, a replica of it and three sentinels
// monitoring it. It returns once the replica is in sync (master_link_status
// up) and every sentinel knows the master, the replica and the two other
// sentinels, so a failover can start right away. Everything is stopped when
// the test ends.
func StartSentinel(t testing.TB, opts SentinelOptions) *Sentinel {
	t.Helper()
	if opts.MasterName == "" {
		opts.MasterName = "mymaster"
	}
	serverBin := Binary(t, "redis-server")
	sentinelBin := Binary(t, "redis-sentinel")
	replArgs := []string{"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"}

	master, err := startServer(t, "master", serverBin, opts.Password, func(port int, dir string) ([]string, error) {
		return serverArgs(port, dir, opts.Password, replArgs), nil
	})
	if err != nil {
		t.Fatalf("testredis: sentinel setup: %v", err)
	}
	_, mport := splitAddr(master.Addr)
	replica, err := startServer(t, "replica", serverBin, opts.Password, func(port int, dir string) ([]string, error) {
		return serverArgs(port, dir, opts.Password, append([]string{"--replicaof", "127.0.0.1", mport}, replArgs...)), nil
	})
	if err != nil {
		t.Fatalf("testredis: sentinel setup: %v", err)
	}
	if err := waitReplicaSynced(replica, master); err != nil {
		t.Fatalf("testredis: sentinel setup: replica %s of %s: %v", replica.Addr, master.Addr, err)
	}

	s := &Sentinel{MasterName: opts.MasterName, Master: master, Replica: replica, opts: opts}
	for i := 0; i < 3; i++ {
		sn, err := startServer(t, fmt.Sprintf("sentinel%d", i), sentinelBin, opts.SentinelPassword, func(port int, dir string) ([]string, error) {
			conf := filepath.Join(dir, "sentinel.conf")
			if err := os.WriteFile(conf, []byte(sentinelConfig(port, dir, mport, opts)), 0o600); err != nil {
				return nil, err
			}
			return []string{conf}, nil
		})
		if err != nil {
			t.Fatalf("testredis: sentinel setup: %v", err)
		}
		s.Sentinels = append(s.Sentinels, sn)
		s.SentinelAddrs = append(s.SentinelAddrs, sn.Addr)
	}
	if err := s.waitTopology(master, replica); err != nil {
		t.Fatalf("testredis: sentinel setup: %v", err)
	}
	return s
}

func sentinelConfig(port int, dir, masterPort string, opts SentinelOptions) string {
	var b strings.Builder
	line := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	line("port %d", port)
	line("bind 127.0.0.1")
	line("dir %s", configQuote(dir))
	line("daemonize no")
	line(`logfile ""`)
	line("sentinel resolve-hostnames no")
	line("sentinel announce-hostnames no")
	line("sentinel monitor %s 127.0.0.1 %s 2", opts.MasterName, masterPort)
	line("sentinel down-after-milliseconds %s 1000", opts.MasterName)
	line("sentinel failover-timeout %s 5000", opts.MasterName)
	line("sentinel parallel-syncs %s 1", opts.MasterName)
	if opts.Password != "" {
		line("sentinel auth-pass %s %s", opts.MasterName, configQuote(opts.Password))
	}
	if opts.SentinelPassword != "" {
		// requirepass protects this sentinel; sentinel-pass is what it
		// uses to talk to the other sentinels.
		line("requirepass %s", configQuote(opts.SentinelPassword))
		line("sentinel sentinel-pass %s", configQuote(opts.SentinelPassword))
	}
	return b.String()
}

// SentinelClient returns a client for sentinel i (with the sentinel
// password). It is closed when the test ends.
func (s *Sentinel) SentinelClient(i int) *redis.SentinelClient {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.SentinelAddrs[i], Password: s.opts.SentinelPassword})
	s.Sentinels[i].t.Cleanup(func() { _ = c.Close() })
	return c
}

// FailoverClient returns a go-redis failover client for this setup. It is
// closed when the test ends.
func (s *Sentinel) FailoverClient() *redis.Client {
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:       s.MasterName,
		SentinelAddrs:    s.SentinelAddrs,
		Password:         s.opts.Password,
		SentinelPassword: s.opts.SentinelPassword,
	})
	s.Sentinels[0].t.Cleanup(func() { _ = c.Close() })
	return c
}

// Failover runs SENTINEL FAILOVER on a sentinel and waits (at most ~30 s)
// until every sentinel reports the former replica as master and that server
// answers ROLE as master. Master and Replica are then swapped. The former
// master keeps running (for a few seconds still as a master that nobody is
// directed to); the sentinels turn it into a replica of the new master 10-20
// s later. Call WaitReplicaSynced before another Failover.
func (s *Sentinel) Failover(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	oldMaster, newMaster := s.Master, s.Replica
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.SentinelAddrs[0], Password: s.opts.SentinelPassword, MaxRetries: -1})
	defer sc.Close()
	// A sentinel refuses with NOGOODSLAVE until it has fresh INFO from the
	// replica, and with INPROG while a previous failover is running.
	err := waitFor(10*time.Second, 200*time.Millisecond, func(ctx context.Context) (bool, string) {
		err := sc.Failover(ctx, s.MasterName).Err()
		if err != nil {
			return false, "SENTINEL FAILOVER: " + err.Error()
		}
		return true, ""
	})
	if err != nil {
		t.Fatalf("testredis: failover of %s: %v", s.MasterName, err)
	}
	if err := s.waitPromoted(newMaster, failoverTimeout); err != nil {
		t.Fatalf("testredis: failover of %s from %s to %s: %v", s.MasterName, oldMaster.Addr, newMaster.Addr, err)
	}
	s.Master, s.Replica = newMaster, oldMaster
}

// KillMaster stops the master process and waits (at most ~30 s) until the
// sentinels have promoted the replica: every sentinel reports it as master
// and it answers ROLE as master. Master and Replica are then swapped, so
// Replica is the stopped former master. Replica.Restart brings it back as an
// empty master, which the sentinels turn into a replica of the new master
// 10-20 s later; WaitReplicaSynced does that at once.
func (s *Sentinel) KillMaster(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	oldMaster, newMaster := s.Master, s.Replica
	oldMaster.Stop()
	if err := s.waitPromoted(newMaster, failoverTimeout); err != nil {
		t.Fatalf("testredis: promotion of %s after killing %s: %v", newMaster.Addr, oldMaster.Addr, err)
	}
	s.Master, s.Replica = newMaster, oldMaster
}

// WaitReplicaSynced waits (bounded, ~40 s) until Replica is a replica of
// Master with master_link_status:up and every sentinel knows both in these
// roles, so that another Failover can run. Replica must be running (after
// KillMaster, Restart it first).
//
// The sentinels alone take 10-20 s to turn a former master into a replica
// (they act on its stale role only after 8 s and poll replicas every 10 s).
// To shorten that, WaitReplicaSynced itself sends Replica the REPLICAOF
// command the sentinels would send; waiting for the sentinels to notice
// still takes up to ~10 s.
func (s *Sentinel) WaitReplicaSynced(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	rc := quickClient(s.Replica.Addr, s.Replica.password)
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	info, err := rc.Info(ctx, "replication").Result()
	_, mport := splitAddr(s.Master.Addr)
	if err == nil && (infoField(info, "role") != "slave" || infoField(info, "master_port") != mport) {
		err = rc.Do(ctx, "REPLICAOF", "127.0.0.1", mport).Err()
	}
	cancel()
	if err != nil {
		t.Fatalf("testredis: making %s a replica of %s: %v", s.Replica.Addr, s.Master.Addr, err)
	}
	if err := waitReplicaSynced(s.Replica, s.Master); err != nil {
		t.Fatalf("testredis: replica %s of %s: %v", s.Replica.Addr, s.Master.Addr, err)
	}
	if err := s.waitTopology(s.Master, s.Replica); err != nil {
		t.Fatalf("testredis: %v", err)
	}
}

// waitPromoted waits until every sentinel names newMaster as the master
// and newMaster says it is a master.
func (s *Sentinel) waitPromoted(newMaster *Server, timeout time.Duration) error {
	clients := s.sentinelClients()
	defer closeAll(clients)
	mc := quickClient(newMaster.Addr, newMaster.password)
	defer mc.Close()
	return waitFor(timeout, 100*time.Millisecond, func(ctx context.Context) (bool, string) {
		for i, c := range clients {
			addr, err := c.GetMasterAddrByName(ctx, s.MasterName).Result()
			if err != nil {
				return false, fmt.Sprintf("sentinel %d: %v", i, err)
			}
			if len(addr) != 2 || addr[0]+":"+addr[1] != newMaster.Addr {
				return false, fmt.Sprintf("sentinel %d reports master %v, want %s", i, addr, newMaster.Addr)
			}
		}
		r, err := role(ctx, mc)
		if err != nil {
			return false, fmt.Sprintf("ROLE on %s: %v", newMaster.Addr, err)
		}
		if r != "master" {
			return false, fmt.Sprintf("%s has role %s", newMaster.Addr, r)
		}
		return true, ""
	})
}

// waitTopology waits until every sentinel sees master as a healthy master
// with replica as a healthy replica, and knows the two other sentinels.
func (s *Sentinel) waitTopology(master, replica *Server) error {
	clients := s.sentinelClients()
	defer closeAll(clients)
	err := waitFor(syncTimeout, 100*time.Millisecond, func(ctx context.Context) (bool, string) {
		for i, c := range clients {
			addr, err := c.GetMasterAddrByName(ctx, s.MasterName).Result()
			if err != nil {
				return false, fmt.Sprintf("sentinel %d: %v", i, err)
			}
			if len(addr) != 2 || addr[0]+":"+addr[1] != master.Addr {
				return false, fmt.Sprintf("sentinel %d reports master %v, want %s", i, addr, master.Addr)
			}
			m, err := c.Master(ctx, s.MasterName).Result()
			if err != nil {
				return false, fmt.Sprintf("sentinel %d: SENTINEL MASTER: %v", i, err)
			}
			if m["flags"] != "master" || m["num-other-sentinels"] != strconv.Itoa(len(clients)-1) {
				return false, fmt.Sprintf("sentinel %d: master flags=%q num-other-sentinels=%s", i, m["flags"], m["num-other-sentinels"])
			}
			reps, err := c.Replicas(ctx, s.MasterName).Result()
			if err != nil {
				return false, fmt.Sprintf("sentinel %d: SENTINEL REPLICAS: %v", i, err)
			}
			found := false
			for _, r := range reps {
				if r["ip"]+":"+r["port"] == replica.Addr && r["flags"] == "slave" && r["master-link-status"] == "ok" {
					found = true
				}
			}
			if !found {
				return false, fmt.Sprintf("sentinel %d does not see %s as a healthy replica: %v", i, replica.Addr, reps)
			}
		}
		return true, ""
	})
	if err != nil {
		return fmt.Errorf("sentinels do not agree on master %s / replica %s: %w", master.Addr, replica.Addr, err)
	}
	return nil
}

func (s *Sentinel) sentinelClients() []*redis.SentinelClient {
	var cs []*redis.SentinelClient
	for _, a := range s.SentinelAddrs {
		cs = append(cs, redis.NewSentinelClient(&redis.Options{
			Addr:         a,
			Password:     s.opts.SentinelPassword,
			DialTimeout:  500 * time.Millisecond,
			ReadTimeout:  time.Second,
			WriteTimeout: time.Second,
			MaxRetries:   -1,
			PoolSize:     1,
		}))
	}
	return cs
}

func closeAll(cs []*redis.SentinelClient) {
	for _, c := range cs {
		_ = c.Close()
	}
}

// waitReplicaSynced waits until replica reports master as its master with
// master_link_status:up.
func waitReplicaSynced(replica, master *Server) error {
	rc := quickClient(replica.Addr, replica.password)
	defer rc.Close()
	_, mport := splitAddr(master.Addr)
	return waitFor(syncTimeout, 50*time.Millisecond, func(ctx context.Context) (bool, string) {
		info, err := rc.Info(ctx, "replication").Result()
		if err != nil {
			return false, err.Error()
		}
		r, port, link := infoField(info, "role"), infoField(info, "master_port"), infoField(info, "master_link_status")
		if r != "slave" || port != mport || link != "up" {
			return false, fmt.Sprintf("role=%s master_port=%s master_link_status=%s", r, port, link)
		}
		return true, ""
	})
}

// configQuote quotes v for a Redis configuration file (double quotes with
// \\, \", \n, \r, \t and \xHH escapes).
func configQuote(v string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func splitAddr(addr string) (host, port string) {
	i := strings.LastIndexByte(addr, ':')
	return addr[:i], addr[i+1:]
}
