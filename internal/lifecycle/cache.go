package lifecycle

import (
	"strings"
	"sync"

	"github.com/oidc-session/oidc_session/sessions"
)

// cache keeps decoded sessions by cookie value, so a request with a
// session seen before skips decryption and decompression, which otherwise
// dominate the cost of an authenticated request. It holds nothing the
// cookie does not: the same value always decodes to the same session.
//
// A server-side session may be ended elsewhere (another instance, an
// operator, the IdP): for such stores a cached session is used only after
// the store's cheap existence check (sessions.Checker), and refreshes
// always read the store.
type cache struct {
	mu      sync.RWMutex
	max     int
	entries map[string]*sessions.Session
}

func newCache(max int) *cache {
	return &cache{max: max, entries: make(map[string]*sessions.Session)}
}

// get returns a copy of the cached session the caller may change (the
// handler only replaces fields, never edits slices or maps in place).
func (c *cache) get(value string) *sessions.Session {
	c.mu.RLock()
	s := c.entries[value]
	c.mu.RUnlock()
	if s == nil {
		return nil
	}
	cp := *s
	return &cp
}

// put remembers a copy of s under value. When full, an arbitrary entry
// makes room (map iteration order is random): hot sessions come back at
// once, cold ones cost one decode.
func (c *cache) put(value string, s *sessions.Session) {
	cp := *s
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[value]; !ok {
		if len(c.entries) >= c.max {
			for k := range c.entries {
				delete(c.entries, k)
				break
			}
		}
		// Its own copy: value may be part of a much larger Cookie header,
		// which would otherwise stay in memory with it.
		value = strings.Clone(value)
	}
	c.entries[value] = &cp
}

func (c *cache) drop(value string) {
	c.mu.Lock()
	delete(c.entries, value)
	c.mu.Unlock()
}
