package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/sessions"
)

// RunBackend runs the conformance suite of sessions.Backend, the key-value
// store a sessions.TicketStore keeps its records in, as subtests of t: a
// new server-side store is a Backend and this suite, then RunManager and
// Run on a TicketStore over it. newBackend returns an empty backend, or
// one whose keys do not start with the prefixes the cases use (each case
// uses a fresh random prefix).
//
// The expiry case waits a little over a second: Backend TTLs are whole
// seconds.
func RunBackend(t *testing.T, newBackend func(t *testing.T) sessions.Backend) {
	t.Helper()
	suite := backendSuite{newBackend: newBackend}
	for _, c := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"GetSetExists", suite.getSetExists},
		{"Replace", suite.replace},
		{"GetMany", suite.getMany},
		{"Delete", suite.delete},
		{"Index", suite.index},
		{"Scan", suite.scan},
		{"Expiry", suite.expiry},
	} {
		t.Run(c.name, c.run)
	}
}

type backendSuite struct {
	newBackend func(t *testing.T) sessions.Backend
}

// open returns a backend and a fresh key prefix for one case.
func (suite backendSuite) open(t *testing.T) (sessions.Backend, string) {
	t.Helper()
	return suite.newBackend(t), "bt-" + randomString(8) + "-"
}

