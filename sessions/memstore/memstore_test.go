package memstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/storetest"
)

// provision provisions a Store as Caddy would, and cleans it up when the
// test ends (Cleanup twice is harmless).
func provision(t *testing.T, s *Store) (*Store, error) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	if s.logger == nil {
		s.logger = zap.NewNop()
	}
	if err := s.Provision(ctx); err != nil {
		cancel()
		return nil, err
	}
	t.Cleanup(func() {
		_ = s.Cleanup()
		cancel()
	})
	return s, nil
}

// newStore provisions s and binds it to env.
func newStore(t *testing.T, s *Store, env sessions.Env) *Store {
	t.Helper()
	s, err := provision(t, s)
	if err != nil {
		t.Fatalf("provision: %v", err)
	}
	if err := s.Bind(env); err != nil {
		t.Fatal(err)
	}
	return s
}

func observed() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	return zap.New(core), logs
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) sessions.Store {
		return newStore(t, &Store{}, storetest.NewEnv(t))
	})
}

func TestManager(t *testing.T) {
	storetest.RunManager(t, func(t *testing.T, env sessions.Env) sessions.Store {
		return newStore(t, &Store{}, env)
	})
}

// TestManagerStateFile runs the manager suite on stores that each have a
// state file, so every case also ends with a save.
func TestManagerStateFile(t *testing.T) {
	if testing.Short() {
		t.Skip("the manager suite runs on the default store already")
	}
	storetest.RunManager(t, func(t *testing.T, env sessions.Env) sessions.Store {
		return newStore(t, &Store{StateFile: filepath.Join(t.TempDir(), "sessions")}, env)
	})
}

// userSessions saves n realistic sessions of distinct users (some with a
// sid) and returns their cookie values and the sessions.
func userSessions(t *testing.T, st sessions.Store, n int) ([]string, []*sessions.Session) {
	t.Helper()
	var values []string
	var list []*sessions.Session
	for i := range n {
		s := storetest.DexSession(true)
		s.Subject = fmt.Sprintf("subject-%d-%s", i, s.Subject)
		s.Email = fmt.Sprintf("user%d@example.org", i)
		s.Name = fmt.Sprintf("Person Number%d", i)
		if i%2 == 0 {
			s.SID = fmt.Sprintf("idp-session-%d", i)
		}
		v, err := st.Save(t.Context(), "", s)
		if err != nil {
			t.Fatal(err)
		}
		values = append(values, v)
		list = append(list, s)
	}
	return values, list
}

func expectSessions(t *testing.T, st sessions.Store, values []string, want []*sessions.Session) {
	t.Helper()
	for i, v := range values {
		got, err := st.Load(t.Context(), v)
		if err != nil {
			t.Errorf("session %d: Load: %v", i, err)
			continue
		}
		if d := storetest.Diff(want[i], got); d != "" {
			t.Errorf("session %d differs:\n%s", i, d)
		}
	}
}

