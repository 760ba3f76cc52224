package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/sessions"
)

// managerSuite is the conformance suite of sessions.Manager for one store:
// each case a method.
type managerSuite struct {
	newStore func(t *testing.T, env sessions.Env) sessions.Store
}

// open makes a store of the suite bound to env.
func (suite managerSuite) open(t *testing.T, env sessions.Env) *mgrStore {
	t.Helper()
	st := suite.newStore(t, env)
	m, ok := st.(sessions.Manager)
	if !ok {
		t.Fatalf("%T does not implement sessions.Manager", st)
	}
	return &mgrStore{st: st, m: m, env: env, probe: probeOf(st)}
}

// RunManager runs the conformance suite of sessions.Manager as subtests of
// t: listing (all, by subject), ending by ID, subject, IdP session and all,
// the per-user limit, and expiry.
//
// newStore must return a store that implements sessions.Manager and is
// already bound to env (Bind called). Each case makes its env with NewEnv
// (fresh secrets) and sets MaxPerUser and IdleTimeout as it needs. Stores
// may share a backend (the same Redis server, say): a store only lists and
// ends the sessions it can decrypt.
//
// For stores built on sessions.TicketStore the suite also looks into the
// backend's indexes (found through the embedded TicketStore) to check that
// ended and expired sessions leave them.
func RunManager(t *testing.T, newStore func(t *testing.T, env sessions.Env) sessions.Store) {
	t.Helper()
	suite := managerSuite{newStore: newStore}
	for _, c := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"ListAll", suite.listAll},
		{"FilterBySubject", suite.filterBySubject},
		{"EndID", suite.endID},
		{"EndSubject", suite.endSubject},
		{"EndSID", suite.endSID},
		{"EndSIDOfSubject", suite.endSIDOfSubject},
		{"EndByIssuer", suite.endByIssuer},
		{"EndAll", suite.endAll},
		{"PerUserLimit", suite.perUserLimit},
		{"UpdateDoesNotReviveEnded", suite.updateDoesNotReviveEnded},
		{"UpdateRacingEndDoesNotRevive", suite.updateRacingEndDoesNotRevive},
		{"IncompleteSessionEndedOnUpdate", suite.incompleteSessionEndedOnUpdate},
		{"UpdateIsNotALogin", suite.updateIsNotALogin},
		{"DeleteLeavesListingsAndIndexes", suite.deleteLeavesListingsAndIndexes},
		{"Streaming", suite.streaming},
		{"Expiry", suite.expiry},
	} {
		t.Run(c.name, c.run)
	}
}

// listAll lists every session of the store with its metadata.
func (suite managerSuite) listAll(t *testing.T) {
	env := NewEnv(t)
	env.IdleTimeout = time.Hour // so expires is the idle deadline
	ms := suite.open(t, env)
	pop := ms.populate(t)
	got := ms.list(t, "")
	if len(got) != len(pop) {
		t.Errorf("Sessions listed %d sessions, want the %d saved", len(got), len(pop))
	}
	for _, s := range pop {
		m, ok := got[s.handle]
		if !ok {
			t.Errorf("session %s (sub %q) not listed", s.handle, s.sess.Subject)
			continue
		}
		ms.checkMeta(t, m, s)
	}
}

// filterBySubject lists the sessions of one subject only.
func (suite managerSuite) filterBySubject(t *testing.T) {
	ms := suite.open(t, NewEnv(t))
	pop := ms.populate(t)
	for _, sub := range []string{"alice", "bob", "carol"} {
		got := ms.list(t, sub)
		want := pop.of(sub)
		if len(got) != len(want) {
			t.Errorf("Sessions(%q) listed %d sessions, want %d", sub, len(got), len(want))
		}
		for _, s := range want {
			if m, ok := got[s.handle]; !ok {
				t.Errorf("Sessions(%q) misses %s", sub, s.handle)
			} else {
				ms.checkMeta(t, m, s)
			}
		}
	}
	if got := ms.list(t, "nobody"); len(got) != 0 {
		t.Errorf("Sessions of an unknown subject listed %d sessions", len(got))
	}
}

