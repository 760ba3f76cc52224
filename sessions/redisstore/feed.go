package redisstore

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// feed is how the instances sharing a Redis tell each other, at once, of
// the sessions that end (logout, the admin API, back-channel logout, the
// per-user limit): the instance that deletes a session's record publishes
// its key on a channel every instance subscribes to. Knowing it will hear
// of every end, an instance can take a session it found in Redis a moment
// ago as still there without asking again (see verifiedSet and
// Store.Exists), which saves the round trip that otherwise dominates an
// authenticated request.
//
// One feed serves every handler on the same connection and key prefix, and
// lives across config reloads like the client.
type feed struct {
	client  redis.UniversalClient
	channel string
	logger  *zap.Logger
	set     *verifiedSet

	cancel context.CancelFunc
	done   chan struct{}

	mu sync.Mutex
	ps *redis.PubSub // the current subscription, closed by Destruct to end a blocked read
}

// feedChannel is the channel name after the key prefix, so that an ACL
// granting a deployment its prefix (~prefix* &prefix*) covers both.
const feedChannel = "oidc_session:ended"

// pingEvery is how often a quiet feed pings Redis to know its connection
// is alive; see heardWithin.
const pingEvery = time.Second

// verifiedMax bounds the records an instance remembers as found (about
// 150 bytes each): past it the set starts over, and every session costs
// one more EXISTS.
const verifiedMax = 1 << 18

var feeds = caddy.NewUsagePool()

// useFeed returns the shared feed for a connection (its pool key) and key
// prefix, starting it if it is the first user. Release with releaseFeed.
func useFeed(poolKey, prefix string, client redis.UniversalClient, logger *zap.Logger) (*feed, error) {
	val, _, err := feeds.LoadOrNew(feedKey(poolKey, prefix), func() (caddy.Destructor, error) {
		ctx, cancel := context.WithCancel(context.Background())
		f := &feed{
			client:  client,
			channel: prefix + feedChannel,
			logger:  logger,
			set:     newVerifiedSet(verifiedMax),
			cancel:  cancel,
			done:    make(chan struct{}),
		}
		go f.run(ctx)
		return f, nil
	})
	if err != nil {
		return nil, err
	}
	return val.(*feed), nil
}

func releaseFeed(poolKey, prefix string) error {
	_, err := feeds.Delete(feedKey(poolKey, prefix))
	return err
}

func feedKey(poolKey, prefix string) string { return poolKey + "\x00" + prefix }

// Destruct stops the subscription.
func (f *feed) Destruct() error {
	f.cancel()
	f.setPubSub(nil)
	<-f.done
	return nil
}

// setPubSub makes ps the current subscription, closing the one before.
func (f *feed) setPubSub(ps *redis.PubSub) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ps != nil {
		f.ps.Close()
	}
	f.ps = ps
}

// run keeps the subscription up until the feed is destroyed. It never
// blocks a caller: while Redis is down it retries in the background, and
// the store checks Redis on every request meanwhile.
func (f *feed) run(ctx context.Context) {
	defer close(f.done)
	var ps *redis.PubSub
	defer f.setPubSub(nil)
	startOver := func() {
		f.setPubSub(nil)
		ps = nil
	}
	warned := false
	lost := func(why error) {
		if f.set.isSubscribed() || !warned {
			f.logger.Warn("no subscription to ended sessions; checking Redis on every request until there is one",
				zap.String("channel", f.channel), zap.Error(why))
			warned = true
		}
		f.set.unsubscribe()
	}
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		if ps == nil {
			ps = f.client.Subscribe(ctx)
			f.setPubSub(ps)
			if ctx.Err() != nil {
				return // destroyed meanwhile: Destruct may have missed ps
			}
			if err := ps.Subscribe(ctx, f.channel); err != nil {
				// go-redis keeps the channel and subscribes again when
				// it reconnects, on the next receive.
				lost(err)
			}
		}
		msg, err := ps.ReceiveTimeout(ctx, pingEvery)
		switch {
		case ctx.Err() != nil:
			return
		case isTimeout(err):
			if time.Duration(f.set.now()-f.set.heard.Load()) > 3*pingEvery {
				// Pings go unanswered: a connection that died without
				// an error. Start over with a new one.
				lost(errors.New("no answer to ping"))
				startOver()
			} else if err := ps.Ping(ctx); err != nil {
				lost(err)
			}
			continue
		case err != nil:
			lost(err)
			var rerr redis.Error
			if errors.As(err, &rerr) {
				// Refused (NOPERM, ...) on a working connection, which
				// go-redis keeps without subscribing again: start over, so
				// that the subscription comes once the ACL allows it.
				startOver()
			}
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Message:
			f.set.alive()
			f.set.ended(m.Payload)
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == f.channel {
				if !f.set.isSubscribed() {
					f.logger.Debug("subscribed to ended sessions", zap.String("channel", f.channel))
				}
				f.set.subscribe()
			}
		case *redis.Pong:
			f.set.alive()
		}
	}
}

// announce tells every instance (this one first) that the records under
// keys are gone. It is called after they were deleted: an instance that
// checks Redis before hearing it then finds them missing already. It goes
// out even if the request that ended the session has gone away. A failed
// announcement does not undo the end: the other instances notice it at
// their next check, within recheck_interval.
func (f *feed) announce(ctx context.Context, keys ...string) {
	if f == nil {
		return // a backend used alone (its conformance test) announces nothing
	}
	for _, k := range keys {
		f.set.ended(k)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := f.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Publish(ctx, f.channel, k)
		}
		return nil
	})
	if err != nil {
		f.logger.Warn("could not announce an ended session; other instances notice it within recheck_interval",
			zap.String("channel", f.channel), zap.Error(err))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

var _ caddy.Destructor = (*feed)(nil)