func countSessions(t *testing.T, st *Store) int {
	t.Helper()
	n := 0
	if err := st.Sessions(t.Context(), "", func(sessions.Meta) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStateFileRestart: sessions saved, Caddy stopped (the last cleanup
// writes the file), a new store on the same file loads them from their
// cookie values; the file is 0600 and holds nothing in clear.
func TestStateFileRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "sessions.bin")
	if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	env := storetest.NewEnv(t)
	env.IdleTimeout = time.Hour
	a := newStore(t, &Store{StateFile: path}, env)
	values, want := userSessions(t, a, 20)
	if err := a.Delete(t.Context(), values[19]); err != nil {
		t.Fatal(err)
	}
	values, want = values[:19], want[:19]
	if _, err := os.Stat(path); err == nil {
		t.Fatal("state file written before the save interval or the last cleanup")
	}
	if err := a.Cleanup(); err != nil {
		t.Fatalf("cleanup (Caddy stopping): %v", err)
	}

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no state file after the last cleanup: %v", err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("state file mode %o, want 600", mode)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range want {
		for _, secret := range []string{s.Subject, s.Email, s.Name, s.RefreshToken, s.Groups[0]} {
			if secret != "" && bytes.Contains(raw, []byte(secret)) {
				t.Fatalf("state file holds %q in clear", secret)
			}
		}
		if s.SID != "" && bytes.Contains(raw, []byte(s.SID)) {
			t.Fatalf("state file holds the sid %q in clear", s.SID)
		}
		for part := range strings.SplitSeq(s.IDToken+"."+s.AccessToken, ".") {
			if bytes.Contains(raw, []byte(part)) {
				t.Fatalf("state file holds token material %.20q in clear", part)
			}
		}
	}
	for _, v := range values {
		if secret := v[strings.LastIndexByte(v, '.')+1:]; bytes.Contains(raw, []byte(secret)) {
			t.Fatal("state file holds a ticket's secret")
		}
	}
	if bytes.Contains(raw, []byte(`"sub"`)) || bytes.Contains(raw, []byte("eyJ")) {
		t.Error("state file holds readable token material")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("the state directory holds %d files, want only the state file (temporary files left?)", len(entries))
	}

	// A save interrupted by a crash left a temporary file: it goes.
	stale := filepath.Join(filepath.Dir(path), ".sessions.bin.tmp-12345")
	if err := os.WriteFile(stale, []byte("half a save"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := newStore(t, &Store{StateFile: path}, env)
	if _, err := os.Stat(stale); err == nil {
		t.Error("a stale temporary file was left")
	}
	expectSessions(t, b, values, want)
	if n := countSessions(t, b); n != len(values) {
		t.Errorf("%d sessions listed after the restart, want %d", n, len(values))
	}
	if n, err := b.EndSubject(t.Context(), "", want[3].Subject); n != 1 || err != nil {
		t.Errorf("EndSubject after the restart: %d, %v; want 1 (the indexes are restored)", n, err)
	}
	if n, err := b.EndSID(t.Context(), "", want[4].SID, ""); n != 1 || err != nil {
		t.Errorf("EndSID after the restart: %d, %v; want 1", n, err)
	}

	// Another secret cannot read them: the file is not a way in.
	other := newStore(t, &Store{StateFile: path}, storetest.NewEnv(t))
	if _, err := other.Load(t.Context(), values[0]); !errors.Is(err, sessions.ErrNoSession) {
		t.Errorf("state loaded under another secret: Load %v, want ErrNoSession", err)
	}
	if n := countSessions(t, other); n != 0 {
		t.Errorf("another secret lists %d sessions", n)
	}
}

// TestStateFileExpired: what expired while Caddy was stopped is not loaded.
func TestStateFileExpired(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions")
	st := newState(10)
	st.file, st.logger = path, zap.NewNop()
	ctx := t.Context()
	st.Set(ctx, "live", []byte("v1"), time.Hour)
	st.Set(ctx, "gone", []byte("v2"), 50*time.Millisecond)
	st.IndexAdd(ctx, "ix", "live", time.Now().Add(time.Hour))
	st.IndexAdd(ctx, "ix", "gone", time.Now().Add(50*time.Millisecond))
	st.IndexAdd(ctx, "ix2", "gone", time.Now().Add(50*time.Millisecond))
	if err := st.save(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	snap, err := readFile(path, now())
	if err != nil {
		t.Fatal(err)
	}
	back := newState(10)
	back.restore(snap)
	if len(back.values) != 1 || back.values["live"] == nil || len(back.records) != 1 {
		t.Errorf("loaded values %v, want only the live one", keysOf(back.values))
	}
	if len(back.indexes) != 1 || len(back.indexes["ix"].members) != 1 {
		t.Errorf("loaded indexes %v, want ix with one member", back.indexes)
	}
	if got := back.values["live"].in; len(got) != 1 || got[0] != "ix" {
		t.Errorf("restored record is in indexes %q, want [ix]", got)
	}
}

func keysOf[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// TestStateFileCorrupt: a damaged or foreign file means a start with no
// sessions and a WARN line, never a failed start; the next save replaces it.
func TestStateFileCorrupt(t *testing.T) {
	dir := t.TempDir()
	env := storetest.NewEnv(t)
	good := filepath.Join(dir, "good")
	st := newStore(t, &Store{StateFile: good}, env)
	values, _ := userSessions(t, st, 3)
	if err := st.Cleanup(); err != nil {
		t.Fatal(err)
	}
	valid, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(valid)
	flipped[len(flipped)/2] ^= 0x10
	badVersion := bytes.Clone(valid)
	badVersion[len(fileMagic)] = 9

	for name, content := range map[string][]byte{
		"garbage":      []byte("this is not a state file\n"),
		"empty":        {},
		"truncated":    valid[:len(valid)*2/3],
		"no checksum":  valid[:len(valid)-4],
		"bit flipped":  flipped,
		"version 9":    badVersion,
		"trailing":     append(bytes.Clone(valid), 0),
		"huge lengths": append([]byte(fileMagic), 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f),
		"json":         []byte(`{"version":1,"values":[]}`),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sessions")
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			logger, logs := observed()
			st, err := provision(t, &Store{StateFile: path, logger: logger})
			if err != nil {
				t.Fatalf("a damaged state file failed the start: %v", err)
			}
			st.Bind(env)
			if _, err := st.Load(t.Context(), values[0]); !errors.Is(err, sessions.ErrNoSession) {
				t.Errorf("Load from a damaged file: %v, want ErrNoSession", err)
			}
			if n := countSessions(t, st); n != 0 {
				t.Errorf("%d sessions from a damaged file", n)
			}
			warns := logs.FilterLevelExact(zap.WarnLevel).FilterMessageSnippet("state file").All()
			if len(warns) != 1 {
				t.Fatalf("want one WARN about the state file, got %v", logs.All())
			}
			if warns[0].ContextMap()["state_file"] != path {
				t.Errorf("the WARN does not name the file: %v", warns[0].ContextMap())
			}
			// The next save replaces it with a good one.
			v, err := st.Save(t.Context(), "", storetest.FullSession())
			if err != nil {
				t.Fatal(err)
			}
			st.Cleanup()
			again := newStore(t, &Store{StateFile: path}, env)
			if _, err := again.Load(t.Context(), v); err != nil {
				t.Errorf("after the damaged file was replaced: %v", err)
			}
		})
	}

	t.Run("unreadable", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root reads any file")
		}
		path := filepath.Join(t.TempDir(), "sessions")
		if err := os.WriteFile(path, valid, 0o000); err != nil {
			t.Fatal(err)
		}
		logger, logs := observed()
		if _, err := provision(t, &Store{StateFile: path, logger: logger}); err != nil {
			t.Fatalf("an unreadable state file failed the start: %v", err)
		}
		if n := logs.FilterLevelExact(zap.WarnLevel).Len(); n != 1 {
			t.Errorf("%d WARN lines, want 1: %v", n, logs.All())
		}
	})
}