// endID ends one session by its ID, and nothing for unknown, malformed or foreign IDs.
func (suite managerSuite) endID(t *testing.T) {
	ms := suite.open(t, NewEnv(t))
	pop := ms.populate(t)
	victim := pop[2]
	ok, err := ms.m.EndID(t.Context(), victim.handle)
	if err != nil || !ok {
		t.Fatalf("EndID of a live session: %v, %v; want true, nil", ok, err)
	}
	expectNoSession(t, ms.st, victim.value, "session ended by EndID")
	if _, listed := ms.list(t, "")[victim.handle]; listed {
		t.Error("session ended by EndID still listed")
	}
	if _, listed := ms.list(t, victim.sess.Subject)[victim.handle]; listed {
		t.Error("session ended by EndID still listed under its subject")
	}
	ms.expectNotIndexed(t, victim.handle)
	ms.expectLoads(t, pop.except(victim)...)

	other := suite.open(t, NewEnv(t))
	foreign := other.save(t, userSession("alice", "sid-A", Now()))
	for _, id := range []string{
		victim.handle, // again
		ms.env.CookieName + "-" + strings.Repeat("0", 32),
		ms.env.CookieName + "-" + strings.Repeat("g", 32),
		"garbage", "", "_oauth2_proxy", victim.value,
		foreign.handle, // another deployment's: not this store's to end
	} {
		if ok, err := ms.m.EndID(t.Context(), id); ok || err != nil {
			t.Errorf("EndID(%.50q): %v, %v; want false, nil", id, ok, err)
		}
	}
	other.expectLoads(t, foreign)
}

// endSubject ends every session of a subject and only those.
func (suite managerSuite) endSubject(t *testing.T) {
	ms := suite.open(t, NewEnv(t))
	pop := ms.populate(t)
	n, err := ms.m.EndSubject(t.Context(), "", "bob")
	if err != nil || n != len(pop.of("bob")) {
		t.Fatalf("EndSubject(bob): %d, %v; want %d, nil", n, err, len(pop.of("bob")))
	}
	for _, s := range pop.of("bob") {
		expectNoSession(t, ms.st, s.value, "session of a subject ended by EndSubject")
		ms.expectNotIndexed(t, s.handle)
	}
	ms.expectLoads(t, pop.except(pop.of("bob")...)...)
	ms.expectListed(t, pop.except(pop.of("bob")...))
	if n, err := ms.m.EndSubject(t.Context(), "", "bob"); n != 0 || err != nil {
		t.Errorf("EndSubject(bob) again: %d, %v; want 0, nil", n, err)
	}
	if n, err := ms.m.EndSubject(t.Context(), "", "nobody"); n != 0 || err != nil {
		t.Errorf("EndSubject of an unknown subject: %d, %v; want 0, nil", n, err)
	}
}

// endSID ends the sessions of an IdP session (sid).
func (suite managerSuite) endSID(t *testing.T) {
	ms := suite.open(t, NewEnv(t))
	pop := ms.populate(t)
	for _, sid := range []string{"sid-A", "sid-B"} {
		ended := pop.withSID(sid)
		n, err := ms.m.EndSID(t.Context(), "", sid, "")
		if err != nil || n != len(ended) {
			t.Fatalf("EndSID(%s): %d, %v; want %d, nil", sid, n, err, len(ended))
		}
		for _, s := range ended {
			expectNoSession(t, ms.st, s.value, "session of an IdP session ended by EndSID")
			ms.expectNotIndexed(t, s.handle)
		}
		pop = pop.except(ended...)
		ms.expectLoads(t, pop...)
		ms.expectListed(t, pop)
	}
	// bob's session without a sid, and carol's of other sids, remain.
	if len(pop.of("bob")) != 1 || len(pop.of("carol")) != 2 {
		t.Fatalf("fixture: %d of bob's and %d of carol's sessions left", len(pop.of("bob")), len(pop.of("carol")))
	}
	if n, err := ms.m.EndSID(t.Context(), "", "unknown-sid", ""); n != 0 || err != nil {
		t.Errorf("EndSID of an unknown sid: %d, %v; want 0, nil", n, err)
	}
}

