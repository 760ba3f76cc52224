package sessions_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/storetest"
)

// A store made by following "Adding a store" in the package doc, step by
// step, on a Go map: it proves the steps are enough.

// Step 1: a Backend. Values and index members expire; every method is
// safe for concurrent use. (A map cannot fail: no ErrUnavailable here.)
type mapBackend struct {
	mu      sync.Mutex
	values  map[string]mapValue
	indexes map[string]map[string]time.Time
}

type mapValue struct {
	v   []byte
	exp time.Time
}

func newMapBackend() *mapBackend {
	return &mapBackend{values: map[string]mapValue{}, indexes: map[string]map[string]time.Time{}}
}

func (b *mapBackend) live(key string) (mapValue, bool) {
	v, ok := b.values[key]
	if ok && !time.Now().Before(v.exp) {
		delete(b.values, key)
		return v, false
	}
	return v, ok
}

func (b *mapBackend) Get(_ context.Context, key string) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if v, ok := b.live(key); ok {
		return v.v, nil
	}
	return nil, sessions.ErrNoSession
}

func (b *mapBackend) Exists(_ context.Context, key string) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.live(key)
	return ok, nil
}

func (b *mapBackend) GetMany(_ context.Context, keys []string) ([][]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([][]byte, len(keys))
	for i, k := range keys {
		if v, ok := b.live(k); ok {
			out[i] = v.v
		}
	}
	return out, nil
}

func (b *mapBackend) Set(_ context.Context, key string, value []byte, ttl time.Duration) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.values[key] = mapValue{v: value, exp: time.Now().Add(ttl)}
	return nil
}

func (b *mapBackend) Replace(_ context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.live(key); !ok {
		return false, nil
	}
	b.values[key] = mapValue{v: value, exp: time.Now().Add(ttl)}
	return true, nil
}

func (b *mapBackend) Delete(_ context.Context, keys ...string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range keys {
		delete(b.values, k)
	}
	return nil
}

func (b *mapBackend) IndexAdd(_ context.Context, key, member string, expires time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.indexes[key] == nil {
		b.indexes[key] = map[string]time.Time{}
	}
	b.indexes[key][member] = expires
	return nil
}

func (b *mapBackend) IndexMembers(_ context.Context, key string) ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for m, exp := range b.indexes[key] {
		if time.Now().Before(exp) {
			out = append(out, m)
		}
	}
	return out, nil
}

func (b *mapBackend) IndexRemove(_ context.Context, key string, members ...string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range members {
		delete(b.indexes[key], m)
	}
	return nil
}

func (b *mapBackend) Scan(_ context.Context, prefix string, fn func(keys []string) error) error {
	b.mu.Lock()
	var keys []string
	for k := range b.values {
		if _, ok := b.live(k); ok && strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	for k := range b.indexes {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	b.mu.Unlock()
	if len(keys) == 0 {
		return nil
	}
	return fn(keys)
}

// Steps 2 and 3: the store module, embedding TicketStore, with a lock.
type mapStore struct {
	sessions.TicketStore `json:"-"`
	locks                sync.Map // record key -> *sync.Mutex
}

func (*mapStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oidc_session.stores.example_map",
		New: func() caddy.Module { return new(mapStore) },
	}
}

func (s *mapStore) Provision(caddy.Context) error {
	s.Backend = newMapBackend()
	s.Name = "example_map"
	return nil
}

func (s *mapStore) Lock(_ context.Context, value string) (func(), error) {
	key, ok := s.RecordKey(value)
	if !ok {
		return nil, sessions.ErrNoSession
	}
	m, _ := s.locks.LoadOrStore(key, new(sync.Mutex))
	m.(*sync.Mutex).Lock()
	return m.(*sync.Mutex).Unlock, nil
}

func newMapStore(t *testing.T, env sessions.Env) sessions.Store {
	t.Helper()
	s := &mapStore{}
	if err := s.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Bind(env); err != nil {
		t.Fatal(err)
	}
	return s
}

// Steps 1 and 5: the suites.
func TestExampleStore(t *testing.T) {
	t.Run("Backend", func(t *testing.T) {
		storetest.RunBackend(t, func(*testing.T) sessions.Backend { return newMapBackend() })
	})
	t.Run("Store", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) sessions.Store { return newMapStore(t, storetest.NewEnv(t)) })
	})
	t.Run("Manager", func(t *testing.T) {
		storetest.RunManager(t, newMapStore)
	})
	caps, err := sessions.CapabilitiesOf(newMapStore(t, storetest.NewEnv(t)))
	if err != nil || !caps.Shared() || caps.Manager == nil {
		t.Errorf("the example store is not a shared, managed store: %+v, %v", caps, err)
	}
}

var _ caddy.Provisioner = (*mapStore)(nil)
