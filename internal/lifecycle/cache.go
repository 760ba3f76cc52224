package lifecycle

import (
	"crypto/sha256"
	"sync"

	"github.com/oidc-session/oidc_session/sessions"
)

// cache keeps decoded sessions by cookie value, so a request with a
// session seen before skips decryption and decoding, which otherwise
// dominate the cost of an authenticated request. It holds nothing the
// cookie does not: the same value always decodes to the same session.
//
// Entries are keyed by the SHA-256 of the value, not the value (a cookie
// value is 1-2 KB): 32 bytes per entry. The hash must resist collisions:
// with a non-cryptographic one an attacker could make a value of their own
// that lands on someone else's entry and be served that session.
//
// Sessions are kept compact (sessions.Compact): the record as the store
// read it, tokens encoded (and deflated) until a refresh or a logout needs
// them, identity decoded again at each hit (well under a microsecond).
// One string per entry rather than a Session's dozen pointers: with a
// hundred thousand entries, the garbage collector's marking of a
// pointer-rich cache cost more than the decoding saves. Sessions whose
// tokens every request reads (Config.Tokens), and those too large for a
// compact form, are kept decoded.
//
// A server-side session may be ended elsewhere (another instance, an
// operator, the IdP): for such stores a cached session is used only after
// the store's cheap existence check (sessions.Checker), and refreshes
// always read the store.
type cache struct {
	mu      sync.RWMutex
	max     int
	entries map[cacheKey]entry
}

// entry is one cached session: compact, or else decoded.
type entry struct {
	compact sessions.Compact
	decoded *sessions.Session
}

type cacheKey [sha256.Size]byte

// keyOf hashes value through a small buffer: sha256.Sum256([]byte(value))
// would copy the whole value to the heap first.
func keyOf(value string) (key cacheKey) {
	h := sha256.New()
	var buf [512]byte
	for len(value) > 0 {
		n := copy(buf[:], value)
		h.Write(buf[:n])
		value = value[n:]
	}
	h.Sum(key[:0])
	return key
}

func newCache(max int) *cache {
	return &cache{max: max, entries: make(map[cacheKey]entry)}
}

// get returns the cached session, a copy the caller may change (the
// handler only replaces fields, never edits slices or maps in place).
func (c *cache) get(key cacheKey) *sessions.Session {
	c.mu.RLock()
	e, ok := c.entries[key]
	c.mu.RUnlock()
	switch {
	case !ok:
		return nil
	case e.decoded != nil:
		cp := *e.decoded
		return &cp
	}
	s, err := e.compact.Session()
	if err != nil {
		return nil // cannot happen: it was decoded before; read the store again
	}
	return s
}

// put remembers s under key: compact when it can be, as read (a session
// just loaded, unchanged: no re-encoding) or encoded anew. When full, an
// arbitrary entry makes room (map iteration order is random): hot
// sessions come back at once, cold ones cost one decode.
func (c *cache) put(key cacheKey, s *sessions.Session, asRead, decoded bool) {
	var e entry
	var ok bool
	switch {
	case decoded:
	case asRead:
		e.compact, ok = s.Compact()
	default:
		e.compact, ok = sessions.CompactOf(s)
	}
	if !ok {
		cp := *s
		e.decoded = &cp
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.max {
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[key] = e
}

func (c *cache) drop(key cacheKey) {
	c.mu.Lock()
	delete(c.entries, key)
	c.mu.Unlock()
}