// endSIDOfSubject ends, for a sid and a sub, only that subject's sessions of the sid.
func (suite managerSuite) endSIDOfSubject(t *testing.T) {
	ms := suite.open(t, NewEnv(t))
	pop := ms.populate(t)
	// A sid shared by two subjects (an IdP that reuses sids, or a forged
	// index entry): a logout token naming sid and sub ends only that
	// subject's sessions.
	daveA := ms.save(t, userSession("dave", "sid-A", Now()))
	n, err := ms.m.EndSID(t.Context(), "", "sid-A", "dave")
	if err != nil || n != 1 {
		t.Fatalf("EndSID(sid-A, dave): %d, %v; want 1, nil", n, err)
	}
	expectNoSession(t, ms.st, daveA.value, "dave's session of sid-A")
	ms.expectLoads(t, pop...)
	if n, err := ms.m.EndSID(t.Context(), "", "sid-A", "bob"); n != 0 || err != nil {
		t.Errorf("EndSID(sid-A, bob), a sid bob has no session of: %d, %v; want 0, nil", n, err)
	}
	ms.expectLoads(t, pop...)
}

// endByIssuer ends, for an issuer, only the sessions made with that IdP:
// the same sub and sid at two IdPs are two users. Sessions stored without
// an issuer are Env.Issuer's; the listing says whose each one is.
func (suite managerSuite) endByIssuer(t *testing.T) {
	const corp, partners = "https://corp.example", "https://partners.example"
	env := NewEnv(t)
	env.Issuer = corp
	ms := suite.open(t, env)
	of := func(iss, sub, sid string) *savedSession {
		s := userSession(sub, sid, Now())
		s.Issuer = iss
		return ms.save(t, s)
	}
	atCorp, atPartners, legacy := of(corp, "dave", "sid-1"), of(partners, "dave", "sid-1"), of("", "dave", "sid-1")
	for _, m := range ms.list(t, "dave") {
		want := corp
		if m.ID == atPartners.handle {
			want = partners
		}
		if got := m.IssuerOf(env.Issuer); got != want {
			t.Errorf("session %s listed with issuer %q; want %q", m.ID, got, want)
		}
	}
	if n, err := ms.m.EndSubject(t.Context(), partners, "dave"); n != 1 || err != nil {
		t.Fatalf("EndSubject(partners, dave): %d, %v; want 1, nil", n, err)
	}
	expectNoSession(t, ms.st, atPartners.value, "dave's session at partners")
	ms.expectLoads(t, atCorp, legacy)
	again := of(partners, "dave", "sid-1")
	if n, err := ms.m.EndSID(t.Context(), corp, "sid-1", ""); n != 2 || err != nil {
		t.Fatalf("EndSID(corp, sid-1): %d, %v; want 2 (one stored without issuer), nil", n, err)
	}
	expectNoSession(t, ms.st, atCorp.value, "dave's session at corp")
	expectNoSession(t, ms.st, legacy.value, "dave's session stored without issuer (corp's)")
	ms.expectLoads(t, again)
	if n, err := ms.m.EndSID(t.Context(), partners, "sid-1", "dave"); n != 1 || err != nil {
		t.Fatalf("EndSID(partners, sid-1, dave): %d, %v; want 1, nil", n, err)
	}
}

// endAll ends every session of the store, and none of another deployment's.
func (suite managerSuite) endAll(t *testing.T) {
	ms := suite.open(t, NewEnv(t))
	other := suite.open(t, NewEnv(t))
	foreign := other.save(t, userSession("alice", "sid-A", Now()))
	pop := ms.populate(t)
	n, err := ms.m.EndAll(t.Context())
	if err != nil || n != len(pop) {
		t.Fatalf("EndAll: %d, %v; want %d, nil", n, err, len(pop))
	}
	for _, s := range pop {
		expectNoSession(t, ms.st, s.value, "session ended by EndAll")
		ms.expectNotIndexed(t, s.handle)
	}
	if got := ms.list(t, ""); len(got) != 0 {
		t.Errorf("%d sessions listed after EndAll", len(got))
	}
	// Another deployment's sessions in a shared backend are not ours.
	other.expectLoads(t, foreign)
	if n, err := ms.m.EndAll(t.Context()); n != 0 || err != nil {
		t.Errorf("EndAll again: %d, %v; want 0, nil", n, err)
	}
}

