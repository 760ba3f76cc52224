// Package storetest is the conformance suite every sessions.Store runs, plus
// the realistic session fixtures the suite (and the sessions benchmarks) use.
//
// A store's test calls Run with a constructor:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) sessions.Store {
//			s := &MyStore{...}
//			if err := s.Bind(storetest.NewEnv(t)); err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/oidc-session/oidc_session/sessions"
)

// Options adapts the suite to a kind of store.
type Options struct {
	// Stateless marks a store that keeps the whole session in the cookie
	// value (the cookie store), so Delete cannot end a session: the cases
	// that expect a deleted session to be gone are skipped. Delete must
	// still succeed.
	Stateless bool
}

// storeSuite is the conformance suite of one store: each case a method.
type storeSuite struct {
	newStore func(t *testing.T) sessions.Store
	Options
}

// Run runs the conformance suite as subtests of t.
//
// newStore must return a store that is already bound (Bind called) and that
// uses secrets of its own, freshly generated on every call (NewEnv does
// that): the suite calls it twice to check that a value made by one store
// instance is refused by another one with a different secret. Instances may
// share a backend (the same Redis server, say).
func Run(t *testing.T, newStore func(t *testing.T) sessions.Store, opts ...Options) {
	t.Helper()
	suite := storeSuite{newStore: newStore}
	for _, opt := range opts {
		suite.Options = opt
	}

	for _, c := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"RoundTripEveryField", suite.roundTripEveryField},
		{"RoundTripEmptyTokens", suite.roundTripEmptyTokens},
		{"RoundTripMinimal", suite.roundTripMinimal},
		{"NewSessionGetsFreshValue", suite.newSessionGetsFreshValue},
		{"UpdateWithPrev", suite.updateWithPrev},
		{"Isolation", suite.isolation},
		{"LoadInvalid", suite.loadInvalid},
		{"DeleteThenLoad", suite.deleteThenLoad},
		{"DeleteUnknown", suite.deleteUnknown},
		{"Concurrent", suite.concurrent},
	} {
		t.Run(c.name, c.run)
	}
}

// roundTripEveryField gives back every field of a session as saved.
func (suite storeSuite) roundTripEveryField(t *testing.T) {
	st := suite.newStore(t)
	want := FullSession()
	checkEveryFieldSet(t, want)
	orig := Clone(want)
	v := save(t, st, "", want)
	checkCookieValue(t, v)
	if d := Diff(orig, want); d != "" {
		t.Errorf("Save modified the session it was given:\n%s", d)
	}
	got := load(t, st, v)
	if d := Diff(want, got); d != "" {
		t.Errorf("loaded session differs from the saved one:\n%s", d)
	}
}

// roundTripEmptyTokens gives back a session without tokens.
func (suite storeSuite) roundTripEmptyTokens(t *testing.T) {
	st := suite.newStore(t)
	want := FullSession()
	want.IDToken, want.AccessToken, want.RefreshToken = "", "", ""
	got := load(t, st, save(t, st, "", want))
	if d := Diff(want, got); d != "" {
		t.Errorf("loaded session differs from the saved one:\n%s", d)
	}
}

// roundTripMinimal gives back a session with little more than a subject.
func (suite storeSuite) roundTripMinimal(t *testing.T) {
	st := suite.newStore(t)
	now := Now()
	want := &sessions.Session{Subject: "u", CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(3600e9)}
	got := load(t, st, save(t, st, "", want))
	if d := Diff(want, got); d != "" {
		t.Errorf("loaded session differs from the saved one:\n%s", d)
	}
}

// newSessionGetsFreshValue gives every new session a value never seen before.
func (suite storeSuite) newSessionGetsFreshValue(t *testing.T) {
	// A login must never reuse an earlier value: otherwise a value
	// planted before login (session fixation) would become valid.
	st := suite.newStore(t)
	s := FullSession()
	v1 := save(t, st, "", s)
	v2 := save(t, st, "", s)
	if v1 == v2 {
		t.Fatalf("two Saves with prev==\"\" returned the same value %q", v1)
	}
	for _, v := range []string{v1, v2} {
		if d := Diff(s, load(t, st, v)); d != "" {
			t.Errorf("loaded session differs from the saved one:\n%s", d)
		}
	}
}

