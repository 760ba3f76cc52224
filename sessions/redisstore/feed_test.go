package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/oidc-session/oidc_session/internal/testredis"
	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/storetest"
)

func TestVerifiedSet(t *testing.T) {
	const age = time.Hour
	v := newVerifiedSet(3)
	v.verified("k", v.ask())
	if v.trusted("k", age) {
		t.Error("trusted before the feed subscribed")
	}

	v.subscribe()
	v.verified("k", v.ask())
	if !v.trusted("k", age) {
		t.Error("not trusted after a check while subscribed")
	}
	if v.trusted("other", age) {
		t.Error("a key never checked is trusted")
	}
	if v.trusted("k", time.Nanosecond) {
		t.Error("trusted past its recheck interval")
	}

	// A check under way when an end is announced may have been answered
	// before the end: its answer is not kept.
	q := v.ask()
	v.ended("unrelated")
	v.verified("k2", q)
	if v.trusted("k2", age) {
		t.Error("kept an answer that may predate an announcement")
	}
	v.ended("k")
	if v.trusted("k", age) {
		t.Error("trusted after its end was announced")
	}

	// Silence is trusted only while the feed hears from Redis.
	v.verified("k", v.ask())
	v.heard.Store(v.now() - int64(heardWithin) - 1)
	if v.trusted("k", age) {
		t.Error("trusted although the feed has not heard from Redis for too long")
	}
	v.ended("own end") // this instance's own announcement is not news from Redis
	if v.trusted("k", age) {
		t.Error("an own announcement counted as hearing from Redis")
	}
	v.alive()
	if !v.trusted("k", age) {
		t.Error("not trusted after the feed heard from Redis again")
	}

	// A new subscription (go-redis may replace the connection without an
	// error) may follow missed announcements: everything is checked again.
	v.subscribe()
	if v.trusted("k", age) {
		t.Error("trusted across a new subscription")
	}
	v.verified("k", v.ask())

	// A lost subscription forgets everything, also across a new one, and
	// drops the answers of checks under way.
	q = v.ask()
	v.unsubscribe()
	v.verified("k3", q)
	v.subscribe()
	if v.trusted("k", age) || v.trusted("k3", age) {
		t.Error("trusted an answer from before the subscription was lost")
	}

	// Bounded: when full it starts over.
	for _, k := range []string{"a", "b", "c", "d"} {
		v.verified(k, v.ask())
	}
	if len(v.entries) > 3 || !v.trusted("d", age) {
		t.Errorf("after overflow: %d entries, newest trusted %v", len(v.entries), v.trusted("d", age))
	}

	// A slow answer is trusted from when it was asked: it does not stretch
	// the recheck interval (the trust is 50ms here, the answer took 60ms).
	q = v.ask()
	time.Sleep(60 * time.Millisecond)
	v.verified("slow", q)
	if v.trusted("slow", 50*time.Millisecond) {
		t.Error("an answer asked for longer ago than the interval is trusted")
	}
}

// instance is one Caddy instance's view of a shared Redis: its own store
// (own client, feed and verified set) and a count of the EXISTS commands
// it sends for requests (exists) and in the background recheck
// (background).
type instance struct {
	*Store
	exists, background atomic.Int64
}

// newInstance provisions a store with conf; poolSize keeps instances on
// separate clients, as separate Caddy processes would be.
func newInstance(t *testing.T, conf Store, poolSize int, env sessions.Env) *instance {
	t.Helper()
	conf.PoolSize = poolSize
	in := &instance{Store: newStore(t, &conf, env)}
	in.client.AddHook(countExists{&in.exists, &in.background})
	waitSubscribed(t, in.Store, "a new store")
	return in
}

