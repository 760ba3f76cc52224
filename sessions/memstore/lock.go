package memstore

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/oidc-session/oidc_session/sessions"
)

// Refresh locks. Every handler that names the same memory (a site with
// two oidc_session blocks, say) keeps its own decoded copies of a session;
// without a lock, one handler could refresh from a copy whose refresh token
// the other had just redeemed, and an IdP that revokes the whole token
// family on reuse would end the session for both. The locks live in the
// shared state, so all those handlers take the same one.

// lockWait bounds how long a refresh waits for another one of the same
// session (which is itself bounded by the IdP timeout).
const lockWait = 15 * time.Second

var errLockTimeout = errors.New("timed out waiting for the session's refresh lock")

// keyLocks is a set of mutexes by key that can be waited for with a
// context; an unused key takes no memory.
type keyLocks struct {
	mu   sync.Mutex
	held map[string]*keyLock
}

type keyLock struct {
	ch    chan struct{} // holds a token while locked
	users int           // holders and waiters
}

func (l *keyLocks) lock(ctx context.Context, key string) (func(), error) {
	l.mu.Lock()
	if l.held == nil {
		l.held = map[string]*keyLock{}
	}
	kl := l.held[key]
	if kl == nil {
		kl = &keyLock{ch: make(chan struct{}, 1)}
		l.held[key] = kl
	}
	kl.users++
	l.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, lockWait)
	defer cancel()
	select {
	case kl.ch <- struct{}{}:
		var once sync.Once
		return func() {
			once.Do(func() {
				<-kl.ch
				l.leave(key, kl)
			})
		}, nil
	case <-ctx.Done():
		l.leave(key, kl)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, errLockTimeout
		}
		return nil, ctx.Err()
	}
}

func (l *keyLocks) leave(key string, kl *keyLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if kl.users--; kl.users == 0 {
		delete(l.held, key)
	}
}

// Lock implements sessions.Locker, within this Caddy process.
func (s *Store) Lock(ctx context.Context, value string) (func(), error) {
	key, ok := s.RecordKey(value)
	if !ok {
		return nil, sessions.ErrNoSession
	}
	return s.state.locks.lock(ctx, key)
}

// Interface guards
var _ sessions.Locker = (*Store)(nil)
