package redisstore

import (
	"context"
	"errors"
	"sync"

	"github.com/redis/go-redis/v9"
)

// checkBatcher sends the existence checks that requests wait for to Redis
// together. A lone EXISTS costs its request a round trip and both
// processes two system calls and a wake-up; at 100 000 sessions, each
// requested less often than recheck_interval, that is one per request and
// most of the CPU (scripts/bench-scale.sh: 0.49× plain Caddy with lone
// checks, 0.73× batched). While one pipeline is out, the checks asked in
// the meantime queue and go out in the next, so under load a round trip
// carries as many checks as there are requests waiting, and when idle a
// check goes out at once, alone. The answer is the one Redis gives after
// the check was asked, as with a lone EXISTS.
//
// On a Cluster each master has its own lane (queue and pipeline), so a
// node that hangs holds up only the checks of the sessions it holds, as
// it would with lone checks; the others go on.
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
	queue []*check        // under checkBatcher.mu
	wake  chan struct{} // capacity 1: the queue is not empty
}

// check is one request's question and, once done is closed, its answer.
type check struct {
	key    string
	exists bool
	err    error
	done   chan struct{}
}

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
// A request that gives up (ctx) leaves its check to be answered for
// nobody.
func (b *checkBatcher) exists(ctx context.Context, key string) (bool, error) {
	name := b.laneOf(ctx, key)
	c := &check{key: key, done: make(chan struct{})}
	b.mu.Lock()
	if b.closed {
		// A request of a configuration being replaced: ask alone.
		b.mu.Unlock()
		cmd := existsMany(ctx, b.client, []string{key})[0]
		return cmd.Val() == 1, cmd.Err()
	}
	l := b.lanes[name]
	if l == nil {
		l = &lane{wake: make(chan struct{}, 1)}
		b.lanes[name] = l
		go b.run(l)
	}
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
		return false, ctx.Err()
	}
}

// run sends l's queue, a pipeline at a time, until stop.
func (b *checkBatcher) run(l *lane) {
	var batch []*check
	keys := make([]string, 0, recheckBatch)
	for {
		select {
		case <-b.done:
			return
		case <-l.wake:
		}
		for {
			b.mu.Lock()
			n := min(len(l.queue), recheckBatch)
			batch = append(batch[:0], l.queue[:n]...)
			rest := copy(l.queue, l.queue[n:])
			clear(l.queue[rest:])
			l.queue = l.queue[:rest]
			b.mu.Unlock()
			if n == 0 {
				break
			}
			keys = keys[:0]
			for _, c := range batch {
				keys = append(keys, c.key)
			}
			// Not a request's context: the checks are for many requests.
			// The client's read and write timeouts bound the wait.
			cmds := existsMany(context.Background(), b.client, keys)
			for i, c := range batch {
				c.exists, c.err = cmds[i].Val() == 1, cmds[i].Err()
				close(c.done)
			}
			clear(batch)
		}
	}
}

// stop ends the lanes; the checks still queued are answered with an
// error, and later ones are asked alone.
func (b *checkBatcher) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	close(b.done)
	for _, l := range b.lanes {
		for _, c := range l.queue {
			c.err = errStopped
			close(c.done)
		}
		l.queue = nil
	}
}

var errStopped = errors.New("the Redis store is being cleaned up")

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
