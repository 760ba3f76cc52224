package redisstore

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// verifiedSet remembers the session records this instance has seen in
// Redis, so that a request of a session seen a moment ago needs no round
// trip to learn that it has not ended. It is only as good as the feed of
// ended sessions that empties it: an entry is trusted only while the feed
// is subscribed and has been heard from recently, and every change of the
// feed's state (an announcement, a lost or new subscription) makes a check
// that was under way when it happened count for nothing, since its answer
// may predate an announcement this instance did not hear.
type verifiedSet struct {
	start time.Time // the set's clock: monotonic time since start

	mu         sync.RWMutex
	subscribed bool
	gen        uint64 // changes with every announcement and every change of subscription
	entries    map[string]*verifiedEntry
	max        int

	heard atomic.Int64 // when the feed last heard from Redis
}

// verifiedEntry is what the set knows of one record.
type verifiedEntry struct {
	at   atomic.Int64 // when Redis last said it exists
	used atomic.Int64 // when a request last took it as trusted
}

// heardWithin is how recently the feed must have heard from Redis (an
// announcement, or the answer to the ping it sends every second when
// quiet) for its silence to mean that nothing has ended: past it, a
// connection that died without an error is no longer trusted.
const heardWithin = 2 * time.Second

func newVerifiedSet(max int) *verifiedSet {
	return &verifiedSet{start: time.Now(), entries: make(map[string]*verifiedEntry), max: max}
}

func (v *verifiedSet) now() int64 { return int64(time.Since(v.start)) }

// trusted reports whether key was found in Redis less than maxAge ago and
// no announcement of its end can have been missed since.
func (v *verifiedSet) trusted(key string, maxAge time.Duration) bool {
	now := v.now()
	if now-v.heard.Load() > int64(heardWithin) {
		return false
	}
	v.mu.RLock()
	e := v.entries[key]
	subscribed := v.subscribed
	v.mu.RUnlock()
	if e == nil || !subscribed {
		return false
	}
	e.used.Store(now)
	return now-e.at.Load() < int64(maxAge)
}

// due returns the keys taken as trusted by a request since their last
// check, when that check is older than age: what the background recheck
// asks Redis about, so that the sessions in use are checked off the
// request path.
func (v *verifiedSet) due(age time.Duration) []string {
	now := v.now()
	v.mu.RLock()
	defer v.mu.RUnlock()
	var keys []string
	for k, e := range v.entries {
		if at := e.at.Load(); e.used.Load() > at && now-at >= int64(age) {
			keys = append(keys, k)
		}
	}
	return keys
}

// forget drops key because Redis said it does not exist: the next request
// asks Redis itself. Unlike ended, it says nothing of announcements.
func (v *verifiedSet) forget(key string) {
	v.mu.Lock()
	delete(v.entries, key)
	v.mu.Unlock()
}

// generation counts announcements and subscription changes.
func (v *verifiedSet) generation() uint64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.gen
}

// question is when a check of Redis was asked: its generation and time.
type question struct {
	gen uint64
	at  int64 // v.now()
}

// ask is taken before asking Redis whether a record exists, and handed to
// verified with the answer.
func (v *verifiedSet) ask() question {
	return question{gen: v.generation(), at: v.now()}
}

// verified records that Redis said key exists, in an answer to question q.
// If anything was announced or the subscription changed since, the answer
// may be older than an end this instance heard of (or missed), and is not
// kept. The key is trusted from when the question was asked, not from
// when the answer came: a slow answer (a long pipeline, a busy Redis)
// must not stretch recheck_interval.
func (v *verifiedSet) verified(key string, q question) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.subscribed || q.gen != v.gen {
		return
	}
	e := v.entries[key]
	if e == nil {
		if len(v.entries) >= v.max {
			// Full: start over. Each session then costs one more check.
			clear(v.entries)
		}
		e = &verifiedEntry{}
		// Used when asked: renewed in the background only if a request
		// takes it as trusted after this.
		e.used.Store(q.at)
		// Its own copy: key may be part of a much larger Cookie header.
		v.entries[strings.Clone(key)] = e
	}
	e.at.Store(q.at)
}

// ended forgets key: its session has ended. It says nothing of the
// feed's health: this instance's own ends go through it too.
func (v *verifiedSet) ended(key string) {
	v.mu.Lock()
	delete(v.entries, key)
	v.gen++
	v.mu.Unlock()
}

// subscribe is called when Redis confirms a subscription: from now on
// every end is heard. Ends announced before it may have been missed (go-redis
// can replace the connection without reporting an error), so whatever was
// verified before is checked again.
func (v *verifiedSet) subscribe() {
	v.heard.Store(v.now())
	v.mu.Lock()
	v.subscribed = true
	v.gen++
	clear(v.entries)
	v.mu.Unlock()
}

// unsubscribe is called when the subscription is lost: ends may go
// unheard, so nothing is trusted until Redis confirms a new one, and
// everything must be checked again then.
func (v *verifiedSet) unsubscribe() {
	v.mu.Lock()
	v.subscribed = false
	v.gen++
	clear(v.entries)
	v.mu.Unlock()
}

// alive records that the feed heard from Redis (the answer to a ping).
func (v *verifiedSet) alive() { v.heard.Store(v.now()) }

// listening reports whether the feed is subscribed and has heard from
// Redis recently: whether trusted can say yes at all.
func (v *verifiedSet) listening() bool {
	return v.isSubscribed() && v.now()-v.heard.Load() <= int64(heardWithin)
}

func (v *verifiedSet) isSubscribed() bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.subscribed
}
