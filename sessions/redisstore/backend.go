package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/oidc-session/oidc_session/sessions"
)

// backend is the sessions.Backend on a Redis client.
type backend struct {
	client redis.UniversalClient
}

func (b backend) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := b.client.Get(ctx, key).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, sessions.ErrNoSession
	case err != nil:
		return nil, unavailable("GET", err)
	}
	return v, nil
}

func (b backend) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := b.client.Set(ctx, key, value, ttl).Err(); err != nil {
		return unavailable("SET", err)
	}
	return nil
}

func (b backend) Delete(ctx context.Context, key string) error {
	if err := b.client.Del(ctx, key).Err(); err != nil {
		return unavailable("DEL", err)
	}
	return nil
}

func unavailable(op string, err error) error {
	return fmt.Errorf("%w: redis %s: %v", sessions.ErrUnavailable, op, err)
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

// zapLogger sends go-redis's own messages (dial retries and the like) to
// Caddy's log at debug level instead of stderr: the store reports what
// matters itself.
type zapLogger struct{}

func (zapLogger) Printf(_ context.Context, format string, v ...any) {
	caddy.Log().Named("redis").Debug(fmt.Sprintf(format, v...))
}

func init() {
	redis.SetLogger(zapLogger{})
}
