package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidc-session/oidc_session/internal/testredis"
)

// TestCheckBatcher: concurrent checks share pipelines, and each gets the
// answer for its own key.
func TestCheckBatcher(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	client := srv.Client()
	var requests, background atomic.Int64
	var pipelines atomic.Int64
	client.AddHook(countExists{&requests, &background})
	client.AddHook(countPipelines{&pipelines})
	ctx := context.Background()
	for i := range 100 {
		if i%2 == 0 {
			if err := client.Set(ctx, fmt.Sprint("k", i), "v", time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	b := newCheckBatcher(client)
	t.Cleanup(b.stop)

	const callers, rounds = 50, 40
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		wg.Go(func() {
			for r := range rounds {
				i := (c + r*callers) % 100
				found, err := b.exists(ctx, fmt.Sprint("k", i))
				if err != nil || found != (i%2 == 0) {
					errs <- fmt.Errorf("k%d: found %v, err %v; want found %v", i, found, err, i%2 == 0)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := requests.Load(); n != callers*rounds {
		t.Errorf("%d EXISTS sent for %d checks", n, callers*rounds)
	}
	if n := pipelines.Load(); n >= callers*rounds/2 {
		t.Errorf("%d pipelines for %d concurrent checks: not batched", n, callers*rounds)
	} else {
		t.Logf("%d checks in %d pipelines", callers*rounds, n)
	}
	if n := background.Load(); n != 0 {
		t.Errorf("%d checks counted as the background recheck's", n)
	}
}

// TestCheckBatcherRedisDown: with Redis down, every check gets an error
// (no hang, no false answer); a request that gives up returns at once;
// after stop, checks are asked alone.
func TestCheckBatcherRedisDown(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	client := srv.Client()
	b := newCheckBatcher(client)
	t.Cleanup(b.stop)
	ctx := context.Background()
	if _, err := b.exists(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if found, err := b.exists(ctx, "k"); err == nil || found {
				t.Errorf("Redis down: found %v, err %v; want an error", found, err)
			}
		})
	}
	wg.Wait()

	// A request that gives up does not wait for the batch.
	srv.Restart(t)
	paused := make(chan struct{})
	go func() {
		defer close(paused)
		_ = srv.Client().Do(ctx, "CLIENT", "PAUSE", "1500", "ALL").Err()
	}()
	<-paused
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := b.exists(short, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a check whose request gave up: %v, want its deadline", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a check whose request gave up after 100ms returned after %v", d)
	}

	b.stop()
	if err := client.Set(ctx, "k", "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if found, err := b.exists(ctx, "k"); err != nil || !found {
		t.Errorf("after stop: found %v, err %v", found, err)
	}
}

// countPipelines counts the pipelines a client sends.
type countPipelines struct{ n *atomic.Int64 }

func (countPipelines) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (countPipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (c countPipelines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmds)
	}
}

// TestCheckBatcherClusterLanes: on a Cluster, a master that hangs holds up
// only the checks of its own keys; a check of a key on another master
// answers meanwhile, and the held one answers once the master is back.
func TestCheckBatcherClusterLanes(t *testing.T) {
	cl := testredis.StartCluster(t, testredis.ClusterOptions{Masters: 3})
	cc := cl.ClusterClient()
	ctx := context.Background()
	// Two keys on different masters.
	master := func(key string) string {
		node, err := cc.MasterForKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return node.Options().Addr
	}
	held, free := "k0", ""
	for i := 1; free == ""; i++ {
		if k := fmt.Sprint("k", i); master(k) != master(held) {
			free = k
		}
	}
	for _, k := range []string{held, free} {
		if err := cc.Set(ctx, k, "v", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	b := newCheckBatcher(cc)
	t.Cleanup(b.stop)
	for _, k := range []string{held, free} { // both lanes up
		if found, err := b.exists(ctx, k); !found || err != nil {
			t.Fatalf("%s: %v %v", k, found, err)
		}
	}

	node := redis.NewClient(&redis.Options{Addr: master(held)})
	t.Cleanup(func() { _ = node.Close() })
	if err := node.Do(ctx, "CLIENT", "PAUSE", "1500", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	answer := make(chan error, 1)
	go func() {
		found, err := b.exists(ctx, held)
		if err == nil && !found {
			err = errors.New("not found")
		}
		answer <- err
	}()
	time.Sleep(50 * time.Millisecond) // its pipeline is out, waiting
	start := time.Now()
	if found, err := b.exists(ctx, free); !found || err != nil {
		t.Fatalf("key on a master that answers: %v %v", found, err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("a check on a master that answers took %v while another master hung", d)
	}
	select {
	case err := <-answer:
		t.Fatalf("the check on the paused master answered before the pause ended: %v", err)
	default:
	}
	if err := <-answer; err != nil {
		t.Errorf("the check on the paused master, after the pause: %v", err)
	}
	t.Logf("held check answered %v after the pause began", time.Since(paused))
}

// TestCheckBatcherStop: checks still queued when the store is cleaned up
// (a config reload under load) get Redis's answer, not an error.
func TestCheckBatcherStop(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	client := srv.Client()
	ctx := context.Background()
	if err := client.Set(ctx, "k", "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	b := newCheckBatcher(client)
	if _, err := b.exists(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Client().Do(ctx, "CLIENT", "PAUSE", "500", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if found, err := b.exists(ctx, "k"); !found || err != nil {
				t.Errorf("a check queued at cleanup: found %v, err %v", found, err)
			}
		})
	}
	time.Sleep(100 * time.Millisecond) // one pipeline out, the rest queued
	b.stop()
	wg.Wait()
}

// TestCheckBatcherDropsAbandoned: checks whose requests gave up while
// Redis was slow are not sent once it answers again.
func TestCheckBatcherDropsAbandoned(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	client := srv.Client()
	var requests, background atomic.Int64
	client.AddHook(countExists{&requests, &background})
	ctx := context.Background()
	b := newCheckBatcher(client)
	t.Cleanup(b.stop)
	if _, err := b.exists(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Client().Do(ctx, "CLIENT", "PAUSE", "600", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	before := requests.Load()
	held := make(chan error, 1)
	go func() { _, err := b.exists(ctx, "held"); held <- err }()
	time.Sleep(50 * time.Millisecond) // its pipeline is out
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			if _, err := b.exists(short, fmt.Sprint("gave-up-", i)); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("a check whose request gave up: %v", err)
			}
		})
	}
	wg.Wait()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if _, err := b.exists(ctx, "after"); err != nil { // the lane has moved past them
		t.Fatal(err)
	}
	if n := requests.Load() - before; n != 2 {
		t.Errorf("%d EXISTS sent, want 2 (held and after; not the 10 given up)", n)
	}
}
