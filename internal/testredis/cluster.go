package testredis

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterTimeout bounds "redis-cli --cluster create" and every wait for
// cluster_state:ok.
const clusterTimeout = 30 * time.Second

// ClusterOptions configures StartCluster.
type ClusterOptions struct {
	// Masters is the number of masters; default 3 (redis-cli needs >= 3).
	Masters int
	// ReplicasPerMaster is the number of replicas of each master; default 0.
	ReplicasPerMaster int
	// Password is requirepass and masterauth on every node.
	Password string
}

// Cluster is a Redis Cluster of Masters*(1+ReplicasPerMaster) nodes.
type Cluster struct {
	// Addrs are the nodes' "127.0.0.1:port", in the order of Nodes. The
	// first Masters of them were created as masters.
	Addrs []string
	// Nodes are the node processes.
	Nodes []*Server

	t             testing.TB
	password      string
	nodesPerShard int
}

// StartCluster starts the nodes (cluster-enabled, cluster-node-timeout
// 2000 ms, each with its own nodes.conf and a separately chosen free cluster
// bus port), joins them with "redis-cli --cluster create" and waits until
// every node reports cluster_state:ok, knows every other node, and every
// replica is in sync and listed in CLUSTER SLOTS (what clients see). Everything is stopped when the test ends.
func StartCluster(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	if opts.Masters == 0 {
		opts.Masters = 3
	}
	if opts.Masters < 3 {
		t.Fatalf("testredis: a cluster needs at least 3 masters, got %d", opts.Masters)
	}
	if opts.ReplicasPerMaster < 0 {
		t.Fatalf("testredis: negative ReplicasPerMaster %d", opts.ReplicasPerMaster)
	}
	serverBin := Binary(t, "redis-server")
	cliBin := Binary(t, "redis-cli")

	c := &Cluster{t: t, password: opts.Password, nodesPerShard: 1 + opts.ReplicasPerMaster}
	total := opts.Masters * (1 + opts.ReplicasPerMaster)
	for i := 0; i < total; i++ {
		n, err := startServer(t, fmt.Sprintf("node%d", i), serverBin, opts.Password, func(port int, dir string) ([]string, error) {
			busPort, err := freePort()
			if err != nil {
				return nil, err
			}
			return serverArgs(port, dir, opts.Password, []string{
				"--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
				"--cluster-node-timeout", "2000",
				"--cluster-port", strconv.Itoa(busPort),
				"--repl-diskless-sync", "yes",
				"--repl-diskless-sync-delay", "0",
				// A replica with replication offset 0 is left out of
				// CLUSTER SLOTS (so clients do not see it); a master
				// pings its replicas, moving the offset, every period.
				"--repl-ping-replica-period", "1",
			}), nil
		})
		if err != nil {
			t.Fatalf("testredis: cluster setup: %v", err)
		}
		c.Nodes = append(c.Nodes, n)
		c.Addrs = append(c.Addrs, n.Addr)
	}

	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(opts.ReplicasPerMaster), "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cliBin, args...)
	cmd.Env = os.Environ()
	if opts.Password != "" {
		// Not -a: keeps the password off the command line and avoids
		// redis-cli's warning.
		cmd.Env = append(cmd.Env, "REDISCLI_AUTH="+opts.Password)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testredis: redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.waitOK(); err != nil {
		t.Fatalf("testredis: cluster setup: %v", err)
	}
	return c
}

// ClusterClient returns a go-redis cluster client for all nodes (with the
// password). It is closed when the test ends.
func (c *Cluster) ClusterClient() *redis.ClusterClient {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs, Password: c.password})
	c.t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// RestartNode stops node i and starts it again on the same port with the
// same nodes.conf (so it keeps its node ID and slots), then waits (bounded)
// until every node reports cluster_state:ok again. Without persistence the
// node comes back empty: a restarted master has lost its keys.
func (c *Cluster) RestartNode(t testing.TB, i int) {
	t.Helper()
	c.Nodes[i].Stop()
	c.Nodes[i].Restart(t)
	if err := c.waitOK(); err != nil {
		t.Fatalf("testredis: after restarting node %d (%s): %v", i, c.Addrs[i], err)
	}
}

// WaitOK waits (bounded) until every node reports cluster_state:ok with all
// 16384 slots assigned, knows every node, lists every replica in CLUSTER
// SLOTS, and every replica is in sync.
func (c *Cluster) WaitOK(t testing.TB) {
	t.Helper()
	if err := c.waitOK(); err != nil {
		t.Fatalf("testredis: %v", err)
	}
}

func (c *Cluster) waitOK() error {
	var clients []*redis.Client
	for _, n := range c.Nodes {
		cl := quickClient(n.Addr, n.password)
		defer cl.Close()
		clients = append(clients, cl)
	}
	want := strconv.Itoa(len(c.Nodes))
	err := waitFor(clusterTimeout, 100*time.Millisecond, func(ctx context.Context) (bool, string) {
		for i, cl := range clients {
			info, err := cl.ClusterInfo(ctx).Result()
			if err != nil {
				return false, fmt.Sprintf("node %d (%s): CLUSTER INFO: %v", i, c.Addrs[i], err)
			}
			st, slots, known := infoField(info, "cluster_state"), infoField(info, "cluster_slots_ok"), infoField(info, "cluster_known_nodes")
			if st != "ok" || slots != "16384" || known != want {
				return false, fmt.Sprintf("node %d (%s): cluster_state=%s cluster_slots_ok=%s cluster_known_nodes=%s", i, c.Addrs[i], st, slots, known)
			}
			ranges, err := cl.ClusterSlots(ctx).Result()
			if err != nil {
				return false, fmt.Sprintf("node %d (%s): CLUSTER SLOTS: %v", i, c.Addrs[i], err)
			}
			for _, r := range ranges {
				if len(r.Nodes) != c.nodesPerShard {
					return false, fmt.Sprintf("node %d (%s): CLUSTER SLOTS lists %d nodes for slots %d-%d, want %d", i, c.Addrs[i], len(r.Nodes), r.Start, r.End, c.nodesPerShard)
				}
			}
			repl, err := cl.Info(ctx, "replication").Result()
			if err != nil {
				return false, fmt.Sprintf("node %d (%s): INFO replication: %v", i, c.Addrs[i], err)
			}
			if infoField(repl, "role") == "slave" && infoField(repl, "master_link_status") != "up" {
				return false, fmt.Sprintf("node %d (%s): replica master_link_status=%s", i, c.Addrs[i], infoField(repl, "master_link_status"))
			}
		}
		return true, ""
	})
	if err != nil {
		return fmt.Errorf("cluster not ok: %w", err)
	}
	return nil
}
