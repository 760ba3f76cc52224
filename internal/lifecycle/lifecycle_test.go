package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/storetest"
)

// The lifecycle against a fake store and a fake IdP, on a clock the tests
// move: no Redis, no IdP, no sleeps.

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fakeStore keeps copies of sessions by value. Shared, it is a Checker and
// a Locker too (see sharedStore).
type fakeStore struct {
	mu      sync.Mutex
	n       int
	records map[string]sessions.Session
	loads   atomic.Int32
	exists  atomic.Int32
	down    atomic.Bool
	// beforeSave, when set, runs before a Save updates a record.
	beforeSave func(value string)
}

func newFakeStore() *fakeStore { return &fakeStore{records: map[string]sessions.Session{}} }

var errDown = fmt.Errorf("%w: test store down", sessions.ErrUnavailable)

func (f *fakeStore) Bind(sessions.Env) error { return nil }

func (f *fakeStore) Load(_ context.Context, value string) (*sessions.Session, error) {
	f.loads.Add(1)
	if f.down.Load() {
		return nil, errDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.records[value]
	if !ok {
		return nil, sessions.ErrNoSession
	}
	return &s, nil
}

func (f *fakeStore) Save(_ context.Context, prev string, s *sessions.Session) (string, error) {
	if f.down.Load() {
		return "", errDown
	}
	if prev != "" && f.beforeSave != nil {
		f.beforeSave(prev)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if prev == "" {
		f.n++
		prev = fmt.Sprintf("v%d", f.n)
	} else if _, ok := f.records[prev]; !ok {
		return "", sessions.ErrNoSession // updates never bring an ended session back
	}
	f.records[prev] = *s
	return prev, nil
}

func (f *fakeStore) Delete(_ context.Context, value string) error {
	if f.down.Load() {
		return errDown
	}
	f.mu.Lock()
	delete(f.records, value)
	f.mu.Unlock()
	return nil
}

func (f *fakeStore) stored(value string) (sessions.Session, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.records[value]
	return s, ok
}

// sharedStore is fakeStore as a shared store, with a lock per value.
type sharedStore struct {
	*fakeStore
	locks   sync.Map // value -> *sync.Mutex
	lockErr error
}

func (s *sharedStore) Exists(_ context.Context, value string) (bool, error) {
	s.exists.Add(1)
	if s.down.Load() {
		return false, errDown
	}
	_, ok := s.stored(value)
	return ok, nil
}

func (s *sharedStore) Lock(_ context.Context, value string) (func(), error) {
	if s.lockErr != nil {
		return nil, s.lockErr
	}
	m, _ := s.locks.LoadOrStore(value, new(sync.Mutex))
	m.(*sync.Mutex).Lock()
	return m.(*sync.Mutex).Unlock, nil
}

// fakeIdP refreshes sessions: new tokens valid for ttl, the refresh token
// rotated and a spent one refused, as strict IdPs do.
type fakeIdP struct {
	clock *clock
	ttl   time.Duration
	mu    sync.Mutex
	spent map[string]bool
	calls atomic.Int32
	fail  atomic.Pointer[error] // error to return, or nil
	// gate, when set, is waited for inside every call.
	gate chan struct{}
}

func newFakeIdP(c *clock) *fakeIdP {
	return &fakeIdP{clock: c, ttl: 5 * time.Minute, spent: map[string]bool{}}
}

func (p *fakeIdP) setFail(err error) { p.fail.Store(&err) }

func (p *fakeIdP) Refresh(_ context.Context, s *sessions.Session) (*sessions.Session, error) {
	n := p.calls.Add(1)
	if p.gate != nil {
		<-p.gate
	}
	if err := p.fail.Load(); err != nil {
		return nil, *err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.spent[s.RefreshToken] {
		return nil, fmt.Errorf("%w: refresh token reused", ErrRefused)
	}
	p.spent[s.RefreshToken] = true
	out := *s
	now := p.clock.Now()
	out.AccessToken = fmt.Sprintf("at-%d", n)
	out.RefreshToken = fmt.Sprintf("rt-%d", n)
	out.TokenIssued, out.TokenExpiry = now, now.Add(p.ttl)
	return &out, nil
}

// ends records the Ended hook.
type ends struct {
	mu      sync.Mutex
	reasons []Reason
}

func (e *ends) hook(_ *sessions.Session, r Reason) {
	e.mu.Lock()
	e.reasons = append(e.reasons, r)
	e.mu.Unlock()
}
func (e *ends) list() []Reason {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Reason(nil), e.reasons...)
}

type fixture struct {
	clock *clock
	store sessions.Store
	idp   *fakeIdP
	ends  *ends
}

func newFixture(store sessions.Store) *fixture {
	c := &clock{now: t0}
	return &fixture{clock: c, store: store, idp: newFakeIdP(c), ends: &ends{}}
}

func (f *fixture) keeper(t *testing.T, idle time.Duration) *Keeper {
	t.Helper()
	caps, err := sessions.CapabilitiesOf(f.store)
	if err != nil {
		t.Fatal(err)
	}
	return New(Config{
		Store: f.store, Capabilities: caps, Issuer: "https://idp.example",
		IdleTimeout: idle, RefreshMargin: time.Minute, Refresher: f.idp,
		Hooks: Hooks{Ended: f.ends.hook}, Now: f.clock.Now,
	})
}

// login starts a session whose tokens are valid for 5 minutes.
func (f *fixture) login(t *testing.T, k *Keeper) string {
	t.Helper()
	now := f.clock.Now()
	c, err := k.Start(context.Background(), "", &sessions.Session{
		Subject: "alice", AccessToken: "at-0", RefreshToken: "rt-0",
		TokenIssued: now, TokenExpiry: now.Add(5 * time.Minute),
		CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(8 * time.Hour),
	})
	if err != nil || c.Action != Write || c.Value == "" {
		t.Fatalf("Start: %+v, %v", c, err)
	}
	return c.Value
}

func current(t *testing.T, k *Keeper, value string) (*sessions.Session, Cookie) {
	t.Helper()
	s, c, err := k.Current(context.Background(), value)
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	return s, c
}

func TestCurrentWithoutSession(t *testing.T) {
	f := newFixture(newFakeStore())
	k := f.keeper(t, 0)
	if s, c := current(t, k, ""); s != nil || c.Action != Keep {
		t.Errorf("no cookie: %v %+v", s, c)
	}
	if s, c := current(t, k, "junk"); s != nil || c.Action != Clear {
		t.Errorf("junk cookie: %v %+v, want no session and the cookie cleared", s, c)
	}
}

func TestAbsoluteLifetime(t *testing.T) {
	f := newFixture(newFakeStore())
	k := f.keeper(t, 0)
	v := f.login(t, k)
	f.idp.ttl = 10 * time.Hour
	f.clock.add(8*time.Hour - time.Second)
	if s, _ := current(t, k, v); s == nil {
		t.Fatal("session ended before its lifetime")
	}
	f.clock.add(time.Second)
	if s, c := current(t, k, v); s != nil || c.Action != Clear {
		t.Fatalf("at the end of its lifetime: %v %+v", s, c)
	}
	if got := f.ends.list(); len(got) != 1 || got[0] != ReasonExpired {
		t.Errorf("Ended hook: %v, want [expired]", got)
	}
	if _, ok := f.store.(*fakeStore).stored(v); ok {
		t.Error("expired session left in the store")
	}
}

func TestIdleTimeoutAndTouch(t *testing.T) {
	f := newFixture(newFakeStore())
	k := f.keeper(t, 16*time.Minute)
	f.idp.ttl = 10 * time.Hour
	v := f.login(t, k)
	// Touched once a sixteenth of the idle timeout has passed, no sooner.
	f.clock.add(59 * time.Second)
	if _, c := current(t, k, v); c.Action != Keep {
		t.Fatalf("touched after 59s: %+v", c)
	}
	f.clock.add(time.Second)
	s, c := current(t, k, v)
	if c.Action != Write || !s.LastSeen.Equal(f.clock.Now()) || !c.Expires.Equal(f.clock.Now().Add(16*time.Minute)) {
		t.Fatalf("touch after 1m: %+v, last seen %v", c, s.LastSeen)
	}
	// Unused for the idle timeout: ended.
	f.clock.add(16 * time.Minute)
	if s, c := current(t, k, v); s != nil || c.Action != Clear {
		t.Fatalf("idle for 16m: %v %+v", s, c)
	}
}

func TestRefreshMargin(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ttl     time.Duration // of the login's access token
		refresh time.Duration // left when the refresh happens
	}{
		{"margin", 5 * time.Minute, time.Minute},
		{"a third of a short token", 30 * time.Second, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(newFakeStore())
			k := f.keeper(t, 0)
			v := f.login(t, k)
			s, _ := f.store.Load(context.Background(), v)
			s.TokenExpiry = s.TokenIssued.Add(tc.ttl)
			if _, err := f.store.Save(context.Background(), v, s); err != nil {
				t.Fatal(err)
			}
			k = f.keeper(t, 0) // no cached copy
			f.clock.add(tc.ttl - tc.refresh - time.Second)
			if s, _ := current(t, k, v); s.AccessToken != "at-0" || f.idp.calls.Load() != 0 {
				t.Fatalf("refreshed %s before the margin", tc.refresh+time.Second)
			}
			f.clock.add(2 * time.Second)
			s, c := current(t, k, v)
			if s.AccessToken != "at-1" || f.idp.calls.Load() != 1 || c.Action != Write {
				t.Fatalf("within the margin: token %q, %d calls, cookie %+v", s.AccessToken, f.idp.calls.Load(), c)
			}
			// Served from the cache, compact: the tokens are decoded on demand.
			if s, _ := current(t, k, v); s.DecodeTokens() != nil || s.AccessToken != "at-1" || f.idp.calls.Load() != 1 {
				t.Error("refreshed again right after a refresh")
			}
		})
	}
}

