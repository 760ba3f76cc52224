package memstore

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/storetest"
)

// Two stores on the same memory (two oidc_session handlers) take the same
// refresh lock for a session, and only one holds it at a time.
func TestLockSharedByStoresOfOneMemory(t *testing.T) {
	env := storetest.NewEnv(t)
	a := newStore(t, &Store{}, env)
	b := newStore(t, &Store{}, env)
	value, err := a.Save(t.Context(), "", storetest.FullSession())
	if err != nil {
		t.Fatal(err)
	}
	release, err := a.Lock(t.Context(), value)
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		rel, err := b.Lock(context.Background(), value)
		if err == nil {
			got.Store(true)
			rel()
		}
	}()
	time.Sleep(50 * time.Millisecond)
	if got.Load() {
		t.Fatal("the other store took the lock while it was held")
	}
	release()
	release() // a second release is harmless
	<-done
	if !got.Load() {
		t.Fatal("the other store never got the lock")
	}
	// Another session's lock is independent.
	other, _ := a.Save(t.Context(), "", storetest.FullSession())
	rel1, err1 := a.Lock(t.Context(), value)
	rel2, err2 := b.Lock(t.Context(), other)
	if err1 != nil || err2 != nil {
		t.Fatalf("locks of two sessions: %v, %v", err1, err2)
	}
	rel1()
	rel2()
	if n := len(a.state.locks.held); n != 0 {
		t.Errorf("%d locks left after every release", n)
	}
}

func TestLockCancelledAndGarbage(t *testing.T) {
	s := newStore(t, &Store{}, storetest.NewEnv(t))
	value, _ := s.Save(t.Context(), "", storetest.FullSession())
	release, err := s.Lock(t.Context(), value)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	if _, err := s.Lock(ctx, value); !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, errLockTimeout) {
		t.Errorf("lock held elsewhere, context ends: %v", err)
	}
	if _, err := s.Lock(t.Context(), "garbage"); !errors.Is(err, sessions.ErrNoSession) {
		t.Errorf("lock of a garbage value: %v, want ErrNoSession", err)
	}
}
