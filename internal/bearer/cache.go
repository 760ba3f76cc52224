package bearer

import (
	"container/list"
	"crypto/sha256"
	"sync"
	"time"
	"unsafe"
)

const (
	// cacheEntries and cacheBytes bound the verified-token cache: at most
	// this many tokens, and about this much memory for their claims.
	cacheEntries = 10000
	cacheBytes   = 32 << 20
	// entryOverhead is the estimated cost of an entry besides its claims.
	entryOverhead = 512
)

// tokenKey names a token by its SHA-256, so the cache never holds tokens.
type tokenKey [sha256.Size]byte

func keyOf(token string) tokenKey {
	// Hashed in place: a copy of the token would be an allocation on every
	// API call. Sum256 only reads its input.
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

// verified is a token that passed every check except the per-request
// ones (DPoP proof, and the scope check, whose outcome is kept here).
type verified struct {
	principal Principal // DPoP false: set per request
	jkt       string    // cnf.jkt: the DPoP key the token is bound to, or ""
	missing   string    // required scopes the token lacks, space-separated
	until     time.Time // when this verdict expires
	size      int       // estimated memory
}

// tokenCache keeps verified tokens by hash until their verdict expires, in
// at most max entries and about maxBytes. When full, the oldest insertions
// go first: a hot token comes back after one more verification.
type tokenCache struct {
	max      int
	maxBytes int

	mu      sync.RWMutex
	entries map[tokenKey]*list.Element // of *cached
	order   *list.List                 // oldest first
	bytes   int
}

type cached struct {
	key tokenKey
	v   *verified
}

func newTokenCache(max, maxBytes int) *tokenCache {
	return &tokenCache{max: max, maxBytes: maxBytes, entries: map[tokenKey]*list.Element{}, order: list.New()}
}

// get returns the verdict for key if it has not expired at now.
func (c *tokenCache) get(key tokenKey, now time.Time) *verified {
	c.mu.RLock()
	e := c.entries[key]
	var v *verified
	if e != nil {
		v = e.Value.(*cached).v
	}
	c.mu.RUnlock()
	if v == nil || !now.Before(v.until) {
		return nil
	}
	return v
}

// put remembers v under key, replacing an earlier verdict, and evicts the
// oldest entries beyond the bounds. A verdict larger than the memory bound
// is not kept.
func (c *tokenCache) put(key tokenKey, v *verified) {
	if v.size > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[key]; e != nil {
		c.remove(e)
	}
	c.entries[key] = c.order.PushBack(&cached{key: key, v: v})
	c.bytes += v.size
	for c.order.Len() > c.max || c.bytes > c.maxBytes {
		c.remove(c.order.Front())
	}
}

func (c *tokenCache) remove(e *list.Element) {
	ent := c.order.Remove(e).(*cached)
	delete(c.entries, ent.key)
	c.bytes -= ent.v.size
}
