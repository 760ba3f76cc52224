package redisstore

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// The background recheck takes the existence checks of the sessions in
// use off the request path. Every quarter of recheck_interval it asks
// Redis, in pipelines, whether the records that requests took as trusted
// within the last renewFor intervals and were last checked half an
// interval ago or more still exist, and renews them in the verified set:
// each record in use is checked a little more than once per interval (the
// least that keeps it trusted), at most 3/4 of an interval after its last
// check, before its trust runs out. (Each round looks at every entry:
// rounds more frequent would cost more than they save.) A session requested at least once
// every renewFor intervals is then always found trusted, and its requests
// wait for no EXISTS however many sessions there are; one requested more
// rarely costs its request one EXISTS, as before, and at most renewFor+1
// background checks. Revocation is as prompt as before: an entry is still
// trusted only for recheck_interval after Redis last said it exists, an
// announcement still ends it at once, and an answer to a round during
// which anything was announced (or the subscription changed) is not kept
// (verifiedSet.verified), so the request asks Redis itself.

// renewFor is how many recheck intervals after its last request a session
// is kept verified: a pipelined EXISTS costs a small fraction of one on
// the request path, so renewing a session four times to spare one
// request its round trip is a gain, while the background work stays
// bounded by the request rate (at most about five checks per request,
// whatever the number of sessions).
const renewFor = 4

// recheckBatch is how many EXISTS go in one pipeline.
const recheckBatch = 512

// startRecheck runs the background recheck until Cleanup; a negative
// interval (ask on every request) needs none.
func (s *Store) startRecheck() {
	every := time.Duration(s.RecheckInterval) / 4
	if every <= 0 {
		return
	}
	age := 2 * every
	active := renewFor * time.Duration(s.RecheckInterval)
	ctx, cancel := context.WithCancel(context.Background())
	s.stopRecheck = cancel
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		set := s.feed.set
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			keys := set.due(set.now()-int64(active), age)
			for len(keys) > 0 && ctx.Err() == nil {
				n := min(len(keys), recheckBatch)
				if err := s.recheck(ctx, keys[:n]); err != nil {
					// The entries age out; requests ask Redis themselves.
					s.logger.Debug("background recheck of sessions failed", zap.Error(err))
					break
				}
				keys = keys[n:]
			}
		}
	}()
}

// recheck asks Redis whether keys exist, in one pipeline, and records the
// answers.
func (s *Store) recheck(ctx context.Context, keys []string) error {
	set := s.feed.set
	q := set.ask()
	cmds := make([]*redis.IntCmd, len(keys))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Exists(ctx, k)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, k := range keys {
		if cmds[i].Val() == 1 {
			set.verified(k, q)
		} else {
			set.forget(k)
		}
	}
	return nil
}
