package bearer

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestTokenCacheBounds(t *testing.T) {
	now := time.Now()
	entry := func(size int) *verified { return &verified{until: now.Add(time.Hour), size: size} }

	c := newTokenCache(3, 1000)
	for i := range 5 {
		c.put(fmt.Sprint(i), entry(100))
	}
	// Each entry costs its size and its token's bytes.
	if c.order.Len() != 3 || len(c.entries) != 3 || c.bytes != 303 {
		t.Fatalf("entries %d/%d, bytes %d; want 3, 303", c.order.Len(), len(c.entries), c.bytes)
	}
	for i, want := range []bool{false, false, true, true, true} {
		if got := c.get(fmt.Sprint(i), now) != nil; got != want {
			t.Errorf("token %d cached %v, want %v (oldest evicted first)", i, got, want)
		}
	}

	// The memory bound: big entries push out older ones.
	c = newTokenCache(100, 1000)
	for i := range 4 {
		c.put(fmt.Sprint(i), entry(300))
	}
	if c.bytes > 1000 || c.order.Len() != 3 {
		t.Fatalf("bytes %d entries %d, want <= 1000 and 3", c.bytes, c.order.Len())
	}
	// An entry larger than the whole bound is not kept.
	c.put("huge", entry(997)) // 1001 with its token
	if c.get("huge", now) != nil || c.order.Len() != 3 {
		t.Error("oversized entry kept")
	}
	// Replacing an entry does not count it twice.
	c.put("3", entry(300))
	if c.bytes != 903 || c.order.Len() != 3 {
		t.Errorf("after replace: bytes %d entries %d", c.bytes, c.order.Len())
	}
}

func TestTokenCacheExpiry(t *testing.T) {
	now := time.Now()
	c := newTokenCache(10, 1<<20)
	c.put("t", &verified{until: now.Add(time.Second)})
	if c.get("t", now) == nil {
		t.Fatal("fresh entry missing")
	}
	if c.get("t", now.Add(time.Second)) != nil {
		t.Error("entry served at its expiry")
	}
	if c.get("other", now) != nil {
		t.Error("unknown token found")
	}
}

// TestTokenCacheCollision: tokens whose hashes collide (every hash the
// same here) never find each other's verdict; the later one takes the
// place of the earlier.
func TestTokenCacheCollision(t *testing.T) {
	now := time.Now()
	c := newTokenCache(10, 1<<20)
	c.hash = func(string) uint64 { return 7 }
	alice := &verified{principal: Principal{Subject: "alice"}, until: now.Add(time.Hour)}
	c.put("alice-token", alice)
	if got := c.get("mallory-token", now); got != nil {
		t.Fatalf("a token with the same hash found %q's verdict", got.principal.Subject)
	}
	if got := c.get("alice-token", now); got != alice {
		t.Fatal("alice's token does not find its verdict")
	}
	c.put("mallory-token", &verified{principal: Principal{Subject: "mallory"}, until: now.Add(time.Hour)})
	if got := c.get("alice-token", now); got != nil {
		t.Errorf("alice's token found %q's verdict", got.principal.Subject)
	}
	if got := c.get("mallory-token", now); got == nil || got.principal.Subject != "mallory" {
		t.Error("the later token does not find its own verdict")
	}
	if c.order.Len() != 1 || len(c.entries) != 1 {
		t.Errorf("entries %d/%d, want 1", c.order.Len(), len(c.entries))
	}
}

// TestPrincipalDerived: what a handler derives from a cached token's
// claims is built once, by one of the concurrent requests, and shared; a
// principal outside the cache builds each time.
func TestPrincipalDerived(t *testing.T) {
	var builds atomic.Int32
	build := func() (any, error) { builds.Add(1); return new(int), nil }
	p := Principal{derived: &derivation{}}
	var wg sync.WaitGroup
	results := make([]any, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			copied := p // Derived works the same on a copy as on the shared principal
			results[i], _ = copied.Derived(build)
		}()
	}
	wg.Wait()
	if n := builds.Load(); n != 1 {
		t.Errorf("built %d times, want once", n)
	}
	for _, r := range results[1:] {
		if r != results[0] {
			t.Fatal("the requests got different derivations")
		}
	}
	var uncached Principal
	uncached.Derived(build)
	uncached.Derived(build)
	if n := builds.Load(); n != 3 {
		t.Errorf("a principal without a verdict: %d builds in all, want 3", n)
	}
}