// waitSubscribed fails the test unless the store's feed is subscribed
// within 5 s.
func waitSubscribed(t *testing.T, s *Store, when string) {
	t.Helper()
	if err := eventually(5*time.Second, func() error {
		if !s.feed.set.isSubscribed() {
			return fmt.Errorf("feed of %s not subscribed", when)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// save stores a new session and returns its cookie value.
func (in *instance) save(t *testing.T) string {
	t.Helper()
	value, err := in.Save(context.Background(), "", storetest.FullSession())
	if err != nil {
		t.Fatal(err)
	}
	return value
}

// saveChecked is save followed by one check, so that the session is
// verified at this instance.
func (in *instance) saveChecked(t *testing.T) string {
	t.Helper()
	value := in.save(t)
	if ok, _ := in.Exists(context.Background(), value); !ok {
		t.Fatal("new session does not exist")
	}
	return value
}

// checkN checks value n times, each of which must find it, and returns
// how many EXISTS went to Redis meanwhile.
func (in *instance) checkN(t *testing.T, value string, n int) int64 {
	t.Helper()
	before := in.exists.Load()
	for i := 0; i < n; i++ {
		if ok, err := in.Exists(context.Background(), value); !ok || err != nil {
			t.Fatalf("check %d: %v %v", i, ok, err)
		}
	}
	return in.exists.Load() - before
}

// awaitGone checks value until it is found missing (deleted behind the
// store's back at deleted), failing if that takes longer than within.
func (in *instance) awaitGone(t *testing.T, value string, deleted time.Time, within time.Duration) {
	t.Helper()
	for {
		ok, err := in.Exists(context.Background(), value)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Since(deleted) > within {
			t.Fatalf("a record deleted with redis-cli is still trusted %v later (recheck_interval %v)",
				time.Since(deleted), time.Duration(in.RecheckInterval))
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("out-of-band delete noticed after %v", time.Since(deleted))
}

// countExists counts EXISTS commands, those of the background recheck
// (its context says so) apart from those that requests wait for (alone,
// or batched by the checkBatcher).
type countExists struct{ requests, background *atomic.Int64 }

func (c countExists) count(ctx context.Context, cmds ...redis.Cmder) {
	n := c.requests
	if ctx.Value(backgroundCheck{}) != nil {
		n = c.background
	}
	for _, cmd := range cmds {
		if cmd.Name() == "exists" {
			n.Add(1)
		}
	}
}

func (countExists) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c countExists) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.count(ctx, cmd)
		return next(ctx, cmd)
	}
}
func (c countExists) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.count(ctx, cmds...)
		return next(ctx, cmds)
	}
}

// checkAnnouncements: instance b verifies a session once and then answers
// from memory; when instance a ends the session, b hears it and finds the
// session gone on its first check after that, without a recheck interval
// to wait for.
func checkAnnouncements(t *testing.T, conf Store) {
	t.Helper()
	env := storetest.NewEnv(t)
	conf.RecheckInterval = caddy.Duration(time.Hour) // only announcements can end trust here
	a := newInstance(t, conf, 7, env)
	b := newInstance(t, conf, 9, env)
	ctx := context.Background()
	value := a.save(t)
	if n := b.checkN(t, value, 100); n != 1 {
		t.Errorf("100 checks of one session sent %d EXISTS to Redis, want 1", n)
	}

	gen := b.feed.set.generation()
	sent := time.Now()
	if err := a.Delete(ctx, value); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	for b.feed.set.generation() == gen {
		if time.Since(sent) > 3*time.Second {
			t.Fatal("b has not heard of the end 3s later")
		}
		time.Sleep(100 * time.Microsecond)
	}
	t.Logf("delete took %v; the announcement was heard at b %v after it returned", deleted.Sub(sent), time.Since(deleted))
	if ok, err := b.Exists(ctx, value); ok || err != nil {
		t.Errorf("b after the announced end: exists %v, err %v", ok, err)
	}
}

func TestAnnouncements(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	checkAnnouncements(t, Store{Connection: Connection{URL: srv.URL()}, KeyPrefix: "pfx:"})
}

// TestRecheckInterval: a record deleted behind the plugin's back is
// trusted for at most recheck_interval; with "always" every check asks
// Redis.
func TestRecheckInterval(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	rdb := srv.Client()
	env := storetest.NewEnv(t)
	ctx := context.Background()

	in := newInstance(t, Store{Connection: Connection{URL: srv.URL()}, RecheckInterval: caddy.Duration(300 * time.Millisecond)}, 7, env)
	value := in.saveChecked(t)
	key, _ := in.RecordKey(value)
	if err := rdb.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	if ok, _ := in.Exists(ctx, value); !ok {
		t.Fatal("control: the deletion was noticed at once (is the session trusted at all?)")
	}
	in.awaitGone(t, value, deleted, 2*time.Second)

	always := newInstance(t, Store{Connection: Connection{URL: srv.URL()}, RecheckInterval: -1}, 9, env)
	value = always.save(t)
	if n := always.checkN(t, value, 10); n != 10 {
		t.Errorf("recheck_interval always: 10 checks sent %d EXISTS, want 10", n)
	}
	if r := always.Report(); r != "recheck_interval always: every request asks Redis" {
		t.Errorf("report with recheck_interval always: %q", r)
	}
}

// TestFeedLost: ends announced while the subscription is down would be
// missed, so losing it forgets every verified session: a record deleted
// without an announcement is noticed once the connection was cut, and
// checks go to Redis (and fail while it is down) until the feed is back.
func TestFeedLost(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{Args: []string{"--appendonly", "yes", "--appendfsync", "always"}})
	rdb := srv.Client()
	env := storetest.NewEnv(t)
	ctx := context.Background()
	in := newInstance(t, Store{Connection: Connection{URL: srv.URL(), DialTimeout: ms(300)},
		RecheckInterval: caddy.Duration(time.Hour)}, 7, env)
	value := in.saveChecked(t)
	key, _ := in.RecordKey(value)
	if err := rdb.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	if ok, _ := in.Exists(ctx, value); !ok {
		t.Fatal("control: an unannounced delete was noticed without a lost feed (is the session trusted at all?)")
	}
	if err := rdb.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	if err := eventually(3*time.Second, func() error {
		if ok, err := in.Exists(ctx, value); ok || err != nil {
			return errors.New("the deleted record is still trusted after the feed's connection was cut")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Redis down: no answer from memory, an error (a 503 for the handler).
	value = in.save(t)
	if err := eventually(3*time.Second, func() error {
		before := in.exists.Load()
		in.Exists(ctx, value)
		if in.exists.Load() != before {
			return errors.New("still asking Redis: the feed is not back")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if err := eventually(3*time.Second, func() error {
		if _, err := in.Exists(ctx, value); !errors.Is(err, sessions.ErrUnavailable) {
			return errors.New("a check with Redis down did not fail")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	srv.Restart(t)
	if err := eventually(10*time.Second, func() error {
		if ok, err := in.Exists(ctx, value); !ok || err != nil {
			return errors.New("session not back with Redis")
		}
		if !in.feed.set.isSubscribed() {
			return errors.New("feed not subscribed again")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestFeedChannelACL: a Redis user without access to the channel cannot
// subscribe; the store then works as before, asking Redis every time.
func TestFeedChannelACL(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	rdb := srv.Client()
	ctx := context.Background()
	if err := rdb.Do(ctx, "ACL", "SETUSER", "app", "on", ">app-pass", "~app:*", "resetchannels", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	conf := Store{Connection: Connection{URL: srv.URL(), Username: "app", Password: "app-pass"}, KeyPrefix: "app:"}
	conf.PoolSize = 7
	st := &instance{Store: newStore(t, &conf, storetest.NewEnv(t))}
	st.client.AddHook(countExists{&st.exists, &st.background})
	value := st.save(t)
	time.Sleep(300 * time.Millisecond) // time for a subscription to fail
	if n := st.checkN(t, value, 5); n != 5 {
		t.Errorf("without channel access 5 checks sent %d EXISTS, want 5", n)
	}
	if r := st.Report(); r != "not subscribed to ended sessions on app:oidc_session:ended: every request asks Redis" {
		t.Errorf("report without channel access: %q", r)
	}
	// Ending a session still works; only the announcement is refused.
	if err := st.Delete(ctx, value); err != nil {
		t.Errorf("delete without channel access: %v", err)
	}
	if ok, _ := st.Exists(ctx, value); ok {
		t.Error("session still there after delete")
	}
	// Once the ACL grants the channel, the feed subscribes by itself.
	if err := rdb.Do(ctx, "ACL", "SETUSER", "app", "&app:*").Err(); err != nil {
		t.Fatal(err)
	}
	waitSubscribed(t, st.Store, "a store whose ACL now grants the channel")
	if r := st.Report(); r != "subscribed to ended sessions on app:oidc_session:ended" {
		t.Errorf("report once subscribed: %q", r)
	}
}

// TestFeedStopsPromptly: the last user's cleanup (a reload, a shutdown)
// ends the subscription without waiting for its read to time out.
func TestFeedStopsPromptly(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	s := &Store{Connection: Connection{URL: srv.URL(), PoolSize: 5}}
	if err := s.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	waitSubscribed(t, s, "a new store")
	start := time.Now()
	if err := s.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("cleanup took %v", d)
	}
	select {
	case <-s.feed.done:
	default:
		t.Error("the feed's goroutine is still running after the last cleanup")
	}
}

// TestFeedSilent: a feed that stops hearing from Redis without an error
// (here: every client paused) stops vouching for sessions within
// heardWithin, starts over with a new connection, and vouches again once
// Redis answers.
func TestFeedSilent(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	rdb := srv.Client()
	ctx := context.Background()
	in := newInstance(t, Store{Connection: Connection{URL: srv.URL()}, RecheckInterval: caddy.Duration(time.Hour)}, 7, storetest.NewEnv(t))
	value := in.saveChecked(t)
	trusted := func() bool {
		before := in.exists.Load()
		ok, err := in.Exists(ctx, value)
		return ok && err == nil && in.exists.Load() == before
	}
	if !trusted() {
		t.Fatal("a session just verified is not answered from memory")
	}
	paused := time.Now()
	if err := rdb.Do(ctx, "CLIENT", "PAUSE", "4000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	for {
		asked := time.Since(paused)
		if !trusted() {
			t.Logf("the first check not answered from memory was asked %v after Redis went silent", asked)
			break
		}
		if asked > heardWithin+pingEvery {
			t.Fatalf("still answered from memory %v after Redis stopped answering", asked)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := eventually(8*time.Second, func() error {
		if !trusted() {
			return errors.New("not answered from memory again")
		}
		return nil
	}); err != nil {
		t.Fatalf("after the pause: %v", err)
	}
}

// TestBackgroundRecheck: a session in use is rechecked in the background,
// so its requests send no EXISTS of their own past the first, and a
// record deleted behind the plugin's back is still noticed within
// recheck_interval; a read of the record counts as a check.
func TestBackgroundRecheck(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	env := storetest.NewEnv(t)
	ctx := context.Background()
	interval := 300 * time.Millisecond
	in := newInstance(t, Store{Connection: Connection{URL: srv.URL()}, RecheckInterval: caddy.Duration(interval)}, 7, env)

	value := in.save(t)
	if _, err := in.Load(ctx, value); err != nil {
		t.Fatal(err)
	}
	before := in.exists.Load()
	for deadline := time.Now().Add(5 * interval); time.Now().Before(deadline); {
		if ok, err := in.Exists(ctx, value); !ok || err != nil {
			t.Fatalf("a session in use: %v %v", ok, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A round that overlapped some other feed event may not count: allow one.
	if n := in.exists.Load() - before; n > 1 {
		t.Errorf("a session in use for 5 recheck intervals sent %d EXISTS on the request path, want at most 1", n)
	}

	key, _ := in.RecordKey(value)
	if err := srv.Client().Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	in.awaitGone(t, value, time.Now(), interval+100*time.Millisecond)
}

// TestBackgroundRecheckSparseUse: a session requested less often than
// recheck_interval costs each request one check and the background none
// (renewing it until its next request would cost several); a session
// requested often is renewed in the background while it is, and no longer
// once it is not.
func TestBackgroundRecheckSparseUse(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	interval := 300 * time.Millisecond
	in := newInstance(t, Store{Connection: Connection{URL: srv.URL()}, RecheckInterval: caddy.Duration(interval)}, 7, storetest.NewEnv(t))
	value := in.saveChecked(t)
	requests, background := in.exists.Load(), in.background.Load()
	for range 5 {
		time.Sleep(interval * 4 / 3)
		in.checkN(t, value, 1)
	}
	if n := in.exists.Load() - requests; n != 5 {
		t.Errorf("5 requests of a session, 1.3 recheck intervals apart, sent %d EXISTS for requests, want 5", n)
	}
	if n := in.background.Load() - background; n != 0 {
		t.Errorf("a session requested every 1.3 recheck intervals was checked %d times in the background, want 0", n)
	}

	// Requested every 1/10 interval for 3 intervals: renewed, no request waits.
	requests, background = in.exists.Load(), in.background.Load()
	for deadline := time.Now().Add(3 * interval); time.Now().Before(deadline); {
		in.checkN(t, value, 1)
		time.Sleep(interval / 10)
	}
	// The first request found it older than recheck_interval; a round that
	// overlapped some other feed event may not count: allow one more.
	if n := in.exists.Load() - requests; n > 2 {
		t.Errorf("a session requested every 1/10 recheck interval sent %d EXISTS for requests, want at most 2", n)
	}
	if n := in.background.Load() - background; n < 3 || n > 7 {
		t.Errorf("a session in use for 3 recheck intervals was checked %d times in the background, want 3 to 7", n)
	}
	time.Sleep(interval) // the last renewal (of the last request) is done by then
	background = in.background.Load()
	time.Sleep(2 * interval)
	if n := in.background.Load() - background; n != 0 {
		t.Errorf("a session no longer requested is still rechecked: %d EXISTS", n)
	}
}

// TestPerUserLimitEndsEverywhere: on a Cluster (the record, its metadata
// and the indexes in different slots), a session that instance a serves
// from memory, renewed by the background recheck and by its own reads,
// ends at a as soon as a login at instance b pushes it past max_per_user,
// and stays ended: neither the recheck nor a read brings its trust back.
func TestPerUserLimitEndsEverywhere(t *testing.T) {
	cl := testredis.StartCluster(t, testredis.ClusterOptions{Masters: 3})
	env := storetest.NewEnv(t)
	env.MaxPerUser = 1
	interval := 300 * time.Millisecond
	conf := Store{Connection: Connection{ClusterURLs: cl.Addrs}, RecheckInterval: caddy.Duration(interval)}
	a := newInstance(t, conf, 7, env)
	b := newInstance(t, conf, 9, env)
	ctx := context.Background()

	first := a.save(t)
	if _, err := a.Load(ctx, first); err != nil {
		t.Fatal(err)
	}
	if n := a.checkN(t, first, 1); n != 0 {
		t.Errorf("a session just read sent %d EXISTS on its first check, want 0 (the read counts)", n)
	}
	for deadline := time.Now().Add(3 * interval); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		a.checkN(t, first, 1)
	}

	gen := a.feed.set.generation()
	second := b.save(t) // the same subject: max_per_user 1 ends first
	for a.feed.set.generation() == gen {
		if ok, _ := a.Exists(ctx, first); !ok {
			break // noticed on its own: fine too
		}
		time.Sleep(100 * time.Microsecond)
	}
	for deadline := time.Now().Add(3 * interval); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ok, err := a.Exists(ctx, first); ok || err != nil {
			t.Fatalf("a still finds the session ended by the limit at b: %v %v", ok, err)
		}
		if _, err := a.Load(ctx, first); !errors.Is(err, sessions.ErrNoSession) {
			t.Fatalf("a loads the session ended by the limit at b: %v", err)
		}
	}
	if ok, err := a.Exists(ctx, second); !ok || err != nil {
		t.Errorf("the new session at a: %v %v", ok, err)
	}
}
