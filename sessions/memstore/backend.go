package memstore

import (
	"bytes"
	"container/heap"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/oidc-session/oidc_session/sessions"
)

// scanBatch is how many keys Scan hands its callback at a time.
const scanBatch = 1000

// state is the memory that the stores sharing one pool key keep their
// records in: it implements sessions.Backend. Values are immutable once
// stored (Set replaces the slice, never writes into it), so a snapshot for
// the state file can refer to them after the lock is released.
//
// Expired entries are never returned; they are removed by sweep, by the
// operations that touch them, or by eviction.
type state struct {
	mu      sync.RWMutex
	values  map[string]*entry
	records recordHeap // the session records (not .meta), by expiry
	indexes map[string]*index
	// max bounds len(records): a Set of a new session record beyond it
	// evicts the records closest to expiry.
	max int
	// gen counts changes, so the saver knows when there is something new.
	gen uint64
	// evicted counts the records evicted for max, for the periodic log.
	evicted uint64
	// locks are the refresh locks of the sessions (see lock.go).
	locks keyLocks

	// The state file and the background goroutine (see memstore.go).
	file   string
	stop   chan struct{}
	done   chan struct{}
	saved  uint64 // gen of the last save; the background goroutine's, then Destruct's
	logged uint64 // evicted when last logged; the background goroutine's
	logger *zap.Logger
}

type entry struct {
	key string
	val []byte
	exp int64 // unix nanoseconds
	// ri is the entry's position in records, -1 for a metadata record.
	ri int
	// in names the indexes that list this session record as a member
	// (TicketStore's index members are record keys when there is no key
	// prefix, which the memory store never has), so that an evicted
	// session also leaves its indexes.
	in []string
}

func newState(max int) *state {
	return &state{values: map[string]*entry{}, indexes: map[string]*index{}, max: max}
}

// isRecordKey tells a session record from its metadata, in the layout of
// sessions.TicketStore.
func isRecordKey(key string) bool { return !sessions.IsMetaKey(key) }

func now() int64 { return time.Now().UnixNano() }

// Get implements sessions.Backend.
func (st *state) Get(_ context.Context, key string) ([]byte, error) {
	t := now()
	st.mu.RLock()
	defer st.mu.RUnlock()
	e := st.values[key]
	if e == nil || e.exp <= t {
		return nil, sessions.ErrNoSession
	}
	return bytes.Clone(e.val), nil
}

// Exists implements sessions.Backend.
func (st *state) Exists(_ context.Context, key string) (bool, error) {
	t := now()
	st.mu.RLock()
	defer st.mu.RUnlock()
	e := st.values[key]
	return e != nil && e.exp > t, nil
}

// Replace implements sessions.Backend.
func (st *state) Replace(_ context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	v := bytes.Clone(value)
	t := now()
	st.mu.Lock()
	defer st.mu.Unlock()
	e := st.values[key]
	if e == nil || e.exp <= t {
		return false, nil
	}
	st.gen++
	st.put(key, v, t+int64(ttl), true)
	return true, nil
}

// GetMany implements sessions.Backend.
func (st *state) GetMany(_ context.Context, keys []string) ([][]byte, error) {
	t := now()
	out := make([][]byte, len(keys))
	st.mu.RLock()
	defer st.mu.RUnlock()
	for i, k := range keys {
		if e := st.values[k]; e != nil && e.exp > t {
			out[i] = bytes.Clone(e.val)
		}
	}
	return out, nil
}

// Set implements sessions.Backend. A new session record beyond max evicts
// the records closest to expiry first (with their metadata and index
// entries).
func (st *state) Set(_ context.Context, key string, value []byte, ttl time.Duration) error {
	v := make([]byte, len(value)) // never nil: nil means "missing" in GetMany
	copy(v, value)
	exp := time.Now().Add(ttl).UnixNano()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.gen++
	if ttl <= 0 {
		st.remove(key)
		return nil
	}
	st.put(key, v, exp, true)
	return nil
}

// put stores a value; enforce applies max to a new session record.
// st.mu must be held.
func (st *state) put(key string, v []byte, exp int64, enforce bool) {
	if e := st.values[key]; e != nil {
		e.val, e.exp = v, exp
		if e.ri >= 0 {
			heap.Fix(&st.records, e.ri)
		}
		return
	}
	e := &entry{key: key, val: v, exp: exp, ri: -1}
	if isRecordKey(key) {
		if enforce {
			for len(st.records) > 0 && len(st.records) >= st.max {
				st.evictOne()
			}
		}
		heap.Push(&st.records, e)
	}
	st.values[key] = e
}

// evictOne removes the session record closest to expiry, its metadata and
// its index entries. st.mu must be held.
func (st *state) evictOne() {
	e := heap.Pop(&st.records).(*entry)
	delete(st.values, e.key)
	st.remove(sessions.MetaKey(e.key))
	for _, ik := range e.in {
		st.indexRemove(ik, e.key)
	}
	if e.exp > now() {
		st.evicted++
	}
}

// trim evicts records until there are at most max. st.mu must be held.
func (st *state) trim() {
	for len(st.records) > st.max {
		st.evictOne()
	}
}

// remove deletes a value. st.mu must be held.
func (st *state) remove(key string) bool {
	e := st.values[key]
	if e == nil {
		return false
	}
	delete(st.values, key)
	if e.ri >= 0 {
		heap.Remove(&st.records, e.ri)
	}
	return true
}

// Delete implements sessions.Backend.
func (st *state) Delete(_ context.Context, keys ...string) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, k := range keys {
		if st.remove(k) {
			st.gen++
		}
	}
	return nil
}

