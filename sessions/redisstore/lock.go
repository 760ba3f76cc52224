package redisstore

import (
	"context"
	"crypto/rand"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidc-session/oidc_session/sessions"
)

// The refresh lock is a key next to the session's, set with SET NX PX to a
// random token. Only the holder's token may extend or release it, checked
// and done atomically by these scripts.
var (
	renewScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0`)
	releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`)
)

// errLockTimeout means another holder kept the lock past LockWait.
var errLockTimeout = errors.New("timed out waiting for the session's refresh lock")

// lockPoll is how often a waiting request tries the lock again.
const lockPoll = 25 * time.Millisecond

// Lock implements sessions.Locker.
func (s *Store) Lock(ctx context.Context, value string) (func(), error) {
	t, ok := sessions.ParseTicket(s.Env().CookieName, value)
	if !ok {
		return nil, sessions.ErrNoSession
	}
	key := s.Key(t) + ".lock"
	token := rand.Text()
	ttl := time.Duration(s.LockTTL)
	deadline := time.Now().Add(time.Duration(s.LockWait))
	for {
		got, err := s.client.SetNX(ctx, key, token, ttl).Result()
		if err != nil {
			return nil, unavailable("SET NX", err)
		}
		if got {
			break
		}
		if time.Now().After(deadline) {
			return nil, errLockTimeout
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(lockPoll):
		}
	}

	// Keep the lock alive while the holder works (a slow token call must
	// not let a second instance in with the same refresh token).
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(ttl / 3)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_ = renewScript.Run(context.Background(), s.client, []string{key}, token, ttl.Milliseconds()).Err()
			}
		}
	}()
	release := func() {
		close(stop)
		<-done
		_ = releaseScript.Run(context.Background(), s.client, []string{key}, token).Err()
	}
	return release, nil
}
