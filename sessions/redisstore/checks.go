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
// most of the CPU. While one pipeline is out, the checks asked in the
// meantime queue and go out in the next, so under load a round trip
// carries as many checks as there are requests waiting, and when idle a
// check goes out at once, alone. The answer is the one Redis gives after
// the check was asked, as with a lone EXISTS.
type checkBatcher struct {
	client redis.UniversalClient

	mu     sync.Mutex
	queue  []*check
	closed bool

	wake chan struct{} // capacity 1: a queue is waiting
	done chan struct{} // closed by stop
}

// check is one request's question and, once done is closed, its answer.
type check struct {
	key    string
	exists bool
	err    error
	done   chan struct{}
}

func newCheckBatcher(client redis.UniversalClient) *checkBatcher {
	b := &checkBatcher{client: client, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go b.run()
	return b
}

// exists reports whether key exists, in the next pipeline out. A request
// that gives up (ctx) leaves its check to be answered for nobody.
func (b *checkBatcher) exists(ctx context.Context, key string) (bool, error) {
	c := &check{key: key, done: make(chan struct{})}
	b.mu.Lock()
	if b.closed {
		// A request of a configuration being replaced: ask alone.
		b.mu.Unlock()
		found, err := existsMany(ctx, b.client, []string{key})
		return err == nil && found[0], err
	}
	b.queue = append(b.queue, c)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default: // already woken: the queue goes out with the next pipeline
	}
	select {
	case <-c.done:
		return c.exists, c.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// run sends the queue, a pipeline at a time, until stop.
func (b *checkBatcher) run() {
	var batch []*check
	keys := make([]string, 0, recheckBatch)
	for {
		select {
		case <-b.done:
			return
		case <-b.wake:
		}
		for {
			b.mu.Lock()
			n := min(len(b.queue), recheckBatch)
			batch = append(batch[:0], b.queue[:n]...)
			rest := copy(b.queue, b.queue[n:])
			clear(b.queue[rest:])
			b.queue = b.queue[:rest]
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
			found, err := existsMany(context.Background(), b.client, keys)
			for i, c := range batch {
				c.err = err
				c.exists = err == nil && found[i]
				close(c.done)
			}
			clear(batch)
		}
	}
}

// stop ends run; the checks still queued are answered with an error, and
// later ones are asked alone.
func (b *checkBatcher) stop() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	close(b.done)
	queued := b.queue
	b.queue = nil
	b.mu.Unlock()
	for _, c := range queued {
		c.err = errStopped
		close(c.done)
	}
}

var errStopped = errors.New("the Redis store is being cleaned up")

// existsMany asks Redis whether each of keys exists, in one pipeline.
func existsMany(ctx context.Context, client redis.UniversalClient, keys []string) ([]bool, error) {
	cmds := make([]*redis.IntCmd, len(keys))
	_, err := client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Exists(ctx, k)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	found := make([]bool, len(keys))
	for i, c := range cmds {
		found[i] = c.Val() == 1
	}
	return found, nil
}
