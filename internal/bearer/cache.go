package bearer

import (
	"container/list"
	"hash/maphash"
	"strings"
	"sync"
	"time"
)

const (
	// cacheEntries and cacheBytes bound the verified-token cache: at most
	// this many tokens, and about this much memory for their claims.
	cacheEntries = 10000
	cacheBytes   = 32 << 20
	// entryOverhead is the estimated cost of an entry besides its claims.
	entryOverhead = 512
)

// The cache finds a token by a seeded 64-bit hash (maphash: a tenth of
// the cost of a SHA-256 of a 1 KB token, which was a sixth of an API
// call) and then compares the token itself, which each entry keeps: two
// tokens with the same hash, by chance or by an attacker's design, are
// two different tokens, and the second simply takes the first one's
// place. The token then stays in memory until its verdict expires or is
// evicted, refused ones (a scope missing, the wrong scheme) too: like the
// sessions' tokens in the session cache, never written anywhere. Its
// bytes count in the memory bound.

// verified is a token that passed every check except the per-request
// ones (DPoP proof, and the scope check, whose outcome is kept here).
type verified struct {
	principal Principal // what Verify returns, shared by the token's requests
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

	// hash is maphash with a seed of this process; tests replace it to
	// make tokens collide.
	hash func(token string) uint64

	mu      sync.RWMutex
	entries map[uint64]*list.Element // of *cached, by hash
	order   *list.List               // oldest first
	bytes   int
}

type cached struct {
	key   uint64
	token string
	v     *verified
}

func newTokenCache(max, maxBytes int) *tokenCache {
	seed := maphash.MakeSeed()
	return &tokenCache{
		max: max, maxBytes: maxBytes,
		hash:    func(token string) uint64 { return maphash.String(seed, token) },
		entries: map[uint64]*list.Element{}, order: list.New(),
	}
}

// get returns the verdict for token if it has not expired at now.
func (c *tokenCache) get(token string, now time.Time) *verified {
	key := c.hash(token)
	c.mu.RLock()
	e := c.entries[key]
	var v *verified
	if e != nil {
		if ent := e.Value.(*cached); ent.token == token {
			v = ent.v
		}
	}
	c.mu.RUnlock()
	if v == nil || !now.Before(v.until) {
		return nil
	}
	return v
}

// put remembers v for token, replacing an earlier verdict (of this token
// or of another with the same hash), and evicts the oldest entries beyond
// the bounds. A verdict larger than the memory bound is not kept.
func (c *tokenCache) put(token string, v *verified) {
	size := v.size + len(token)
	if size > c.maxBytes {
		return
	}
	key := c.hash(token)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[key]; e != nil {
		c.remove(e)
	}
	// Its own copy: token is part of the request's header.
	c.entries[key] = c.order.PushBack(&cached{key: key, token: strings.Clone(token), v: v})
	c.bytes += size
	for c.order.Len() > c.max || c.bytes > c.maxBytes {
		c.remove(c.order.Front())
	}
}

func (c *tokenCache) remove(e *list.Element) {
	ent := c.order.Remove(e).(*cached)
	delete(c.entries, ent.key)
	c.bytes -= ent.v.size + len(ent.token)
}
