// Package memstore keeps oidc_session sessions in the memory of the Caddy
// process, for a site served by a single Caddy instance: sessions can be
// listed and ended, and capped per user, without running Redis.
//
// It is sessions.TicketStore on an in-memory backend, so everything the
// Redis store does with tickets holds here too: the cookie holds a ticket
// {CookieName}-{ticketID}.{secret}, each session is encrypted with a key
// derived from its own ticket's secret, and the memory (or the state file)
// alone reveals no token and no identity.
package memstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/oidc-session/oidc_session/sessions"
)

func init() {
	caddy.RegisterModule(Store{})
}

// DefaultMaxSessions is max_sessions when it is not set.
const DefaultMaxSessions = 100000

// Store keeps sessions in memory, shared by every handler (and every config
// across reloads) that names the same state_file, or that names none.
//
// Sessions survive `caddy reload`: the new config finds the memory the old
// one used. With a state_file they also survive a restart of Caddy. Without
// one, stopping Caddy ends every session.
//
// Each session takes two entries (the session, encrypted with its ticket's
// secret, and its metadata for listings, encrypted with the server's key)
// plus its place in the per-user and per-IdP-session indexes: about 2.4 KB
// of memory for a typical session with its tokens (a 1.2 KB encrypted
// record), 1.3 KB without tokens. Expired entries are never returned and
// are swept every 30 seconds.
type Store struct {
	// StateFile makes sessions survive a restart of Caddy: the sessions are
	// written to this file every 10 seconds when they changed, and when
	// Caddy stops; at start the file is read back (expired sessions left
	// out). Placeholders such as {env.STATE_DIR} work.
	//
	// The file is replaced atomically (written to a temporary file in the
	// same directory, synced, renamed) and has mode 0600; each save writes
	// every session (about 1.8 KB each with tokens). Only one Caddy
	// process may use a given file. It holds what memory holds, sessions
	// still encrypted each under its own ticket's secret, so it reveals no
	// token without the users' cookies; but the
	// session metadata (subject, email, name, IdP session id) is encrypted
	// with the server's key, so whoever has both this file and the
	// configured secret can read who is logged in: protect it like the
	// secret. A missing file is a first start; an unreadable or damaged
	// file is logged (WARN) and Caddy starts with no sessions, replacing it
	// at the next save. The directory must exist and be writable when the
	// config is loaded, or the config is refused (so a mistyped path is
	// found at once, not after losing sessions at the next restart).
	//
	// Handlers and configs naming the same file share one set of sessions.
	// Changing state_file in a reload starts from the new file's contents
	// (the old file gets the sessions as they were). Default: none
	// (sessions are lost when Caddy stops).
	StateFile string `json:"state_file,omitempty"`

	// MaxSessions bounds the number of sessions kept, and so the memory
	// used (about 2.4 KB per session with tokens: some 240 MB at the
	// default). When a login would store one more session than this, the
	// sessions closest to expiry are ended (their users have to log in
	// again), and a WARN line says so.
	// It protects the process from running out of memory under a flood of
	// logins; set it above the number of sessions the site really has.
	// When several handlers share the memory (same state_file, or none),
	// they share the bound too, and the config loaded last sets it.
	// Default: 100000 (0 means the default).
	MaxSessions int `json:"max_sessions,omitempty"`

	sessions.TicketStore `json:"-"`

	state   *state
	poolKey string
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Store) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oidc_session.stores.memory",
		New: func() caddy.Module { return new(Store) },
	}
}

// states holds the memory of the stores, by state file: a reload
// provisions the new config before cleaning up the old one, so the state
// is found again and no session is lost.
var states = caddy.NewUsagePool()

// How often the background goroutine sweeps expired entries and, with a
// state file, saves changes. Tests shorten them.
var (
	sweepInterval = 30 * time.Second
	saveInterval  = 10 * time.Second
)

const poolKeyPrefix = "oidc_session.memory"

// Provision finds or makes the shared state. It fails only for a bad
// max_sessions or a state_file whose directory is missing or not writable.
func (s *Store) Provision(ctx caddy.Context) error {
	if s.logger == nil {
		s.logger = ctx.Logger()
	}
	if s.MaxSessions < 0 {
		return errors.New("memory store: max_sessions must be >= 0")
	}
	max := s.MaxSessions
	if max == 0 {
		max = DefaultMaxSessions
	}
	key, path := poolKeyPrefix, ""
	if s.StateFile != "" {
		var err error
		if path, err = statePath(caddy.NewReplacer().ReplaceKnown(s.StateFile, "")); err != nil {
			return err
		}
		key += ":" + path
	}
	val, _, err := states.LoadOrNew(key, func() (caddy.Destructor, error) {
		return openState(path, max, s.logger)
	})
	if err != nil {
		return err
	}
	st := val.(*state)
	st.setMax(max)
	s.state, s.poolKey = st, key
	s.TicketStore.Backend = st
	s.TicketStore.Name = "memory"
	s.TicketStore.KeyPrefix = ""
	return nil
}