// perUserLimit ends a subject's oldest sessions beyond MaxPerUser at login.
func (suite managerSuite) perUserLimit(t *testing.T) {
	env := NewEnv(t)
	env.MaxPerUser = 2
	ms := suite.open(t, env)
	base := Now().Add(-time.Hour)
	bob := sessionsList{
		ms.save(t, userSession("bob", "", base)),
		ms.save(t, userSession("bob", "", base.Add(time.Second))),
	}
	var alice sessionsList
	for i := range 3 {
		alice = append(alice, ms.save(t, userSession("alice", "", base.Add(time.Duration(i)*time.Minute))))
	}
	expectNoSession(t, ms.st, alice[0].value, "the oldest of three logins with max 2 per user")
	ms.expectNotIndexed(t, alice[0].handle)
	ms.expectLoads(t, alice[1], alice[2])
	ms.expectLoads(t, bob...)
	ms.expectListed(t, append(slices.Clone(bob), alice[1:]...))
	if got := ms.list(t, "alice"); len(got) != 2 {
		t.Errorf("alice has %d sessions listed, want 2", len(got))
	}
	// A prev that is no ticket of this store makes a new session:
	// a login, which the limit applies to.
	// The session saved is the one compared with: one made again later
	// would carry later token times whenever a second ticked in between
	// (more likely the slower the store: this failed on a Cluster).
	fourth := userSession("alice", "", base.Add(3*time.Minute))
	v, err := ms.st.Save(t.Context(), "not-a-ticket", fourth)
	if err != nil {
		t.Fatalf("Save with an unusable prev: %v", err)
	}
	expectNoSession(t, ms.st, alice[1].value, "the oldest of three logins after a fourth (made with an unusable prev)")
	if got := ms.list(t, "alice"); len(got) != 2 {
		t.Errorf("alice has %d sessions listed, want 2", len(got))
	}
	ms.expectLoads(t, alice[2], &savedSession{value: v, sess: fourth})
}

// updateDoesNotReviveEnded refuses to update a session ended by any Manager call.
func (suite managerSuite) updateDoesNotReviveEnded(t *testing.T) {
	// A request that loaded the session before it was ended (by an
	// operator, a back-channel logout, the per-user limit) saves it
	// afterwards: the session must stay ended.
	ms := suite.open(t, NewEnv(t))
	pop := ms.populate(t)
	ends := map[string]func(s *savedSession) error{
		"EndID": func(s *savedSession) error { _, err := ms.m.EndID(t.Context(), s.handle); return err },
		"EndSID": func(s *savedSession) error {
			_, err := ms.m.EndSID(t.Context(), "", s.sess.SID, "")
			return err
		},
		"EndSubject": func(s *savedSession) error {
			_, err := ms.m.EndSubject(t.Context(), "", s.sess.Subject)
			return err
		},
	}
	victims := map[string]*savedSession{"EndID": pop[3], "EndSID": pop[0], "EndSubject": pop[4]}
	for name, end := range ends {
		s := victims[name]
		if err := end(s); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		upd := Clone(s.sess)
		upd.LastSeen = upd.LastSeen.Add(time.Second)
		upd.AccessToken = "refreshed-" + randomString(20)
		if _, err := ms.st.Save(t.Context(), s.value, upd); !errors.Is(err, sessions.ErrNoSession) {
			t.Errorf("update of a session ended by %s: %v, want ErrNoSession", name, err)
		}
		expectNoSession(t, ms.st, s.value, "session updated after "+name)
		if _, listed := ms.list(t, "")[s.handle]; listed {
			t.Errorf("session updated after %s is listed again", name)
		}
		ms.expectNotIndexed(t, s.handle)
	}
}