// TestStateFileMissing: a missing file is a first start (no log above
// INFO); a missing directory is a config error, found at once.
func TestStateFileMissing(t *testing.T) {
	logger, logs := observed()
	path := filepath.Join(t.TempDir(), "sessions")
	st, err := provision(t, &Store{StateFile: path, logger: logger})
	if err != nil {
		t.Fatalf("missing state file: %v", err)
	}
	if n := logs.FilterLevelExact(zap.WarnLevel).Len() + logs.FilterLevelExact(zap.ErrorLevel).Len(); n != 0 {
		t.Errorf("a missing state file logged %v", logs.All())
	}
	st.Cleanup()
	if _, err := os.Stat(path); err == nil {
		t.Error("a state file was written though nothing changed")
	}

	for _, c := range []struct{ path, want string }{
		{filepath.Join(t.TempDir(), "no", "such", "dir", "sessions"), "does not exist"},
		{t.TempDir(), "is a directory"},
		{filepath.Join(path+"-file", "sessions"), "does not exist"},
	} {
		_, err := provision(t, &Store{StateFile: c.path})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "state_file") {
			t.Errorf("state_file %s: %v, want an error saying %q", c.path, err, c.want)
		}
	}
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, nil, 0o600)
	if _, err := provision(t, &Store{StateFile: filepath.Join(notDir, "sessions")}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("state_file under a file: %v", err)
	}
	if os.Geteuid() != 0 {
		ro := t.TempDir()
		os.Chmod(ro, 0o500)
		t.Cleanup(func() { os.Chmod(ro, 0o700) })
		if _, err := provision(t, &Store{StateFile: filepath.Join(ro, "sessions")}); err == nil || !strings.Contains(err.Error(), "cannot write") {
			t.Errorf("state_file in a read-only directory: %v", err)
		}
	}
	if _, err := provision(t, &Store{MaxSessions: -1}); err == nil {
		t.Error("max_sessions -1 accepted")
	}
}