// updateWithPrev updates a session in place from its current value.
func (suite storeSuite) updateWithPrev(t *testing.T) {
	st := suite.newStore(t)
	s := FullSession()
	v1 := save(t, st, "", s)
	upd := Clone(s)
	upd.IDToken = FakeJWT(jwtHeader(), map[string]any{"iss": "https://idp.example.com", "sub": s.Subject, "gen": 2})
	upd.AccessToken = "refreshed-" + randomString(32)
	upd.RefreshToken = randomString(40)
	upd.Groups = []string{"admins"}
	upd.Claims = map[string][]string{"department": {"research"}}
	upd.TokenIssued = s.TokenIssued.Add(600e9)
	upd.TokenExpiry = s.TokenExpiry.Add(600e9)
	upd.LastSeen = s.LastSeen.Add(600e9)
	v2 := save(t, st, v1, upd)
	checkCookieValue(t, v2)
	got := load(t, st, v2)
	if d := Diff(upd, got); d != "" {
		t.Errorf("after Save(prev, updated), Load differs from the update:\n%s", d)
	}
}

// isolation refuses values of another store's secret and keeps sessions apart.
func (suite storeSuite) isolation(t *testing.T) {
	// The store must keep a copy: changing the session after Save, or
	// a loaded session, must not change what a later Load returns.
	st := suite.newStore(t)
	s := FullSession()
	want := Clone(s)
	v := save(t, st, "", s)
	s.Subject = "mutated"
	s.Groups[0] = "mutated"
	s.Claims["department"][0] = "mutated"
	s.Claims["added"] = []string{"x"}
	got := load(t, st, v)
	if d := Diff(want, got); d != "" {
		t.Fatalf("changing the session after Save changed the stored one:\n%s", d)
	}
	got.Email = "mutated"
	got.Groups[0] = "mutated"
	if d := Diff(want, load(t, st, v)); d != "" {
		t.Errorf("changing a loaded session changed the stored one:\n%s", d)
	}
}