func TestRefreshRefusedEndsSession(t *testing.T) {
	f := newFixture(newFakeStore())
	k := f.keeper(t, 0)
	v := f.login(t, k)
	f.idp.setFail(fmt.Errorf("%w: invalid_grant", ErrRefused))
	f.clock.add(4*time.Minute + time.Second)
	if s, c := current(t, k, v); s != nil || c.Action != Clear {
		t.Fatalf("refused refresh: %v %+v", s, c)
	}
	if got := f.ends.list(); len(got) != 1 || got[0] != ReasonRefused {
		t.Errorf("Ended hook: %v", got)
	}
}

func TestRefreshBackoffWhileIdPDown(t *testing.T) {
	f := newFixture(newFakeStore())
	k := f.keeper(t, 0)
	v := f.login(t, k)
	f.idp.setFail(errors.New("connection refused"))
	f.clock.add(4*time.Minute + time.Second)
	attempts := func(within time.Duration, calls int32) {
		t.Helper()
		for i := 0; i < 10; i++ {
			if s, c := current(t, k, v); s == nil || c.Action == Clear {
				t.Fatalf("IdP down ended the session: %+v", c)
			}
		}
		if n := f.idp.calls.Load(); n != calls {
			t.Fatalf("%d IdP calls, want %d", n, calls)
		}
		f.clock.add(within)
	}
	attempts(999*time.Millisecond, 1) // first attempt, then 1s of quiet
	attempts(time.Millisecond, 1)
	attempts(1999*time.Millisecond, 2) // then 2s
	attempts(time.Millisecond, 2)
	f.idp.fail.Store(nil)
	if s, _ := current(t, k, v); s.AccessToken == "at-0" {
		t.Fatal("no refresh once the IdP is back")
	}
}