// updateRacingEndDoesNotRevive never brings back a session ended while updates of it run.
func (suite managerSuite) updateRacingEndDoesNotRevive(t *testing.T) {
	// Updates (refreshes, idle touches) running while the session is
	// ended: whatever their interleaving, it stays ended. A check
	// followed by a separate write would let one of them bring it back.
	ms := suite.open(t, NewEnv(t))
	for round := 0; round < 20; round++ {
		sess := userSession(fmt.Sprintf("racer%d", round), "", time.Now().Truncate(time.Millisecond))
		v, err := ms.st.Save(t.Context(), "", sess)
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					upd := Clone(sess)
					upd.AccessToken = "refreshed-" + randomString(8)
					if _, err := ms.st.Save(t.Context(), v, upd); err != nil && !errors.Is(err, sessions.ErrNoSession) {
						t.Errorf("update: %v", err)
						return
					}
				}
			}()
		}
		time.Sleep(2 * time.Millisecond)
		if err := ms.st.Delete(t.Context(), v); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
		close(stop)
		wg.Wait()
		expectNoSession(t, ms.st, v, fmt.Sprintf("round %d: session updated while it was ended", round))
		if _, listed := ms.list(t, "")[v[:strings.LastIndexByte(v, '.')]]; listed {
			t.Errorf("round %d: the ended session is listed again", round)
		}
	}
}

// incompleteSessionEndedOnUpdate ends a session missing one of its records at its next update.
func (suite managerSuite) incompleteSessionEndedOnUpdate(t *testing.T) {
	// One of a session's two records gone behind the store's back
	// (evicted, lost in a failover): the next update ends it whole
	// rather than leaving a session the admin API cannot see or end.
	ms := suite.open(t, NewEnv(t))
	if ms.probe == nil {
		t.Skip("not built on sessions.TicketStore")
	}
	for _, gone := range []string{".meta", ""} {
		sess := userSession("partial"+gone, "sid-partial"+gone, time.Now().Truncate(time.Millisecond))
		v, err := ms.st.Save(t.Context(), "", sess)
		if err != nil {
			t.Fatal(err)
		}
		handle := v[:strings.LastIndexByte(v, '.')]
		if err := ms.probe.b.Delete(t.Context(), ms.probe.keyPrefix+handle+gone); err != nil {
			t.Fatal(err)
		}
		upd := Clone(sess)
		upd.LastSeen = upd.LastSeen.Add(time.Second)
		if _, err := ms.st.Save(t.Context(), v, upd); !errors.Is(err, sessions.ErrNoSession) {
			t.Errorf("update with the %q record gone: %v, want ErrNoSession", "record"+gone, err)
		}
		expectNoSession(t, ms.st, v, "session updated with a record gone")
		if _, listed := ms.list(t, "")[handle]; listed {
			t.Errorf("session with the %q record gone is still listed after the update", "record"+gone)
		}
		ms.expectNotIndexed(t, handle)
	}
}

// updateIsNotALogin keeps the ticket and the listing of a session across updates.
func (suite managerSuite) updateIsNotALogin(t *testing.T) {
	env := NewEnv(t)
	env.MaxPerUser = 2
	ms := suite.open(t, env)
	base := Now().Add(-time.Hour)
	a1 := ms.save(t, userSession("alice", "", base))
	a2 := ms.save(t, userSession("alice", "", base.Add(time.Minute)))
	for i := range 3 {
		upd := Clone(a1.sess)
		upd.LastSeen = upd.LastSeen.Add(time.Duration(i+1) * time.Minute)
		upd.AccessToken = "refreshed-" + randomString(20)
		v, err := ms.st.Save(t.Context(), a1.value, upd)
		if err != nil {
			t.Fatalf("update: %v", err)
		}
		if v != a1.value {
			t.Fatalf("an update changed the cookie value")
		}
		a1.sess = upd
	}
	ms.expectLoads(t, a1, a2)
	ms.expectListed(t, sessionsList{a1, a2})
	// The next login ends the oldest login, however recently used.
	a3 := ms.save(t, userSession("alice", "", base.Add(2*time.Minute)))
	expectNoSession(t, ms.st, a1.value, "the oldest login after a third one")
	ms.expectLoads(t, a2, a3)
}

// deleteLeavesListingsAndIndexes takes a deleted session out of listings and indexes.
func (suite managerSuite) deleteLeavesListingsAndIndexes(t *testing.T) {
	ms := suite.open(t, NewEnv(t))
	pop := ms.populate(t)
	bob := pop.of("bob")
	for _, s := range bob {
		if s.sess.SID != "" {
			ms.expectIndexed(t, s.handle, 2) // sub and sid
		} else {
			ms.expectIndexed(t, s.handle, 1)
		}
		if err := ms.st.Delete(t.Context(), s.value); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		ms.expectNotIndexed(t, s.handle)
	}
	ms.expectListed(t, pop.except(bob...))
	if got := ms.list(t, "bob"); len(got) != 0 {
		t.Errorf("bob has %d sessions listed after deleting them all", len(got))
	}
	if n, err := ms.m.EndSubject(t.Context(), "", "bob"); n != 0 || err != nil {
		t.Errorf("EndSubject after Delete: %d, %v; want 0, nil", n, err)
	}
	if n, err := ms.m.EndSID(t.Context(), "", "sid-B", ""); n != 0 || err != nil {
		t.Errorf("EndSID after Delete: %d, %v; want 0, nil", n, err)
	}
}