// loadInvalid reads tampered, truncated and garbage values as no session, without panicking.
func (suite storeSuite) loadInvalid(t *testing.T) {
	st := suite.newStore(t)
	s := FullSession()
	v := save(t, st, "", s)

	t.Run("Empty", func(t *testing.T) { expectNoSession(t, st, "", "empty value") })

	t.Run("Garbage", func(t *testing.T) {
		for _, g := range []string{
			"x", "garbage", "!!!!", "a.b.c", "\x00\xff\xfe", "%00", " ", "null", "{}",
			strings.Repeat("A", 43), strings.Repeat("_", 100), strings.Repeat("0", 4096),
			randomString(16), randomString(64), randomString(len(v)),
			base64.RawURLEncoding.EncodeToString(randomBytes(64)),
			base64.RawURLEncoding.EncodeToString(randomBytes(1024)),
			base64.StdEncoding.EncodeToString([]byte(v)),
			v + v,
			v + "=", v + "==", v + " ", " " + v, v + "\x00", strings.ToUpper(v),
		} {
			expectNoSession(t, st, g, fmt.Sprintf("garbage %.40q", g))
		}
	})

	t.Run("Truncated", func(t *testing.T) {
		for _, n := range cutPoints(len(v)) {
			expectNoSession(t, st, v[:n], fmt.Sprintf("value cut to %d of %d", n, len(v)))
			if n > 0 {
				expectNoSession(t, st, v[n:], fmt.Sprintf("value with its first %d of %d characters cut", n, len(v)))
			}
		}
	})

	t.Run("ByteFlipped", func(t *testing.T) {
		raw, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil {
			t.Skipf("the store's values are not base64url (%v); the character flips cover them", err)
		}
		for i := range raw {
			for _, bit := range flipBits(i, len(raw)) {
				b := slices.Clone(raw)
				b[i] ^= 1 << bit
				expectNoSession(t, st, base64.RawURLEncoding.EncodeToString(b),
					fmt.Sprintf("bit %d of byte %d (of %d) flipped", bit, i, len(raw)))
			}
		}
	})

	t.Run("CharFlipped", func(t *testing.T) {
		// Every character replaced by two others: its neighbour in the
		// base64url alphabet (differs in the lowest bit, which in the
		// last character may only be padding, so the decoder must be
		// strict) and the one 32 places on (differs in the highest).
		flip := func(v string, from int) {
			for i := from; i < len(v); i++ {
				for _, c := range replacements(v[i]) {
					expectNoSession(t, st, v[:i]+string(c)+v[i+1:],
						fmt.Sprintf("character %d (of %d) %q replaced by %q", i, len(v), v[i], c))
				}
			}
		}
		flip(v, 0)
		// Values of other lengths, so that some end in a character
		// with padding bits whatever the length of v: flip their ends.
		lengths := map[int]bool{len(v) % 4: true}
		for extra := 1; extra <= 16 && len(lengths) < 4; extra++ {
			s2 := Clone(s)
			s2.Subject += strings.Repeat("x", extra)
			s2.Name += randomString(extra)
			v2 := save(t, st, "", s2)
			if !lengths[len(v2)%4] {
				lengths[len(v2)%4] = true
				flip(v2, max(0, len(v2)-3))
			}
		}
	})

	t.Run("Oversized", func(t *testing.T) {
		expectNoSession(t, st, strings.Repeat("A", 1<<20), "1 MB of 'A'")
		expectNoSession(t, st, base64.RawURLEncoding.EncodeToString(randomBytes(3<<18)), "1 MB of random base64url")
		expectNoSession(t, st, v+strings.Repeat(v, (1<<20)/len(v)), "a valid value repeated to 1 MB")
	})

	t.Run("OtherSecret", func(t *testing.T) {
		other := suite.newStore(t)
		foreign := save(t, other, "", s)
		expectNoSession(t, st, foreign, "value saved by another store instance with a different secret")
		expectNoSession(t, other, v, "value saved by another store instance with a different secret (reverse)")
		// Each store still loads its own value: the refusal is about
		// the secret, not a broken store.
		load(t, other, foreign)
		load(t, st, v)
	})
}

// deleteThenLoad ends a deleted session (for stateful stores).
func (suite storeSuite) deleteThenLoad(t *testing.T) {
	st := suite.newStore(t)
	v := save(t, st, "", FullSession())
	other := FullSession()
	other.Subject = "another-user"
	keep := save(t, st, "", other)
	if err := st.Delete(t.Context(), v); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if suite.Stateless {
		t.Skip("stateless store: Delete cannot end a session; the cookie holds it")
	}
	expectNoSession(t, st, v, "deleted session")
	if err := st.Delete(t.Context(), v); err != nil {
		t.Errorf("deleting an already deleted session: %v", err)
	}
	if got := load(t, st, keep); got.Subject != other.Subject {
		t.Errorf("after deleting one session another loads with subject %q, want %q", got.Subject, other.Subject)
	}
}

// deleteUnknown deletes unknown and garbage values without an error.
func (suite storeSuite) deleteUnknown(t *testing.T) {
	st := suite.newStore(t)
	foreign := save(t, suite.newStore(t), "", FullSession())
	for _, v := range []string{
		"", "garbage", strings.Repeat("A", 43), randomString(64),
		base64.RawURLEncoding.EncodeToString(randomBytes(48)), foreign,
	} {
		if err := st.Delete(t.Context(), v); err != nil {
			t.Errorf("Delete(%.40q) of an unknown session: %v, want nil", v, err)
		}
	}
}

// concurrent serves concurrent saves, loads and deletes.
func (suite storeSuite) concurrent(t *testing.T) {
	st := suite.newStore(t)
	const workers, rounds = 16, 20
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			s := FullSession()
			s.Subject = fmt.Sprintf("user-%d", w)
			s.Email = fmt.Sprintf("user-%d@example.com", w)
			prev := ""
			for r := range rounds {
				s.LastSeen = s.CreatedAt.Add(secondsDuration(r))
				s.Claims = map[string][]string{"round": {fmt.Sprint(r)}}
				v, err := st.Save(t.Context(), prev, s)
				if err != nil {
					t.Errorf("worker %d round %d: Save: %v", w, r, err)
					return
				}
				got, err := st.Load(t.Context(), v)
				if err != nil {
					t.Errorf("worker %d round %d: Load: %v", w, r, err)
					return
				}
				if d := Diff(s, got); d != "" {
					t.Errorf("worker %d round %d: loaded another session:\n%s", w, r, d)
					return
				}
				prev = v
			}
			if err := st.Delete(t.Context(), prev); err != nil {
				t.Errorf("worker %d: Delete: %v", w, err)
			}
		})
	}
	wg.Wait()
}