// With a cookie store (not shared), 30 requests at expiry refresh once, and
// those that come a little later with the spent refresh token get the new
// tokens.
func TestConcurrentRefreshOnce(t *testing.T) {
	f := newFixture(newFakeStore())
	k := f.keeper(t, 0)
	v := f.login(t, k)
	f.clock.add(4*time.Minute + time.Second)
	f.idp.gate = make(chan struct{})
	var wg sync.WaitGroup
	tokens := make([]string, 30)
	for i := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s, _, err := k.Current(context.Background(), v); err == nil && s != nil {
				tokens[i] = s.AccessToken
			}
		}()
	}
	time.Sleep(20 * time.Millisecond) // let them gather at the refresh
	close(f.idp.gate)
	wg.Wait()
	for i, at := range tokens {
		if at != "at-1" {
			t.Fatalf("request %d got token %q", i, at)
		}
	}
	if n := f.idp.calls.Load(); n != 1 {
		t.Errorf("%d refreshes for 30 concurrent requests, want 1", n)
	}
	// A request still carrying the pre-refresh copy (another tab's cookie):
	// the spent refresh token is not redeemed again, it gets the new tokens.
	old := &sessions.Session{Subject: "alice", RefreshToken: "rt-0"}
	if s, err := k.refresh(context.Background(), old); err != nil || s.AccessToken != "at-1" || f.idp.calls.Load() != 1 {
		t.Errorf("late request with the spent refresh token: %+v %v, %d calls", s, err, f.idp.calls.Load())
	}
	// Past the grace period it would be redeemed (and refused by a strict IdP).
	f.clock.add(31 * time.Second)
	if _, err := k.refresh(context.Background(), old); !errors.Is(err, ErrRefused) {
		t.Errorf("spent refresh token after the grace period: %v, want the IdP's refusal", err)
	}
}