// streaming streams listings, stops at the callback's error, and lists many sessions.
func (suite managerSuite) streaming(t *testing.T) {
	const total, subjects = 2000, 500
	ms := suite.open(t, NewEnv(t))
	want := make(map[string]bool, total)
	base := Now().Add(-time.Hour)
	for i := range total {
		s := DexSession(false)
		s.Subject = fmt.Sprintf("user-%d", i%subjects)
		s.Email = s.Subject + "@example.com"
		s.CreatedAt = base.Add(time.Duration(i) * time.Millisecond)
		v, err := ms.st.Save(t.Context(), "", s)
		if err != nil {
			t.Fatalf("Save %d: %v", i, err)
		}
		want[ms.handle(t, v)] = true
	}
	seen := make(map[string]int, total)
	err := ms.m.Sessions(t.Context(), "", func(m sessions.Meta) error {
		seen[m.ID]++
		return nil
	})
	if err != nil {
		t.Fatalf("Sessions: %v", err)
	}
	for id, n := range seen {
		switch {
		case !want[id]:
			t.Errorf("listed %s, which was not saved", id)
		case n != 1:
			t.Errorf("listed %s %d times, want once", id, n)
		}
	}
	for id := range want {
		if seen[id] == 0 {
			t.Errorf("%s was saved but not listed", id)
		}
	}
	if got := ms.list(t, "user-7"); len(got) != total/subjects {
		t.Errorf("user-7 has %d sessions listed, want %d", len(got), total/subjects)
	}

	// An error from fn stops the walk and is returned.
	errStop := errors.New("stop here")
	calls := 0
	err = ms.m.Sessions(t.Context(), "", func(sessions.Meta) error {
		calls++
		if calls == 10 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) || calls != 10 {
		t.Errorf("fn failing at call 10: Sessions returned %v after %d calls; want the error after 10", err, calls)
	}

	if n, err := ms.m.EndAll(t.Context()); n != total || err != nil {
		t.Errorf("EndAll: %d, %v; want %d, nil", n, err, total)
	}
}

// expiry leaves expired sessions out of loads, listings and indexes.
func (suite managerSuite) expiry(t *testing.T) {
	ms := suite.open(t, NewEnv(t))
	long := ms.save(t, userSession("alice", "sid-A", Now().Add(-time.Minute)))
	exp := Now().Add(2 * time.Second)
	if time.Until(exp) < 1500*time.Millisecond {
		exp = exp.Add(time.Second) // Save refuses less than a second
	}
	s := userSession("alice", "sid-A", Now())
	s.ExpiresAt = exp
	short := ms.save(t, s)
	ms.expectListed(t, sessionsList{long, short})
	ms.expectIndexed(t, short.handle, 2)

	time.Sleep(time.Until(exp) + 1200*time.Millisecond)
	expectNoSession(t, ms.st, short.value, "expired session")
	ms.expectListed(t, sessionsList{long})
	if got := ms.list(t, "alice"); len(got) != 1 {
		t.Errorf("alice has %d sessions listed after one expired, want 1", len(got))
	}
	ms.expectNotIndexed(t, short.handle)
	ms.expectIndexed(t, long.handle, 2)
	ms.expectLoads(t, long)
	if n, err := ms.m.EndSID(t.Context(), "", "sid-A", ""); n != 1 || err != nil {
		t.Errorf("EndSID after one of its sessions expired: %d, %v; want 1, nil", n, err)
	}
}

// mgrStore is a store under test with its Manager view and env.
type mgrStore struct {
	st    sessions.Store
	m     sessions.Manager
	env   sessions.Env
	probe *indexProbe
}

type savedSession struct {
	value  string
	handle string
	sess   *sessions.Session
}

type sessionsList []*savedSession

func (l sessionsList) of(sub string) sessionsList {
	var out sessionsList
	for _, s := range l {
		if s.sess.Subject == sub {
			out = append(out, s)
		}
	}
	return out
}

func (l sessionsList) withSID(sid string) sessionsList {
	var out sessionsList
	for _, s := range l {
		if s.sess.SID == sid {
			out = append(out, s)
		}
	}
	return out
}

func (l sessionsList) except(drop ...*savedSession) sessionsList {
	var out sessionsList
	for _, s := range l {
		if !slices.Contains(drop, s) {
			out = append(out, s)
		}
	}
	return out
}

// userSession is a realistic session (tokens included) of sub, logged in
// at created, last seen a minute later (or now, if sooner).
func userSession(sub, sid string, created time.Time) *sessions.Session {
	s := DexSession(true)
	s.Subject = sub
	s.Email = sub + "@example.com"
	s.Name = "User " + strings.ToUpper(sub[:1]) + sub[1:]
	s.SID = sid
	s.CreatedAt = created
	s.LastSeen = created.Add(time.Minute)
	if now := Now(); s.LastSeen.After(now) {
		s.LastSeen = now
	}
	if s.LastSeen.Before(created) {
		s.LastSeen = created
	}
	s.ExpiresAt = created.Add(24 * time.Hour)
	return s
}

// populate saves six sessions: alice twice in one IdP session (sid-A), bob
// once with sid-B and once without a sid, carol in two IdP sessions.
func (ms *mgrStore) populate(t *testing.T) sessionsList {
	t.Helper()
	base := Now().Add(-10 * time.Minute)
	var l sessionsList
	for i, f := range []struct{ sub, sid string }{
		{"alice", "sid-A"}, {"alice", "sid-A"},
		{"bob", "sid-B"}, {"bob", ""},
		{"carol", "sid-C1"}, {"carol", "sid-C2"},
	} {
		l = append(l, ms.save(t, userSession(f.sub, f.sid, base.Add(time.Duration(i)*time.Second))))
	}
	return l
}

func (ms *mgrStore) save(t *testing.T, s *sessions.Session) *savedSession {
	t.Helper()
	v := save(t, ms.st, "", s)
	return &savedSession{value: v, handle: ms.handle(t, v), sess: s}
}

// handle is the ticket handle of a cookie value: the ID Meta must carry.
func (ms *mgrStore) handle(t *testing.T, value string) string {
	t.Helper()
	tk, ok := sessions.ParseTicket(ms.env.CookieName, value)
	if !ok {
		t.Fatalf("cookie value %.60q is not a ticket", value)
	}
	return tk.Handle
}

// list returns the sessions Sessions yields, by ID, failing on one yielded
// twice.
func (ms *mgrStore) list(t *testing.T, sub string) map[string]sessions.Meta {
	t.Helper()
	got := map[string]sessions.Meta{}
	err := ms.m.Sessions(t.Context(), sub, func(m sessions.Meta) error {
		if _, dup := got[m.ID]; dup {
			t.Errorf("Sessions(%q) yielded %s twice", sub, m.ID)
		}
		got[m.ID] = m
		return nil
	})
	if err != nil {
		t.Fatalf("Sessions(%q): %v", sub, err)
	}
	return got
}

// expectListed checks that Sessions lists exactly want.
func (ms *mgrStore) expectListed(t *testing.T, want sessionsList) {
	t.Helper()
	got := ms.list(t, "")
	for _, s := range want {
		if m, ok := got[s.handle]; !ok {
			t.Errorf("session %s (sub %q) not listed", s.handle, s.sess.Subject)
		} else {
			ms.checkMeta(t, m, s)
		}
		delete(got, s.handle)
	}
	for id, m := range got {
		t.Errorf("session %s (sub %q) listed, but was ended or never saved", id, m.Subject)
	}
}

func (ms *mgrStore) expectLoads(t *testing.T, list ...*savedSession) {
	t.Helper()
	for _, s := range list {
		got, err := ms.st.Load(t.Context(), s.value)
		if err != nil {
			t.Errorf("session of %q that should be untouched: Load: %v", s.sess.Subject, err)
			continue
		}
		if d := Diff(s.sess, got); d != "" {
			t.Errorf("session of %q loads differently:\n%s", s.sess.Subject, d)
		}
	}
}

// checkMeta compares a listed Meta with the session saved, and checks it
// carries no token.
func (ms *mgrStore) checkMeta(t *testing.T, m sessions.Meta, s *savedSession) {
	t.Helper()
	want := s.sess
	if m.ID != s.handle {
		t.Errorf("Meta.ID %q, want the ticket handle %q", m.ID, s.handle)
	}
	if m.Store == "" {
		t.Errorf("Meta.Store is empty")
	}
	for _, f := range []struct{ name, got, want string }{
		{"Issuer", m.Issuer, want.Issuer},
		{"Subject", m.Subject, want.Subject},
		{"Email", m.Email, want.Email},
		{"Name", m.Name, want.Name},
		{"SID", m.SID, want.SID},
	} {
		if f.got != f.want {
			t.Errorf("%s: Meta.%s %q, want %q", s.handle, f.name, f.got, f.want)
		}
	}
	for _, f := range []struct {
		name      string
		got, want time.Time
	}{
		{"CreatedAt", m.CreatedAt, want.CreatedAt},
		{"LastSeen", m.LastSeen, want.LastSeen},
		{"ExpiresAt", m.ExpiresAt, want.Deadline(ms.env.IdleTimeout)},
	} {
		if !f.got.Equal(f.want) {
			t.Errorf("%s: Meta.%s %s, want %s", s.handle, f.name, short(f.got), short(f.want))
		}
	}
	b, _ := json.Marshal(m)
	for _, tok := range []string{want.IDToken, want.AccessToken, want.RefreshToken} {
		for part := range strings.SplitSeq(tok, ".") {
			if len(part) >= 16 && strings.Contains(string(b), part) {
				t.Errorf("%s: Meta carries token material %.20q…", s.handle, part)
			}
		}
	}
	if v := reflect.ValueOf(m); v.NumField() != 10 {
		t.Errorf("Meta has %d fields; check the new ones carry no token, then update this count", v.NumField())
	}
}

// expectIndexed checks that n index sets list the handle (sub, and sid
// when the session has one).
func (ms *mgrStore) expectIndexed(t *testing.T, handle string, n int) {
	t.Helper()
	if ms.probe == nil {
		return
	}
	if got := ms.probe.holders(t, handle); len(got) != n {
		t.Errorf("%s is in %d index sets %q, want %d", handle, len(got), got, n)
	}
}

func (ms *mgrStore) expectNotIndexed(t *testing.T, handle string) {
	t.Helper()
	ms.expectIndexed(t, handle, 0)
}

// indexProbe looks into the indexes of a store built on sessions.TicketStore.
type indexProbe struct {
	b         sessions.Backend
	keyPrefix string // KeyPrefix
	prefix    string // KeyPrefix + CookieName + ":"
}

// probeOf finds the TicketStore a store embeds, or returns nil.
func probeOf(st sessions.Store) *indexProbe {
	tc, ok := st.(interface{ Tickets() *sessions.TicketStore })
	if !ok || tc.Tickets().Backend == nil {
		return nil
	}
	ts := tc.Tickets()
	return &indexProbe{b: ts.Backend, keyPrefix: ts.KeyPrefix, prefix: ts.IndexPrefix()}
}

// holders returns the index sets (by subject or sid) whose live members
// include handle.
func (p *indexProbe) holders(t *testing.T, handle string) []string {
	t.Helper()
	var keys []string
	err := p.b.Scan(t.Context(), p.prefix, func(batch []string) error {
		for _, k := range batch {
			if strings.HasPrefix(k, p.prefix+"sub:") || strings.HasPrefix(k, p.prefix+"sid:") {
				keys = append(keys, k)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("backend Scan: %v", err)
	}
	var out []string
	for _, k := range keys {
		ms, err := p.b.IndexMembers(t.Context(), k)
		if err != nil {
			t.Fatalf("backend IndexMembers: %v", err)
		}
		if slices.Contains(ms, handle) {
			out = append(out, strings.TrimPrefix(k, p.prefix))
		}
	}
	slices.Sort(out)
	return slices.Compact(out) // a backend's scan may repeat a key
}
