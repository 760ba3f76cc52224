package oidcsession

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/oidc-session/oidc_session/oidc"
)

// recentRefreshes remembers, for a short while, the tokens a refresh token
// was redeemed for. Requests of one session that were in flight with the
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
	tokens *oidc.Tokens
	at     time.Time
}

func newRecentRefreshes(ttl time.Duration) *recentRefreshes {
	return &recentRefreshes{ttl: ttl, entries: map[string]recentEntry{}}
}

func (c *recentRefreshes) get(key string) *oidc.Tokens {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok && time.Since(e.at) < c.ttl {
		return e.tokens
	}
	return nil
}

func (c *recentRefreshes) put(key string, t *oidc.Tokens) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if now.Sub(c.swept) > c.ttl {
		for k, e := range c.entries {
			if now.Sub(e.at) >= c.ttl {
				delete(c.entries, k)
			}
		}
		c.swept = now
	}
	c.entries[key] = recentEntry{tokens: t, at: now}
}

// tokenKey names a refresh token without keeping it in memory as a key.
func tokenKey(refreshToken string) string {
	sum := sha256.Sum256([]byte(refreshToken))
	return string(sum[:])
}
