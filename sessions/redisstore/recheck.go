package redisstore

import (
	"cmp"
	"context"
	"time"

	"go.uber.org/zap"
)

// The background recheck takes the existence checks of the sessions in
// use off the request path. Every quarter of recheck_interval it asks
// Redis, in pipelines, whether the records that requests took as trusted
// since their last check, and were last checked half an interval ago or
// more, still exist, and renews them in the verified set: a session
// requested more often than recheck_interval is checked a little more than
// once per interval (the least that keeps it trusted), at most 3/4 of an
// interval after its last check, before its trust runs out, so its
// requests wait for no EXISTS however many sessions there are. (Each round
// looks at every entry: rounds more frequent would cost more than they
// save.) A session requested more rarely costs its request one check, in
// the next pipeline of the requests' checks (checkBatcher), and nothing in
// the background: renewing it until its next request would cost several
// checks for the one it spares. Either way a session costs at most one
// check per request, or two per interval, whatever the number of sessions.
// Revocation is as prompt as before: an entry is still trusted only for
// recheck_interval after Redis last said it exists, an announcement still
// ends it at once, and an answer to a round during which anything was
// announced (or the subscription changed) is not kept
// (verifiedSet.verified), so the request asks Redis itself.

// recheckBatch is how many EXISTS go in one pipeline.
const recheckBatch = 512

// backgroundCheck marks the context of the background recheck's
// pipelines, which Redis hooks (the tests') tell apart from the checks
// requests wait for.
type backgroundCheck struct{}

// startRecheck runs the background recheck until Cleanup; a negative
// interval (ask on every request) needs none.
func (s *Store) startRecheck() {
	every := time.Duration(s.RecheckInterval) / 4
	if every <= 0 {
		return
	}
	age := 2 * every
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), backgroundCheck{}, true))
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
			keys := set.due(age)
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
// answers. A key whose check failed (its Cluster master is down) is left
// to age out; the error, returned only when every check failed (Redis
// down: the round stops), is the first failure.
func (s *Store) recheck(ctx context.Context, keys []string) error {
	set := s.feed.set
	q := set.ask()
	var failed error
	answered := false
	for i, cmd := range existsMany(ctx, s.client, keys) {
		switch {
		case cmd.Err() != nil:
			failed = cmp.Or(failed, cmd.Err())
		case cmd.Val() == 1:
			answered = true
			set.verified(keys[i], q)
		default:
			answered = true
			set.forget(keys[i])
		}
	}
	if answered {
		return nil
	}
	return failed
}
