package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidc-session/oidc_session/sessions"
)

// backend is the sessions.Backend on a Redis client.
type backend struct {
	client redis.UniversalClient
	feed   *feed
	checks *checkBatcher
}

// Get reads a record. Finding it counts as a check that it exists (see
// Store.Exists): the request that reads a session does not ask again.
func (b backend) Get(ctx context.Context, key string) ([]byte, error) {
	var q question
	if b.feed != nil {
		q = b.feed.set.ask()
	}
	v, err := b.client.Get(ctx, key).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, sessions.ErrNoSession
	case err != nil:
		return nil, unavailable("GET", err)
	}
	if b.feed != nil {
		b.feed.set.verified(key, q)
	}
	return v, nil
}

// Exists asks Redis in the next pipeline of the requests' checks.
func (b backend) Exists(ctx context.Context, key string) (bool, error) {
	found, err := b.checks.exists(ctx, key)
	if err != nil {
		return false, unavailable("EXISTS", err)
	}
	return found, nil
}

func (b backend) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := b.client.Set(ctx, key, value, ttl).Err(); err != nil {
		return unavailable("SET", err)
	}
	return nil
}

func (b backend) Replace(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	ok, err := b.client.SetXX(ctx, key, value, ttl).Result()
	if err != nil {
		return false, unavailable("SET XX", err)
	}
	return ok, nil
}

func (b backend) GetMany(ctx context.Context, keys []string) ([][]byte, error) {
	// One pipelined GET per key rather than MGET: on a Cluster the keys
	// live in different slots, and go-redis splits a pipeline by node.
	cmds := make([]*redis.StringCmd, len(keys))
	_, err := b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Get(ctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("GET", err)
	}
	out := make([][]byte, len(keys))
	for i, c := range cmds {
		if v, err := c.Bytes(); err == nil {
			out[i] = v
		}
	}
	return out, nil
}

// Delete deletes keys, then announces them on the feed, even if some
// deletes failed (a key of a Cluster node that is down): a needless
// announcement costs a check, a missing one a late end. Not in one
// pipeline: on a Cluster its commands go to several nodes at once, and an
// instance must not hear of an end before Redis shows it.
func (b backend) Delete(ctx context.Context, keys ...string) error {
	_, err := b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Del(ctx, k)
		}
		return nil
	})
	b.feed.announce(ctx, keys...)
	if err != nil {
		return unavailable("DEL", err)
	}
	return nil
}

// Indexes are sorted sets scored by each member's expiry; the set expires
// with its latest member. Each script touches one key, so it is atomic and
// works on a Cluster.
var (
	indexAddScript = redis.NewScript(`
redis.call("ZADD", KEYS[1], ARGV[1], ARGV[2])
local top = redis.call("ZRANGE", KEYS[1], -1, -1, "WITHSCORES")
redis.call("EXPIREAT", KEYS[1], math.floor(tonumber(top[2])) + 1)
return 1`)
	indexMembersScript = redis.NewScript(`
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", ARGV[1])
return redis.call("ZRANGE", KEYS[1], 0, -1)`)
)

func (b backend) IndexAdd(ctx context.Context, key, member string, expires time.Time) error {
	if err := indexAddScript.Run(ctx, b.client, []string{key}, expires.Unix(), member).Err(); err != nil {
		return unavailable("ZADD", err)
	}
	return nil
}

func (b backend) IndexMembers(ctx context.Context, key string) ([]string, error) {
	ms, err := indexMembersScript.Run(ctx, b.client, []string{key}, time.Now().Unix()).StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("ZRANGE", err)
	}
	return ms, nil
}

func (b backend) IndexRemove(ctx context.Context, key string, members ...string) error {
	args := make([]any, len(members))
	for i, m := range members {
		args[i] = m
	}
	if err := b.client.ZRem(ctx, key, args...).Err(); err != nil {
		return unavailable("ZREM", err)
	}
	return nil
}

// Scan walks the keyspace with SCAN (never KEYS), on every master of a
// Cluster.
func (b backend) Scan(ctx context.Context, prefix string, fn func(keys []string) error) error {
	scan := func(ctx context.Context, c redis.Cmdable, fn func(keys []string) error) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, globEscape(prefix)+"*", 1000).Result()
			if err != nil {
				return unavailable("SCAN", err)
			}
			if len(keys) > 0 {
				if err := fn(keys); err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	cc, ok := b.client.(*redis.ClusterClient)
	if !ok {
		return scan(ctx, b.client, fn)
	}
	// ForEachMaster scans the masters concurrently: fn is called one batch
	// at a time, and not again once it has failed.
	var mu sync.Mutex
	var fnErr error
	serial := func(keys []string) error {
		mu.Lock()
		defer mu.Unlock()
		if fnErr == nil {
			fnErr = fn(keys)
		}
		return fnErr
	}
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c, serial) })
	if fnErr != nil {
		return fnErr // fn's own error, not another master's
	}
	return err
}

// globEscape quotes the characters SCAN MATCH treats as a pattern.
func globEscape(s string) string {
	var sb strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			sb.WriteByte('\\')
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

func unavailable(op string, err error) error {
	return fmt.Errorf("%w: redis %s: %w", sessions.ErrUnavailable, op, err)
}

// Ping implements sessions.Pinger; on a Cluster every master must answer.
func (s *Store) Ping(ctx context.Context) error {
	var err error
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.Ping(ctx).Err()
		})
	} else {
		err = s.client.Ping(ctx).Err()
	}
	if err != nil {
		return unavailable("PING", err)
	}
	return nil
}