// TestReload: a reload provisions the new config while the old one is
// alive, then cleans up the old one: every session is still there, and
// the file is written only when the last user goes.
func TestReload(t *testing.T) {
	for _, withFile := range []bool{false, true} {
		t.Run(fmt.Sprintf("state_file=%v", withFile), func(t *testing.T) {
			cfg := func() *Store { return &Store{} }
			path := filepath.Join(t.TempDir(), "sessions")
			if withFile {
				cfg = func() *Store { return &Store{StateFile: path} }
			}
			env := storetest.NewEnv(t)
			a := newStore(t, cfg(), env)
			values, want := userSessions(t, a, 10)
			b := newStore(t, cfg(), env)
			if b.state != a.state {
				t.Fatal("the reloaded config got other memory")
			}
			if err := a.Cleanup(); err != nil {
				t.Fatal(err)
			}
			expectSessions(t, b, values, want)
			if _, err := os.Stat(path); err == nil {
				t.Error("the state file was written while a config still uses the memory")
			}
			// And the memory is still live: saves, sweeps.
			more, moreWant := userSessions(t, b, 2)
			c := newStore(t, cfg(), env)
			b.Cleanup()
			expectSessions(t, c, append(values, more...), append(want, moreWant...))
			if withFile {
				c.Cleanup()
				d := newStore(t, cfg(), env)
				expectSessions(t, d, append(values, more...), append(want, moreWant...))
			}
		})
	}
}

// TestReloadChangesMax: the config loaded last sets max_sessions, at once.
func TestReloadChangesMax(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions")
	env := storetest.NewEnv(t)
	a := newStore(t, &Store{StateFile: path, MaxSessions: 10}, env)
	userSessions(t, a, 8)
	b := newStore(t, &Store{StateFile: path, MaxSessions: 5}, env)
	a.Cleanup()
	if n := countSessions(t, b); n != 5 {
		t.Errorf("%d sessions after a reload to max_sessions 5", n)
	}
}

