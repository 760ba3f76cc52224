package oidc

import (
	"context"
	"errors"
	"testing"
	"time"
)

// logoutKeys only lets a logout token make the IdP's keys be fetched again
// when it names a key ID not in hand, at most once per interval and only
// when the caller allows it: forged tokens cannot make us hammer the IdP,
// and a rotated key still works.

func (f *fakeIdP) verifyAllowing(t *testing.T, raw string, allow bool) error {
	t.Helper()
	_, err := f.provider.VerifyLogoutToken(context.Background(), f.discovery, raw, func() bool { return allow })
	return err
}

func TestLogoutKeysKnownKeyBadSignatureFetchesNothing(t *testing.T) {
	f := newFakeIdP(t)
	if err := f.verifyAllowing(t, f.sign(t, f.claims(), signOpts{}), true); err != nil {
		t.Fatal(err)
	}
	before := f.keyFetch.Load()
	forged := f.sign(t, f.claims(), signOpts{key: newRSAKey(t), kid: "k1"})
	for i := 0; i < 20; i++ {
		if err := f.verifyAllowing(t, forged, true); !errors.Is(err, ErrInvalidLogoutToken) {
			t.Fatalf("forged token with the IdP's key id: %v, want a refusal", err)
		}
	}
	if n := f.keyFetch.Load() - before; n != 0 {
		t.Errorf("%d JWKS fetches for tokens naming a key we have", n)
	}
}

func TestLogoutKeysUnknownKeyFetchesOncePerInterval(t *testing.T) {
	f := newFakeIdP(t)
	f.discovery.keys.interval = time.Hour
	if err := f.verifyAllowing(t, f.sign(t, f.claims(), signOpts{}), true); err != nil {
		t.Fatal(err)
	}
	before := f.keyFetch.Load()
	// The keys were fetched just now: no second fetch within the interval,
	// and the token is put off (the IdP, if it is the IdP's new key,
	// retries), not refused.
	forged := f.sign(t, f.claims(), signOpts{key: newRSAKey(t), kid: "k9"})
	for i := 0; i < 20; i++ {
		if err := f.verifyAllowing(t, forged, true); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("unknown key id within the interval: %v, want ErrUnavailable", err)
		}
	}
	if n := f.keyFetch.Load() - before; n != 0 {
		t.Errorf("%d JWKS fetches within the interval", n)
	}
	// Once the interval is over, one fetch; the forged key is still not the IdP's.
	f.discovery.keys.interval = time.Millisecond
	time.Sleep(2 * time.Millisecond)
	if err := f.verifyAllowing(t, forged, true); !errors.Is(err, ErrInvalidLogoutToken) {
		t.Fatalf("unknown key id after a fetch: %v, want a refusal", err)
	}
	if n := f.keyFetch.Load() - before; n != 1 {
		t.Errorf("%d JWKS fetches after the interval, want 1", n)
	}
}

func TestLogoutKeysCallerRefusesFetch(t *testing.T) {
	f := newFakeIdP(t)
	f.discovery.keys.interval = time.Millisecond
	if err := f.verifyAllowing(t, f.sign(t, f.claims(), signOpts{}), true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	before := f.keyFetch.Load()
	forged := f.sign(t, f.claims(), signOpts{key: newRSAKey(t), kid: "k9"})
	if err := f.verifyAllowing(t, forged, false); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("unknown key id, fetch not allowed: %v, want ErrUnavailable", err)
	}
	if n := f.keyFetch.Load() - before; n != 0 {
		t.Errorf("%d JWKS fetches the caller did not allow", n)
	}
}

func TestLogoutKeysRotation(t *testing.T) {
	f := newFakeIdP(t)
	f.discovery.keys.interval = time.Millisecond
	if err := f.verifyAllowing(t, f.sign(t, f.claims(), signOpts{}), true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	k2 := newRSAKey(t)
	f.rotated.Store(k2)
	if err := f.verifyAllowing(t, f.sign(t, f.claims(), signOpts{key: k2, kid: "k2"}), true); err != nil {
		t.Fatalf("token signed with the IdP's new key: %v", err)
	}
	// Now known: verified from the keys in hand.
	before := f.keyFetch.Load()
	if err := f.verifyAllowing(t, f.sign(t, f.claims(), signOpts{key: k2, kid: "k2"}), false); err != nil {
		t.Fatalf("second token with the new key: %v", err)
	}
	if n := f.keyFetch.Load() - before; n != 0 {
		t.Errorf("%d fetches for a key in hand", n)
	}
}

func TestLogoutKeysIdPDown(t *testing.T) {
	f := newFakeIdP(t)
	raw := f.sign(t, f.claims(), signOpts{})
	f.srv.Close()
	if err := f.verifyAllowing(t, raw, true); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("keys cannot be fetched: %v, want ErrUnavailable", err)
	}
}

// A forged token that made the last fetch, then the IdP with a rotated key:
// its token is put off, not refused, and its retry is accepted once the
// interval is over.
func TestLogoutKeysRetryAfterForgedFetch(t *testing.T) {
	f := newFakeIdP(t)
	f.discovery.keys.interval = time.Hour
	k2 := newRSAKey(t)
	forged := f.sign(t, f.claims(), signOpts{key: newRSAKey(t), kid: "junk"})
	tok := f.sign(t, f.claims(), signOpts{key: k2, kid: "k2"})
	if err := f.verifyAllowing(t, f.sign(t, f.claims(), signOpts{}), true); err != nil {
		t.Fatal(err)
	}
	f.discovery.keys.tried = time.Time{} // the interval is over
	// A forged token with a made-up key id makes the instance fetch.
	if err := f.verifyAllowing(t, forged, true); !errors.Is(err, ErrInvalidLogoutToken) {
		t.Fatalf("forged token after the interval: %v", err)
	}
	// Right after, the IdP rotates and signs with k2: put off, not refused.
	f.rotated.Store(k2)
	if err := f.verifyAllowing(t, tok, true); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("the IdP's new key within the interval: %v, want ErrUnavailable", err)
	}
	f.discovery.keys.tried = time.Time{} // the interval is over
	if err := f.verifyAllowing(t, tok, true); err != nil {
		t.Fatalf("the IdP's retry: %v", err)
	}
}