func save(t *testing.T, st sessions.Store, prev string, s *sessions.Session) string {
	t.Helper()
	v, err := st.Save(t.Context(), prev, s)
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	if v == "" {
		t.Fatal("Save returned an empty value")
	}
	return v
}

func load(t *testing.T, st sessions.Store, v string) *sessions.Session {
	t.Helper()
	s, err := st.Load(t.Context(), v)
	if err != nil {
		t.Fatalf("Load of a value just saved: %v", err)
	}
	if s == nil {
		t.Fatal("Load returned a nil session and no error")
	}
	return s
}

// expectNoSession checks that Load refuses v with ErrNoSession, returns no
// session and does not panic.
func expectNoSession(t *testing.T, st sessions.Store, v, what string) {
	t.Helper()
	s, err := loadNoPanic(t.Context(), st, v)
	if !errors.Is(err, sessions.ErrNoSession) {
		t.Errorf("Load of %s: got error %v, want ErrNoSession", what, err)
	}
	if s != nil {
		t.Errorf("Load of %s returned a session (subject %q) along with error %v", what, s.Subject, err)
	}
}

func loadNoPanic(ctx context.Context, st sessions.Store, v string) (s *sessions.Session, err error) {
	defer func() {
		if p := recover(); p != nil {
			s, err = nil, fmt.Errorf("Load panicked: %v", p)
		}
	}()
	return st.Load(ctx, v)
}

// checkCookieValue checks that a value can be put in a cookie as is.
func checkCookieValue(t *testing.T, v string) {
	t.Helper()
	if err := (&http.Cookie{Name: "session", Value: v}).Valid(); err != nil {
		t.Errorf("Save returned a value that is not a valid cookie value: %v", err)
	}
	if strings.ContainsAny(v, " \",;\\") {
		t.Errorf("Save returned a value with characters a cookie would need quoted: %.60q", v)
	}
}

// checkEveryFieldSet makes sure the fixture covers every field of Session,
// so a field added later but forgotten by a store's encoding is caught.
func checkEveryFieldSet(t *testing.T, s *sessions.Session) {
	t.Helper()
	v := reflect.ValueOf(s).Elem()
	for i := range v.NumField() {
		if f := v.Type().Field(i); f.IsExported() && v.Field(i).IsZero() {
			t.Fatalf("storetest.FullSession leaves Session.%s zero: update the fixture", f.Name)
		}
	}
}

// cutPoints returns lengths to cut an n-character value at: the first and
// last few and some in between.
func cutPoints(n int) []int {
	var cuts []int
	for i := 0; i < n; i++ {
		if i < 12 || i > n-12 || i == n/4 || i == n/3 || i == n/2 || i == 2*n/3 || i == 3*n/4 {
			cuts = append(cuts, i)
		}
	}
	return cuts
}

// flipBits returns which bits of byte i to flip: all eight in the first and
// last bytes (headers, tags), one elsewhere, cycling through them.
func flipBits(i, n int) []int {
	if i < 8 || i >= n-4 {
		return []int{0, 1, 2, 3, 4, 5, 6, 7}
	}
	return []int{i % 8}
}

const b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func replacements(c byte) []byte {
	i := strings.IndexByte(b64url, c)
	if i < 0 {
		return []byte{'A', '_'}
	}
	return []byte{b64url[i^1], b64url[(i+32)%64]}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// randomString returns n random base64url characters.
func randomString(n int) string {
	b := randomBytes(n)
	for i := range b {
		b[i] = b64url[b[i]%64]
	}
	return string(b)
}