// TestSweep: expired entries are never returned, and the background sweep
// removes them from memory.
func TestSweep(t *testing.T) {
	ctx := t.Context()
	st := newState(100)
	st.Set(ctx, "p-a", []byte("a"), 80*time.Millisecond)
	st.Set(ctx, "p-a.meta", []byte("am"), 80*time.Millisecond)
	st.Set(ctx, "p-b", []byte("b"), time.Hour)
	st.IndexAdd(ctx, "p:ix", "p-a", time.Now().Add(80*time.Millisecond))
	st.IndexAdd(ctx, "p:ix", "p-b", time.Now().Add(time.Hour))
	st.IndexAdd(ctx, "p:short", "p-a", time.Now().Add(80*time.Millisecond))
	time.Sleep(120 * time.Millisecond)

	if _, err := st.Get(ctx, "p-a"); !errors.Is(err, sessions.ErrNoSession) {
		t.Errorf("Get of an expired key: %v", err)
	}
	if vals, _ := st.GetMany(ctx, []string{"p-a", "p-a.meta", "p-b"}); vals[0] != nil || vals[1] != nil || string(vals[2]) != "b" {
		t.Errorf("GetMany: %q", vals)
	}
	if ms, _ := st.IndexMembers(ctx, "p:ix"); len(ms) != 1 || ms[0] != "p-b" {
		t.Errorf("IndexMembers: %q", ms)
	}
	if ms, _ := st.IndexMembers(ctx, "p:short"); len(ms) != 0 {
		t.Errorf("IndexMembers of an expired set: %q", ms)
	}
	var scanned []string
	st.Scan(ctx, "p", func(keys []string) error { scanned = append(scanned, keys...); return nil })
	if strings.Join(slices.Sorted(slices.Values(scanned)), " ") != "p-b p:ix" {
		t.Errorf("Scan: %q", scanned)
	}
	if len(st.values) != 3 {
		t.Fatalf("reads removed entries (they hold a read lock): %d values", len(st.values))
	}

	// The background goroutine sweeps.
	defer func(d time.Duration) { sweepInterval = d }(sweepInterval)
	sweepInterval = 20 * time.Millisecond
	bg, err := openState("", 100, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer bg.Destruct()
	bg.Set(ctx, "x-1", []byte("1"), 30*time.Millisecond)
	bg.Set(ctx, "x-1.meta", []byte("1"), 30*time.Millisecond)
	bg.Set(ctx, "x-2", []byte("2"), time.Hour)
	bg.IndexAdd(ctx, "x:ix", "x-1", time.Now().Add(30*time.Millisecond))
	bg.IndexAdd(ctx, "x:gone", "x-1", time.Now().Add(30*time.Millisecond))
	deadline := time.Now().Add(5 * time.Second)
	for {
		bg.mu.RLock()
		nv, ni, nr := len(bg.values), len(bg.indexes), len(bg.records)
		bg.mu.RUnlock()
		if nv == 1 && ni == 0 && nr == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the sweep: %d values, %d indexes, %d records; want 1, 0, 1", nv, ni, nr)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A direct sweep of the first state.
	st.sweep(now())
	if len(st.values) != 1 || len(st.indexes) != 1 || len(st.records) != 1 || st.records[0].key != "p-b" {
		t.Errorf("after sweep: %v / %v", keysOf(st.values), keysOf(st.indexes))
	}
}

// TestMaxSessions: a new session beyond max_sessions ends the sessions
// closest to expiry, with their metadata and index entries; updates and
// other sessions are untouched.
func TestMaxSessions(t *testing.T) {
	env := storetest.NewEnv(t)
	logger, logs := observed()
	st := newStore(t, &Store{MaxSessions: 3, StateFile: filepath.Join(t.TempDir(), "s"), logger: logger}, env)
	ctx := t.Context()
	now := storetest.Now()
	mk := func(sub string, life time.Duration) *sessions.Session {
		s := storetest.DexSession(true)
		s.Subject, s.SID, s.ExpiresAt = sub, "sid-"+sub, now.Add(life)
		return s
	}
	save := func(prev string, s *sessions.Session) string {
		v, err := st.Save(ctx, prev, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	a := save("", mk("a", 3*time.Hour))
	b := save("", mk("b", 1*time.Hour)) // closest to expiry
	c := save("", mk("c", 2*time.Hour))
	// Updates at the limit evict nothing.
	for range 3 {
		save(c, mk("c", 2*time.Hour))
	}
	if n := countSessions(t, st); n != 3 {
		t.Fatalf("%d sessions after updates at the limit, want 3", n)
	}
	d := save("", mk("d", 4*time.Hour))
	if _, err := st.Load(ctx, b); !errors.Is(err, sessions.ErrNoSession) {
		t.Errorf("the session closest to expiry was not evicted: %v", err)
	}
	for _, v := range []string{a, c, d} {
		if _, err := st.Load(ctx, v); err != nil {
			t.Errorf("a session further from expiry was evicted: %v", err)
		}
	}
	tb, _ := sessions.ParseTicket(env.CookieName, b)
	st.state.mu.RLock()
	if st.state.values[tb.Handle+".meta"] != nil {
		t.Error("the evicted session's metadata is still there")
	}
	for k, ix := range st.state.indexes {
		if ix.find(tb.Handle) >= 0 {
			t.Errorf("the evicted session is still in index %s", k)
		}
	}
	nidx, nval := len(st.state.indexes), len(st.state.values)
	st.state.mu.RUnlock()
	if nidx != 6 || nval != 6 {
		t.Errorf("%d index sets and %d values for 3 sessions with a sid each, want 6 and 6", nidx, nval)
	}
	if n, err := st.EndSubject(ctx, "", "b"); n != 0 || err != nil {
		t.Errorf("EndSubject of the evicted session's user: %d, %v", n, err)
	}
	// A flood of logins stays within the bound.
	for i := range 50 {
		save("", mk(fmt.Sprint("flood", i), time.Duration(i+1)*time.Minute))
	}
	if n := countSessions(t, st); n != 3 {
		t.Errorf("%d sessions after a flood, want 3", n)
	}
	st.state.mu.RLock()
	nidx, nval = len(st.state.indexes), len(st.state.values)
	st.state.mu.RUnlock()
	if nidx != 6 || nval != 6 {
		t.Errorf("after a flood: %d index sets, %d values, want 6 and 6", nidx, nval)
	}
	st.Cleanup() // the final log line
	if warns := logs.FilterMessageSnippet("max_sessions").All(); len(warns) != 1 || warns[0].ContextMap()["ended"] != uint64(51) {
		t.Errorf("eviction log: %v", logs.All())
	}
}

// TestBackendCopies: callers cannot alias the backend's memory.
func TestBackendCopies(t *testing.T) {
	ctx := t.Context()
	st := newState(10)
	in := []byte("value")
	st.Set(ctx, "k", in, time.Hour)
	in[0] = 'X'
	got, _ := st.Get(ctx, "k")
	if string(got) != "value" {
		t.Fatalf("changing the slice given to Set changed the stored value: %q", got)
	}
	got[0] = 'Y'
	many, _ := st.GetMany(ctx, []string{"k", "missing"})
	if string(many[0]) != "value" || many[1] != nil {
		t.Fatalf("changing the slice Get returned changed the stored value: %q", many)
	}
	many[0][0] = 'Z'
	if got, _ := st.Get(ctx, "k"); string(got) != "value" {
		t.Fatalf("changing the slice GetMany returned changed the stored value: %q", got)
	}
	st.Set(ctx, "empty", nil, time.Hour)
	if many, _ := st.GetMany(ctx, []string{"empty"}); many[0] == nil {
		t.Error("an empty value reads as missing")
	}
	st.IndexAdd(ctx, "ix", "m", time.Now().Add(time.Hour))
	ms, _ := st.IndexMembers(ctx, "ix")
	ms[0] = "changed"
	if ms, _ := st.IndexMembers(ctx, "ix"); ms[0] != "m" {
		t.Fatalf("changing IndexMembers' result changed the set")
	}
	if err := st.Delete(ctx, "k", "missing"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "k"); !errors.Is(err, sessions.ErrNoSession) {
		t.Fatalf("Get after Delete: %v", err)
	}
}

// TestIndexLarge: a set with many members (a shared account) stays exact
// through adds, re-adds and removals.
func TestIndexLarge(t *testing.T) {
	ctx := t.Context()
	st := newState(1 << 20)
	exp := time.Now().Add(time.Hour)
	const n = 500
	for i := range n {
		st.IndexAdd(ctx, "ix", fmt.Sprint("m", i), exp)
	}
	for i := range n {
		st.IndexAdd(ctx, "ix", fmt.Sprint("m", i), exp.Add(time.Minute)) // no duplicates
	}
	for i := 0; i < n; i += 2 {
		st.IndexRemove(ctx, "ix", fmt.Sprint("m", i))
	}
	ms, _ := st.IndexMembers(ctx, "ix")
	if len(ms) != n/2 {
		t.Fatalf("%d members, want %d", len(ms), n/2)
	}
	seen := map[string]bool{}
	for _, m := range ms {
		var i int
		fmt.Sscanf(m, "m%d", &i)
		if i%2 == 0 || seen[m] {
			t.Fatalf("member %s should not be there (or is twice)", m)
		}
		seen[m] = true
	}
	ix := st.indexes["ix"]
	for i, m := range ix.members {
		if ix.find(m.name) != i {
			t.Fatalf("position of %s is wrong", m.name)
		}
	}
	for i := 1; i < n; i += 2 {
		st.IndexRemove(ctx, "ix", fmt.Sprint("m", i))
	}
	if len(st.indexes) != 0 {
		t.Error("an empty set is kept")
	}
}

// TestConcurrent: every operation at once, with sweeps and saves running,
// under -race.
func TestConcurrent(t *testing.T) {
	defer func(a, b time.Duration) { sweepInterval, saveInterval = a, b }(sweepInterval, saveInterval)
	sweepInterval, saveInterval = 5*time.Millisecond, 10*time.Millisecond
	env := storetest.NewEnv(t)
	env.MaxPerUser = 3
	path := filepath.Join(t.TempDir(), "sessions")
	st := newStore(t, &Store{StateFile: path, MaxSessions: 200}, env)
	ctx := t.Context()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for r := range 40 {
				s := storetest.DexSession(true)
				s.Subject = fmt.Sprintf("user-%d-%d", w, r%5)
				s.SID = fmt.Sprintf("sid-%d", r%7)
				v, err := st.Save(ctx, "", s)
				if err != nil {
					t.Errorf("Save: %v", err)
					return
				}
				if _, err := st.Load(ctx, v); err != nil && !errors.Is(err, sessions.ErrNoSession) {
					t.Errorf("Load: %v", err)
				}
				s.LastSeen = s.LastSeen.Add(time.Second)
				// Ended meanwhile (EndAll, the limits) is no error.
				if _, err := st.Save(ctx, v, s); err != nil && !errors.Is(err, sessions.ErrNoSession) {
					t.Errorf("update: %v", err)
				}
				switch r % 4 {
				case 0:
					st.Delete(ctx, v)
				case 1:
					st.EndSID(ctx, "", s.SID, "")
				case 2:
					st.Sessions(ctx, "", func(sessions.Meta) error { return nil })
				case 3:
					st.EndSubject(ctx, "", s.Subject)
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			st.EndAll(ctx)
			time.Sleep(2 * time.Millisecond)
		}
	})
	// A reload in the middle of it.
	wg.Go(func() {
		other := newStore(t, &Store{StateFile: path, MaxSessions: 200}, env)
		time.Sleep(20 * time.Millisecond)
		other.Cleanup()
	})
	wg.Wait()
	if err := st.Cleanup(); err != nil {
		t.Fatal(err)
	}
	again := newStore(t, &Store{StateFile: path}, env)
	countSessions(t, again)
}

func TestCaddyfile(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Store
		err  string
	}{
		{in: `memory`, want: Store{}},
		{in: "memory {\n}", want: Store{}},
		{in: "memory {\nstate_file /var/lib/caddy/sessions\nmax_sessions 5000\n}", want: Store{StateFile: "/var/lib/caddy/sessions", MaxSessions: 5000}},
		{in: "memory {\nmax_sessions 0\n}", want: Store{}},
		{in: "memory extra", err: "wrong argument count"},
		{in: "memory {\nstate_file\n}", err: "state_file needs a value"},
		{in: "memory {\nstate_file a b\n}", err: "state_file takes one value"},
		{in: "memory {\nmax_sessions -1\n}", err: "max_sessions must be a number of at least 0"},
		{in: "memory {\nmax_sessions lots\n}", err: "max_sessions must be a number of at least 0"},
		{in: "memory {\nurl redis://x\n}", err: `unknown memory store option "url"`},
	} {
		var s Store
		err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.in))
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: %v, want %q", c.in, err, c.err)
			}
		case err != nil:
			t.Errorf("%q: %v", c.in, err)
		case s.StateFile != c.want.StateFile || s.MaxSessions != c.want.MaxSessions:
			t.Errorf("%q: %+v, want %+v", c.in, s, c.want)
		}
	}
}

func TestModule(t *testing.T) {
	mod, err := caddy.GetModule("http.handlers.oidc_session.stores.memory")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mod.New().(*Store); !ok {
		t.Fatalf("module makes %T", mod.New())
	}
	st := newStore(t, &Store{}, storetest.NewEnv(t))
	if st.TicketStore.Name != "memory" {
		t.Errorf("store name %q", st.TicketStore.Name)
	}
}

func TestBackendConformance(t *testing.T) {
	storetest.RunBackend(t, func(*testing.T) sessions.Backend { return newState(DefaultMaxSessions) })
}
