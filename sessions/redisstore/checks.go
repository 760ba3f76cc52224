package redisstore

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// checkBatcher sends the existence checks that requests wait for to Redis
// together. A lone EXISTS costs its request a round trip and both
// processes two system calls and a wake-up; at 100 000 sessions, each
// requested less often than recheck_interval, that is one per request and
// most of the CPU (scripts/bench-scale.sh: 0.49× plain Caddy with lone
// checks, 0.74× batched). While one pipeline is out, the checks asked in
// the meantime queue and go out in the next, so under load a round trip
// carries as many checks as there are requests waiting, and when idle a
// check goes out at once, alone. The answer is the one Redis gives after
// the check was asked, as with a lone EXISTS.
//
// On a Cluster each master has its own lane (queue and pipeline), so a
// node that hangs holds up only the checks of the sessions it holds, as
// it would with lone checks; the others go on. (While slots move, a key
// queued in one master's lane may be redirected to another: its pipeline
// then waits for both, until the slot map is current again.)
type checkBatcher struct {
	client redis.UniversalClient
	// laneOf names the lane of a key: its master's address on a Cluster,
	// "" otherwise.
	laneOf func(ctx context.Context, key string) string

	mu     sync.Mutex
	lanes  map[string]*lane
	closed bool
	done   chan struct{} // closed by stop
}

// lane is one queue of checks and the goroutine that sends it.
type lane struct {
	name  string
	queue []*check      // under checkBatcher.mu
	wake  chan struct{} // capacity 1: the queue is not empty
}

// check is one request's question and, once done is closed, its answer.
type check struct {
	key    string
	exists bool
	err    error
	done   chan struct{}
	gaveUp atomic.Bool // its request stopped waiting: not worth sending
}

const (
	// maxQueued bounds a lane's queue: while Redis hangs, checks past it
	// are asked alone, as before batching, instead of piling up.
	maxQueued = 16 * recheckBatch
	// laneIdle is how long a lane without checks lives on: the lane of a
	// master that went away (failover, resharding) does not stay forever.
	laneIdle = time.Minute
)

func newCheckBatcher(client redis.UniversalClient) *checkBatcher {
	b := &checkBatcher{
		client: client,
		laneOf: func(context.Context, string) string { return "" },
		lanes:  map[string]*lane{},
		done:   make(chan struct{}),
	}
	if cc, ok := client.(*redis.ClusterClient); ok {
		b.laneOf = func(ctx context.Context, key string) string {
			node, err := cc.MasterForKey(ctx, key)
			if err != nil {
				return "" // no slot map yet: the cluster client finds the node
			}
			return node.Options().Addr
		}
	}
	return b
}

// exists reports whether key exists, in the next pipeline out of its lane.
// A request that gives up (ctx) leaves its check to be dropped unsent.
func (b *checkBatcher) exists(ctx context.Context, key string) (bool, error) {
	name := b.laneOf(ctx, key)
	b.mu.Lock()
	l := b.lanes[name]
	if b.closed || l != nil && len(l.queue) >= maxQueued {
		// A configuration being replaced, or a Redis that does not keep
		// up: ask alone.
		b.mu.Unlock()
		cmd := existsMany(ctx, b.client, []string{key})[0]
		return cmd.Val() == 1, cmd.Err()
	}
	if l == nil {
		l = &lane{name: name, wake: make(chan struct{}, 1)}
		b.lanes[name] = l
		go b.run(l)
	}
	// Its own copy: key may be part of a much larger Cookie header, which
	// a queue held up by a hanging Redis would keep alive.
	c := &check{key: strings.Clone(key), done: make(chan struct{})}
	l.queue = append(l.queue, c)
	b.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default: // already woken: the queue goes out with the next pipeline
	}
	select {
	case <-c.done:
		return c.exists, c.err
	case <-ctx.Done():
		c.gaveUp.Store(true)
		return false, ctx.Err()
	}
}

// run sends l's queue, a pipeline at a time, until stop, or until the lane
// has been idle for laneIdle.
func (b *checkBatcher) run(l *lane) {
	var batch []*check
	idle := time.NewTimer(laneIdle)
	defer idle.Stop()
	for {
		select {
		case <-b.done:
			return
		case <-idle.C:
			b.mu.Lock()
			if len(l.queue) == 0 && b.lanes[l.name] == l {
				delete(b.lanes, l.name)
				b.mu.Unlock()
				return
			}
			b.mu.Unlock()
			idle.Reset(laneIdle)
			continue
		case <-l.wake:
		}
		for {
			b.mu.Lock()
			batch = batch[:0]
			n := 0
			for _, c := range l.queue {
				if n == recheckBatch {
					break
				}
				n++
				if c.gaveUp.Load() {
					close(c.done) // for nobody
					continue
				}
				batch = append(batch, c)
			}
			rest := copy(l.queue, l.queue[n:])
			clear(l.queue[rest:])
			l.queue = l.queue[:rest]
			if rest == 0 && cap(l.queue) > recheckBatch {
				l.queue = nil // a burst's array goes
			}
			b.mu.Unlock()
			if n == 0 {
				break
			}
			answer(b.client, batch)
			clear(batch)
		}
		idle.Reset(laneIdle)
	}
}

// stop ends the lanes. The checks still queued are sent, one pipeline per
// lane, for the requests of the old configuration that wait for them; later
// ones are asked alone.
func (b *checkBatcher) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	close(b.done)
	for _, l := range b.lanes {
		if queued := l.queue; len(queued) > 0 {
			go answer(b.client, queued)
		}
		l.queue = nil
	}
}

// answer sends checks in pipelines of recheckBatch and answers them. Not
// in a request's context: the checks are for many requests; the client's
// read and write timeouts bound the wait.
func answer(client redis.UniversalClient, checks []*check) {
	for len(checks) > 0 {
		batch := checks[:min(len(checks), recheckBatch)]
		checks = checks[len(batch):]
		keys := make([]string, len(batch))
		for i, c := range batch {
			keys[i] = c.key
		}
		for i, cmd := range existsMany(context.Background(), client, keys) {
			batch[i].exists, batch[i].err = cmd.Val() == 1, cmd.Err()
			close(batch[i].done)
		}
	}
}

// existsMany asks Redis whether each of keys exists, in one pipeline, and
// returns each key's own answer: on a Cluster the pipeline goes to several
// nodes, and a node that is down fails only the keys it holds.
func existsMany(ctx context.Context, client redis.UniversalClient, keys []string) []*redis.IntCmd {
	cmds := make([]*redis.IntCmd, len(keys))
	_, _ = client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Exists(ctx, k)
		}
		return nil
	}) // the error is that of a command: each is read below
	return cmds
}