// Cleanup releases this config's use of the state. The last user's
// cleanup (Caddy stopping, or a reload to a config without this store)
// stops the sweeper and writes the state file.
func (s *Store) Cleanup() error {
	if s.poolKey == "" {
		return nil
	}
	key := s.poolKey
	s.poolKey = ""
	_, err := states.Delete(key)
	return err
}

// statePath checks the state file's path and makes it absolute, so the
// same file has one pool key however it is spelled.
func statePath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("memory store: state_file %q: %w", p, err)
	}
	dir := filepath.Dir(abs)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("memory store: state_file %s: directory %s does not exist (create it, writable by Caddy)", abs, dir)
	case err != nil:
		return "", fmt.Errorf("memory store: state_file %s: %w", abs, err)
	case !fi.IsDir():
		return "", fmt.Errorf("memory store: state_file %s: %s is not a directory", abs, dir)
	}
	if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
		return "", fmt.Errorf("memory store: state_file %s is a directory, not a file", abs)
	}
	return abs, nil
}

// openState makes a state, reading the state file if there is one, and
// starts its background goroutine.
func openState(path string, max int, logger *zap.Logger) (*state, error) {
	st := newState(max)
	st.file, st.logger = path, logger
	if path != "" {
		// Fail now, with the reason, rather than at every save.
		f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".check-*")
		if err != nil {
			return nil, fmt.Errorf("memory store: state_file %s: cannot write in its directory: %w", path, err)
		}
		f.Close()
		os.Remove(f.Name())
		removeStaleTemp(path)

		snap, err := readFile(path, now())
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			logger.Warn("memory store: cannot read the state file; starting with no sessions, the file will be replaced at the next save",
				zap.String("state_file", path), zap.Error(err))
		default:
			st.restore(snap)
			st.saved = st.gen
			logger.Info("memory store: sessions loaded from the state file",
				zap.String("state_file", path), zap.Int("sessions", len(st.records)))
		}
	}
	st.stop, st.done = make(chan struct{}), make(chan struct{})
	go st.run(sweepInterval, saveInterval)
	return st, nil
}

// removeStaleTemp removes the temporary files a save interrupted by a
// crash left next to the state file (they hold sessions too).
func removeStaleTemp(path string) {
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		return
	}
	prefix := "." + filepath.Base(path) + ".tmp-"
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) && e.Type().IsRegular() {
			os.Remove(filepath.Join(filepath.Dir(path), e.Name()))
		}
	}
}

// run sweeps and saves until Destruct.
func (st *state) run(sweepEvery, saveEvery time.Duration) {
	defer close(st.done)
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	var saveC <-chan time.Time
	if st.file != "" {
		save := time.NewTicker(saveEvery)
		defer save.Stop()
		saveC = save.C
	}
	for {
		select {
		case <-st.stop:
			return
		case <-sweep.C:
			st.sweep(now())
			st.logEvictions()
		case <-saveC:
			if st.changed() {
				_ = st.save()
			}
		}
	}
}

func (st *state) logEvictions() {
	st.mu.RLock()
	n, max := st.evicted, st.max
	st.mu.RUnlock()
	if n != st.logged {
		st.logger.Warn("memory store: max_sessions reached; the sessions closest to expiry were ended to make room",
			zap.Int("max_sessions", max), zap.Uint64("ended", n-st.logged))
		st.logged = n
	}
}

func (st *state) changed() bool {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.gen != st.saved
}

// save writes the state file; only the background goroutine, then
// Destruct, call it.
func (st *state) save() error {
	snap := st.snapshot(now())
	if err := writeFile(st.file, snap); err != nil {
		st.logger.Error("memory store: cannot save sessions to the state file",
			zap.String("state_file", st.file), zap.Error(err))
		return fmt.Errorf("memory store: saving %s: %w", st.file, err)
	}
	st.saved = snap.gen
	return nil
}

// Destruct stops the background goroutine and saves the state file; the
// usage pool calls it when the last store using the state is cleaned up.
func (st *state) Destruct() error {
	close(st.stop)
	<-st.done
	st.logEvictions()
	if st.file == "" || !st.changed() {
		return nil
	}
	return st.save()
}

// Interface guards
var (
	_ sessions.Store     = (*Store)(nil)
	_ sessions.Manager   = (*Store)(nil)
	_ caddy.Provisioner  = (*Store)(nil)
	_ caddy.CleanerUpper = (*Store)(nil)
	_ caddy.Destructor   = (*state)(nil)
)