// Two handlers on one shared store: the second holds a copy older than the
// first's refresh, and must not redeem the spent refresh token.
func TestSharedRefreshRereadsUnderLock(t *testing.T) {
	store := &sharedStore{fakeStore: newFakeStore()}
	f := newFixture(store)
	a, b := f.keeper(t, 0), f.keeper(t, 0)
	v := f.login(t, a)
	current(t, b, v) // b caches the login's copy
	f.clock.add(4*time.Minute + time.Second)
	if s, c := current(t, a, v); s.AccessToken != "at-1" || c.Action != Write {
		t.Fatalf("refresh at a: %q %+v", s.AccessToken, c)
	}
	s, c := current(t, b, v)
	if s == nil || s.AccessToken != "at-1" || f.idp.calls.Load() != 1 {
		t.Fatalf("at b: %v %+v, %d refreshes (want a's result, 1 refresh)", s, c, f.idp.calls.Load())
	}
	if len(f.ends.list()) != 0 {
		t.Errorf("sessions ended: %v", f.ends.list())
	}
}

// A lock that cannot be had (another instance holds it past lock_wait):
// the request goes on with its current tokens.
func TestSharedLockNotAcquired(t *testing.T) {
	store := &sharedStore{fakeStore: newFakeStore(), lockErr: errors.New("timed out waiting for the lock")}
	f := newFixture(store)
	k := f.keeper(t, 0)
	v := f.login(t, k)
	f.clock.add(4*time.Minute + time.Second)
	if s, c := current(t, k, v); s == nil || s.AccessToken != "at-0" || c.Action != Keep || f.idp.calls.Load() != 0 {
		t.Fatalf("lock not acquired: %v %+v, %d refreshes", s, c, f.idp.calls.Load())
	}
}

// A session ended elsewhere while this request was updating it is not
// brought back: the cookie is cleared.
func TestUpdateRacingEnd(t *testing.T) {
	store := &sharedStore{fakeStore: newFakeStore()}
	f := newFixture(store)
	k := f.keeper(t, time.Hour)
	v := f.login(t, k)
	store.beforeSave = func(value string) { _ = store.Delete(context.Background(), value) }
	f.clock.add(5 * time.Minute) // due for a touch
	if s, c := current(t, k, v); s != nil || c.Action != Clear {
		t.Fatalf("update racing an end: %v %+v", s, c)
	}
	if _, ok := store.stored(v); ok {
		t.Error("the ended session came back")
	}
}

// A cached session of a shared store is checked with Exists, not decoded
// again; one ended elsewhere is gone at the next request.
func TestSharedCacheChecksExistence(t *testing.T) {
	store := &sharedStore{fakeStore: newFakeStore()}
	f := newFixture(store)
	k := f.keeper(t, 0)
	v := f.login(t, k)
	loads := store.loads.Load()
	for i := 0; i < 5; i++ {
		current(t, k, v)
	}
	if store.loads.Load() != loads || store.exists.Load() != 5 {
		t.Errorf("%d loads and %d existence checks for 5 cached requests", store.loads.Load()-loads, store.exists.Load())
	}
	_ = store.Delete(context.Background(), v)
	if s, c := current(t, k, v); s != nil || c.Action != Clear {
		t.Errorf("ended elsewhere: %v %+v", s, c)
	}
}