// getSetExists stores, reads and checks values; a missing key is
// ErrNoSession, not an error of the backend.
func (suite backendSuite) getSetExists(t *testing.T) {
	b, p := suite.open(t)
	ctx := t.Context()
	if _, err := b.Get(ctx, p+"missing"); !errors.Is(err, sessions.ErrNoSession) {
		t.Fatalf("Get of a missing key: %v, want ErrNoSession", err)
	}
	if ok, err := b.Exists(ctx, p+"missing"); ok || err != nil {
		t.Fatalf("Exists of a missing key: %v, %v", ok, err)
	}
	value := []byte{0, 1, 2, 0xff, 'x'} // binary safe
	if err := b.Set(ctx, p+"k", value, time.Hour); err != nil {
		t.Fatal(err)
	}
	got, err := b.Get(ctx, p+"k")
	if err != nil || string(got) != string(value) {
		t.Fatalf("Get after Set: %x, %v", got, err)
	}
	if ok, err := b.Exists(ctx, p+"k"); !ok || err != nil {
		t.Fatalf("Exists after Set: %v, %v", ok, err)
	}
	if err := b.Set(ctx, p+"k", []byte("second"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Get(ctx, p+"k"); string(got) != "second" {
		t.Fatalf("Set over a key: %q", got)
	}
}

// replace writes only over a key that exists, in one step.
func (suite backendSuite) replace(t *testing.T) {
	b, p := suite.open(t)
	ctx := t.Context()
	if ok, err := b.Replace(ctx, p+"absent", []byte("v"), time.Hour); ok || err != nil {
		t.Fatalf("Replace of a missing key: %v, %v; want false", ok, err)
	}
	if _, err := b.Get(ctx, p+"absent"); !errors.Is(err, sessions.ErrNoSession) {
		t.Fatalf("Replace of a missing key stored it: %v", err)
	}
	if err := b.Set(ctx, p+"k", []byte("old"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Replace(ctx, p+"k", []byte("new"), time.Hour); !ok || err != nil {
		t.Fatalf("Replace of a key: %v, %v", ok, err)
	}
	if got, _ := b.Get(ctx, p+"k"); string(got) != "new" {
		t.Fatalf("after Replace: %q", got)
	}
}

// getMany reads keys in one call, nil for the missing ones, in order.
func (suite backendSuite) getMany(t *testing.T) {
	b, p := suite.open(t)
	ctx := t.Context()
	for i := range 3 {
		if err := b.Set(ctx, fmt.Sprintf("%sk%d", p, i), []byte{byte('a' + i)}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	got, err := b.GetMany(ctx, []string{p + "k2", p + "missing", p + "k0", p + "k1"})
	if err != nil || len(got) != 4 || string(got[0]) != "c" || got[1] != nil || string(got[2]) != "a" || string(got[3]) != "b" {
		t.Fatalf("GetMany: %q, %v", got, err)
	}
	if got, err := b.GetMany(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("GetMany of no keys: %q, %v", got, err)
	}
}

// delete removes several keys at once; missing ones are not an error.
func (suite backendSuite) delete(t *testing.T) {
	b, p := suite.open(t)
	ctx := t.Context()
	for _, k := range []string{"a", "b", "c"} {
		if err := b.Set(ctx, p+k, []byte(k), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Delete(ctx, p+"a", p+"b", p+"missing"); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]bool{"a": false, "b": false, "c": true} {
		if ok, _ := b.Exists(ctx, p+k); ok != want {
			t.Errorf("after Delete, %s exists: %v", k, ok)
		}
	}
	if err := b.Delete(ctx); err != nil {
		t.Errorf("Delete of no keys: %v", err)
	}
}

// index keeps a set of members with expiry times: expired members are
// never returned, removed ones are gone, a member added again is one.
func (suite backendSuite) index(t *testing.T) {
	b, p := suite.open(t)
	ctx := t.Context()
	now := time.Now()
	for _, m := range []struct {
		name    string
		expires time.Time
	}{{"m1", now.Add(time.Hour)}, {"m2", now.Add(time.Hour)}, {"m1", now.Add(2 * time.Hour)}, {"old", now.Add(-time.Minute)}} {
		if err := b.IndexAdd(ctx, p+"ix", m.name, m.expires); err != nil {
			t.Fatal(err)
		}
	}
	members := func() []string {
		ms, err := b.IndexMembers(ctx, p+"ix")
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(ms)
		return ms
	}
	if got := members(); !slices.Equal(got, []string{"m1", "m2"}) {
		t.Fatalf("IndexMembers: %q, want [m1 m2] (an expired member left out, a repeated one once)", got)
	}
	if err := b.IndexRemove(ctx, p+"ix", "m2", "missing"); err != nil {
		t.Fatal(err)
	}
	if got := members(); !slices.Equal(got, []string{"m1"}) {
		t.Fatalf("after IndexRemove: %q", got)
	}
	if got, err := b.IndexMembers(ctx, p+"no-such-index"); err != nil || len(got) != 0 {
		t.Fatalf("members of a missing index: %q, %v", got, err)
	}
}

// scan yields every key with the prefix, and no other, even when the
// prefix holds characters special to pattern languages.
func (suite backendSuite) scan(t *testing.T) {
	b, p := suite.open(t)
	ctx := t.Context()
	prefix := p + "*?[x]\\-"
	want := []string{}
	for i := range 2500 {
		k := fmt.Sprintf("%s%04d", prefix, i)
		want = append(want, k)
		if err := b.Set(ctx, k, []byte("v"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	for _, other := range []string{p + "other", p + "*?[y]\\-0001", p + "ab"} {
		if err := b.Set(ctx, other, []byte("v"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	if err := b.Scan(ctx, prefix, func(keys []string) error {
		got = append(got, keys...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	got = slices.Compact(got) // a scan may repeat a key
	if !slices.Equal(got, want) {
		t.Fatalf("Scan returned %d keys, want the %d with the prefix", len(got), len(want))
	}
	stop := errors.New("stop")
	if err := b.Scan(ctx, prefix, func([]string) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("Scan did not return the callback's error: %v", err)
	}
}

// expiry: a value set for a second is gone after it, for every call.
func (suite backendSuite) expiry(t *testing.T) {
	b, p := suite.open(t)
	ctx := t.Context()
	if err := b.Set(ctx, p+"short", []byte("v"), time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.Set(ctx, p+"long", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := b.Get(ctx, p+"short"); !errors.Is(err, sessions.ErrNoSession) {
		t.Errorf("Get of an expired key: %v", err)
	}
	if ok, _ := b.Exists(ctx, p+"short"); ok {
		t.Error("an expired key exists")
	}
	if ok, _ := b.Replace(ctx, p+"short", []byte("v"), time.Hour); ok {
		t.Error("Replace wrote over an expired key")
	}
	if got, _ := b.GetMany(ctx, []string{p + "short", p + "long"}); got[0] != nil || got[1] == nil {
		t.Errorf("GetMany after expiry: %q", got)
	}
}
