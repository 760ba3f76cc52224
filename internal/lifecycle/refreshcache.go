package lifecycle

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/oidc-session/oidc_session/sessions"
)

// recentRefreshes remembers, for a short while, the session a refresh
// token was redeemed for. Requests of one session that were in flight with the
// old cookie when it was refreshed present the spent refresh token; they
// get the new tokens instead of being logged out by an IdP that rotates
// refresh tokens.
type recentRefreshes struct {
	ttl     time.Duration
	mu      sync.Mutex
	entries map[string]recentEntry
	swept   time.Time
}

type recentEntry struct {
	session *sessions.Session
	at      time.Time
}

func newRecentRefreshes(ttl time.Duration) *recentRefreshes {
	return &recentRefreshes{ttl: ttl, entries: map[string]recentEntry{}}
}

func (c *recentRefreshes) get(key string, now time.Time) *sessions.Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok && now.Sub(e.at) < c.ttl {
		return e.session
	}
	return nil
}

func (c *recentRefreshes) put(key string, s *sessions.Session, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.swept) > c.ttl {
		for k, e := range c.entries {
			if now.Sub(e.at) >= c.ttl {
				delete(c.entries, k)
			}
		}
		c.swept = now
	}
	c.entries[key] = recentEntry{session: s, at: now}
}

// tokenKey names a refresh token without keeping it in memory as a key.
func tokenKey(refreshToken string) string {
	sum := sha256.Sum256([]byte(refreshToken))
	return string(sum[:])
}

// refreshBackoff spaces out the refresh attempts of a session whose IdP
// could not be reached: one more failure doubles the wait, from
// backoffFirst up to backoffMax, and a success forgets it. Without it
// every request of every such session would call the token endpoint of an
// IdP that is already struggling.
type refreshBackoff struct {
	mu      sync.Mutex
	max     int
	entries map[string]backoffEntry
}

type backoffEntry struct {
	until time.Time
	wait  time.Duration
}

const (
	backoffFirst = time.Second
	backoffMax   = time.Minute
)

func newRefreshBackoff(max int) *refreshBackoff {
	return &refreshBackoff{max: max, entries: map[string]backoffEntry{}}
}

// waiting reports whether the session of this refresh token key must not
// try again yet.
func (b *refreshBackoff) waiting(key string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.entries[key]
	return ok && now.Before(e.until)
}

// failed records a failed attempt and returns how long to wait.
func (b *refreshBackoff) failed(key string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.entries[key]
	switch {
	case !ok:
		e.wait = backoffFirst
	case now.Before(e.until.Add(backoffMax)):
		e.wait = min(2*e.wait, backoffMax)
	default:
		e.wait = backoffFirst // failed long ago: start over
	}
	e.until = now.Add(e.wait)
	if !ok && len(b.entries) >= b.max {
		b.evict(now)
	}
	b.entries[key] = e
	return e.wait
}

// evict makes room: entries whose wait is long over first, else any one.
func (b *refreshBackoff) evict(now time.Time) {
	for k, e := range b.entries {
		if now.After(e.until.Add(backoffMax)) {
			delete(b.entries, k)
		}
	}
	if len(b.entries) >= b.max {
		for k := range b.entries {
			delete(b.entries, k)
			break
		}
	}
}

// succeeded forgets the failures of this refresh token key.
func (b *refreshBackoff) succeeded(key string) {
	b.mu.Lock()
	delete(b.entries, key)
	b.mu.Unlock()
}