func TestStoreDown(t *testing.T) {
	store := &sharedStore{fakeStore: newFakeStore()}
	f := newFixture(store)
	k := f.keeper(t, 0)
	v := f.login(t, k)
	store.down.Store(true)
	if _, c, err := k.Current(context.Background(), v); !errors.Is(err, sessions.ErrUnavailable) || c.Action != Keep {
		t.Errorf("Current with the store down: %+v %v", c, err)
	}
	s, _ := store.stored(v)
	if c, err := k.End(context.Background(), v, &s, "logout"); !errors.Is(err, sessions.ErrUnavailable) || c.Action != Keep {
		t.Errorf("End with the store down: %+v %v, want the cookie kept", c, err)
	}
	if c := k.Discard(context.Background(), v, &s, ReasonExpired); c.Action != Clear {
		t.Errorf("Discard with the store down: %+v", c)
	}
	if got := f.ends.list(); len(got) != 1 || got[0] != ReasonExpired {
		t.Errorf("Ended hook: %v, want only Discard's", got)
	}
}

func TestStartEndsThePreviousSession(t *testing.T) {
	store := newFakeStore()
	f := newFixture(store)
	k := f.keeper(t, 0)
	old := f.login(t, k)
	v := f.login(t, k)
	c, err := k.Start(context.Background(), old, &sessions.Session{Subject: "alice", ExpiresAt: t0.Add(time.Hour)})
	if err != nil || c.Value == old || c.Value == v {
		t.Fatalf("Start over %s: %+v %v", old, c, err)
	}
	if _, ok := store.stored(old); ok {
		t.Error("the session the browser had before the login survived it")
	}
}

func TestIssuerOfOlderSessions(t *testing.T) {
	store := newFakeStore()
	f := newFixture(store)
	v, _ := store.Save(context.Background(), "", &sessions.Session{Subject: "old", ExpiresAt: t0.Add(time.Hour)})
	s, err := f.keeper(t, 0).Peek(context.Background(), v)
	if err != nil || s.Issuer != "https://idp.example" {
		t.Errorf("session stored without an issuer: %+v %v", s, err)
	}
}

func TestHalfSharedStoreRefused(t *testing.T) {
	type checkerOnly struct {
		*fakeStore
		sessions.Checker
	}
	if _, err := sessions.CapabilitiesOf(checkerOnly{newFakeStore(), &sharedStore{}}); err == nil {
		t.Error("a store with Exists but no Lock was accepted")
	}
}

// TestDropTokensCache: with drop_tokens the cookie holds no tokens, and
// the instance that wrote it must not serve them from its cache either
// (a refresh, a revocation or an access-token header the next instance
// would not do).
func TestDropTokensCache(t *testing.T) {
	st := &sessions.CookieStore{DropTokens: true}
	if err := st.Bind(storetest.NewEnv(t)); err != nil {
		t.Fatal(err)
	}
	f := newFixture(st)
	k := f.keeper(t, 0)
	value := f.login(t, k)
	hit, err := k.Peek(context.Background(), value)
	if err != nil {
		t.Fatal(err)
	}
	miss, err := f.keeper(t, 0).Peek(context.Background(), value)
	if err != nil {
		t.Fatal(err)
	}
	if hit.RefreshToken != "" || hit.AccessToken != "" || hit.IDToken != "" || miss.RefreshToken != "" || miss.AccessToken != "" {
		t.Errorf("drop_tokens: the writer's cache has refresh %q access %q, a fresh read %q %q; want none",
			hit.RefreshToken, hit.AccessToken, miss.RefreshToken, miss.AccessToken)
	}
	if hit.Subject == "" || hit.Subject != miss.Subject {
		t.Errorf("identity: cached %q, read %q", hit.Subject, miss.Subject)
	}
}