// IndexAdd implements sessions.Backend.
func (st *state) IndexAdd(_ context.Context, key, member string, expires time.Time) error {
	t := now()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.gen++
	ix := st.indexes[key]
	if ix == nil {
		ix = &index{}
		st.indexes[key] = ix
	}
	ix.prune(t)
	ix.add(member, expires.UnixNano())
	if e := st.values[member]; e != nil && e.ri >= 0 && !slices.Contains(e.in, key) {
		e.in = append(e.in, key)
	}
	return nil
}

// IndexMembers implements sessions.Backend. Expired members are left for
// the sweeper, so that readers share the lock.
func (st *state) IndexMembers(_ context.Context, key string) ([]string, error) {
	t := now()
	st.mu.RLock()
	defer st.mu.RUnlock()
	ix := st.indexes[key]
	if ix == nil {
		return nil, nil
	}
	out := make([]string, 0, len(ix.members))
	for _, m := range ix.members {
		if m.exp > t {
			out = append(out, m.name)
		}
	}
	return out, nil
}

// IndexRemove implements sessions.Backend.
func (st *state) IndexRemove(_ context.Context, key string, members ...string) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, m := range members {
		if st.indexRemove(key, m) {
			st.gen++
		}
	}
	return nil
}

// indexRemove removes a member, and the set once empty. st.mu must be held.
func (st *state) indexRemove(key, member string) bool {
	ix := st.indexes[key]
	if ix == nil {
		return false
	}
	i := ix.find(member)
	if i < 0 {
		return false
	}
	ix.removeAt(i)
	if len(ix.members) == 0 {
		delete(st.indexes, key)
	}
	return true
}

// Scan implements sessions.Backend: the keys (values and index sets) that
// start with prefix and are live when it starts, each once. The keys are
// collected under the lock and handed to fn without it, so fn may use the
// backend.
func (st *state) Scan(ctx context.Context, prefix string, fn func(keys []string) error) error {
	t := now()
	var keys []string
	st.mu.RLock()
	for k, e := range st.values {
		if e.exp > t && strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	for k, ix := range st.indexes {
		if strings.HasPrefix(k, prefix) && ix.live(t) {
			keys = append(keys, k)
		}
	}
	st.mu.RUnlock()
	for len(keys) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(len(keys), scanBatch)
		if err := fn(keys[:n:n]); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

// sweep removes what expired by t (unix nanoseconds).
func (st *state) sweep(t int64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	changed := false
	for k, e := range st.values {
		if e.exp <= t {
			delete(st.values, k)
			if e.ri >= 0 {
				heap.Remove(&st.records, e.ri)
			}
			changed = true
		}
	}
	for k, ix := range st.indexes {
		if ix.prune(t) {
			changed = true
		}
		if len(ix.members) == 0 {
			delete(st.indexes, k)
		}
	}
	if changed {
		st.gen++
	}
}

// setMax changes the bound and applies it at once.
func (st *state) setMax(max int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.max = max
	n := len(st.records)
	st.trim()
	if len(st.records) != n {
		st.gen++
	}
}

// recordHeap orders session records by expiry, soonest first.
type recordHeap []*entry

func (h recordHeap) Len() int           { return len(h) }
func (h recordHeap) Less(i, j int) bool { return h[i].exp < h[j].exp }
func (h recordHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].ri, h[j].ri = i, j
}
func (h *recordHeap) Push(x any) {
	e := x.(*entry)
	e.ri = len(*h)
	*h = append(*h, e)
}
func (h *recordHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.ri = -1
	return e
}

// index is a set of members, each with its expiry. Sets are small (one
// user's or one IdP session's sessions) and kept as a slice; a set that
// grows large (a shared account) also gets a map from member to position.
type index struct {
	members []member
	pos     map[string]int
}

type member struct {
	name string
	exp  int64
}

const indexMapAt = 16

func (ix *index) find(name string) int {
	if ix.pos != nil {
		if i, ok := ix.pos[name]; ok {
			return i
		}
		return -1
	}
	for i := range ix.members {
		if ix.members[i].name == name {
			return i
		}
	}
	return -1
}

func (ix *index) add(name string, exp int64) {
	if i := ix.find(name); i >= 0 {
		ix.members[i].exp = exp
		return
	}
	ix.members = append(ix.members, member{name, exp})
	switch {
	case ix.pos != nil:
		ix.pos[name] = len(ix.members) - 1
	case len(ix.members) > indexMapAt:
		ix.pos = make(map[string]int, len(ix.members))
		for i, m := range ix.members {
			ix.pos[m.name] = i
		}
	}
}

func (ix *index) removeAt(i int) {
	last := len(ix.members) - 1
	if ix.pos != nil {
		delete(ix.pos, ix.members[i].name)
		if i != last {
			ix.pos[ix.members[last].name] = i
		}
	}
	ix.members[i] = ix.members[last]
	ix.members[last] = member{}
	ix.members = ix.members[:last]
	if ix.pos != nil && len(ix.members) <= indexMapAt/2 {
		ix.pos = nil
	}
}

// prune removes the members expired by t and reports whether there were any.
func (ix *index) prune(t int64) bool {
	pruned := false
	for i := len(ix.members) - 1; i >= 0; i-- {
		if ix.members[i].exp <= t {
			ix.removeAt(i)
			pruned = true
		}
	}
	return pruned
}

func (ix *index) live(t int64) bool {
	for _, m := range ix.members {
		if m.exp > t {
			return true
		}
	}
	return false
}

var _ sessions.Backend = (*state)(nil)
