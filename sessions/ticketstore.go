package sessions

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"time"
)

// Backend is the key-value store with expiry that a TicketStore keeps its
// records in (memory, Redis). Every error other than ErrNoSession must wrap
// ErrUnavailable.
type Backend interface {
	// Get returns the value, or ErrNoSession if the key does not exist.
	Get(ctx context.Context, key string) ([]byte, error)
	// Exists reports whether the key exists (and has not expired).
	Exists(ctx context.Context, key string) (bool, error)
	// GetMany returns the values of keys, nil for those that do not exist.
	GetMany(ctx context.Context, keys []string) ([][]byte, error)
	// Set stores the value for ttl (at least one second).
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Replace is Set for a key that exists, in one step: it reports false,
	// storing nothing, if the key does not exist (or has expired).
	Replace(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error)
	// Delete removes keys; missing keys are not an error.
	Delete(ctx context.Context, keys ...string) error
	// IndexAdd adds member to the set at key, with the time it expires;
	// the set lives as long as its latest member.
	IndexAdd(ctx context.Context, key, member string, expires time.Time) error
	// IndexMembers returns the unexpired members of the set at key (and
	// may drop the expired ones).
	IndexMembers(ctx context.Context, key string) ([]string, error)
	// IndexRemove removes members from the set at key.
	IndexRemove(ctx context.Context, key string, members ...string) error
	// Scan calls fn with batches of the keys that start with prefix.
	Scan(ctx context.Context, prefix string, fn func(keys []string) error) error
}

// TicketStore is the logic shared by the server-side stores: tickets in the
// cookie; per session, a record encrypted with the ticket's secret and a
// metadata record (no tokens) encrypted with the server's key; indexes by
// subject and IdP session id whose names are keyed hashes, so the backend
// alone reveals no subject. Everything expires with the session.
//
// Keys, with P the key prefix and N the cookie name:
//
//	P N-<ticketID>          the session
//	P N-<ticketID>.meta     its metadata
//	P N:sub:<hmac(sub)>     index: the subject's sessions
//	P N:sid:<hmac(sid)>     index: the IdP session's sessions
type TicketStore struct {
	Backend Backend
	// KeyPrefix goes in front of every key.
	KeyPrefix string
	// Name is the store's name in listings (memory, redis).
	Name string

	env Env
}

const metaSuffix = ".meta"

// MetaKey is the backend key of the metadata record of the session whose
// record is at recordKey. Backends that must tell the two apart (to count
// or evict whole sessions) use it and IsMetaKey rather than the layout.
func MetaKey(recordKey string) string { return recordKey + metaSuffix }

// IsMetaKey reports whether a backend key is a metadata record's.
func IsMetaKey(key string) bool { return strings.HasSuffix(key, metaSuffix) }

// Tickets returns s itself: stores that embed a TicketStore expose it by
// this method, so tests and tools find the ticket core of any such store.
func (s *TicketStore) Tickets() *TicketStore { return s }

// IndexPrefix starts the backend keys of the store's indexes (by subject
// and by IdP session).
func (s *TicketStore) IndexPrefix() string { return s.KeyPrefix + s.env.CookieName + ":" }

// Bind implements Store.
func (s *TicketStore) Bind(env Env) error {
	s.env = env
	return nil
}

// Env is what Bind gave the store.
func (s *TicketStore) Env() Env { return s.env }

// Key is the backend key of a ticket's record.
func (s *TicketStore) Key(t *Ticket) string { return s.KeyPrefix + t.Handle }

func (s *TicketStore) metaKey(handle string) string { return MetaKey(s.KeyPrefix + handle) }

// indexKeys names the index of a subject or sid under every server key,
// the current one first.
func (s *TicketStore) indexKeys(kind, value string) []string {
	macs := s.env.Keys.MACs(kind + "\x00" + value)
	for i, m := range macs {
		macs[i] = s.IndexPrefix() + kind + ":" + m
	}
	return macs
}

// Load implements Store.
func (s *TicketStore) Load(ctx context.Context, value string) (*Session, error) {
	return s.load(ctx, value, (*Ticket).Open)
}

// LoadLazy implements LazyLoader.
func (s *TicketStore) LoadLazy(ctx context.Context, value string) (*Session, error) {
	return s.load(ctx, value, (*Ticket).OpenLazy)
}

func (s *TicketStore) load(ctx context.Context, value string, open func(*Ticket, []byte, Env) (*Session, error)) (*Session, error) {
	t, ok := ParseTicket(s.env.CookieName, value)
	if !ok {
		return nil, ErrNoSession
	}
	sealed, err := s.Backend.Get(ctx, s.Key(t))
	if err != nil {
		return nil, err
	}
	return open(t, sealed, s.env)
}

// Save implements Store. A new session (prev == "") always gets a new
// ticket, and may end the subject's oldest session (MaxPerUser); an update
// keeps the ticket it had, and returns ErrNoSession if the session has
// ended meanwhile (EndID, EndSID, the per-user limit): a request that
// loaded it before must not bring it back.
func (s *TicketStore) Save(ctx context.Context, prev string, sess *Session) (string, error) {
	t, ok := ParseTicket(s.env.CookieName, prev)
	login := prev == "" || !ok
	if login {
		t = NewTicket(s.env.CookieName)
	}
	deadline := sess.Deadline(s.env.IdleTimeout)
	ttl := time.Until(deadline)
	if ttl < time.Second {
		return "", errors.New("session already expired")
	}
	// Whole seconds, rounded up, so the record never outlives the cookie
	// by more than a second and Redis gets a plain SET EX.
	ttl = ttl.Truncate(time.Second) + time.Second
	sealed, err := t.Seal(sess, s.env)
	if err != nil {
		return "", err
	}
	meta := Meta{ID: t.Handle, Issuer: sess.Issuer, Subject: sess.Subject, Email: sess.Email, Name: sess.Name, SID: sess.SID,
		CreatedAt: sess.CreatedAt, LastSeen: sess.LastSeen, ExpiresAt: deadline}
	if err := s.write(ctx, login, sealed, meta, ttl); err != nil {
		return "", err
	}
	if err := s.Backend.IndexAdd(ctx, s.indexKeys("sub", sess.Subject)[0], t.Handle, deadline); err != nil {
		return "", err
	}
	if sess.SID != "" {
		if err := s.Backend.IndexAdd(ctx, s.indexKeys("sid", sess.SID)[0], t.Handle, deadline); err != nil {
			return "", err
		}
	}
	if login && s.env.MaxPerUser > 0 {
		if err := s.enforceLimit(ctx, sess.Issuer, sess.Subject, t.Handle); err != nil {
			return "", err
		}
	}
	return t.Value(), nil
}

// write stores a session's record and metadata. An update writes only
// over records that still exist: the session may have ended since it was
// loaded, and a check followed by a write would let this write bring it
// back. The metadata goes first, and a session missing either record
// (ended meanwhile, or one of them evicted or lost in a failover) is ended
// whole: a record without metadata would be a session the admin API can
// neither list nor end.
func (s *TicketStore) write(ctx context.Context, login bool, record []byte, meta Meta, ttl time.Duration) error {
	handle, sealedMeta := meta.ID, s.sealMeta(meta)
	if login {
		if err := s.Backend.Set(ctx, s.KeyPrefix+handle, record, ttl); err != nil {
			return err
		}
		return s.Backend.Set(ctx, s.metaKey(handle), sealedMeta, ttl)
	}
	for _, kv := range [...]struct {
		key   string
		value []byte
	}{{s.metaKey(handle), sealedMeta}, {s.KeyPrefix + handle, record}} {
		ok, err := s.Backend.Replace(ctx, kv.key, kv.value, ttl)
		if err != nil {
			return err
		}
		if !ok {
			// The index names come from the session in hand: the
			// stored metadata may be the part that is gone.
			if err := s.end(ctx, handle, &meta); err != nil {
				return err
			}
			return ErrNoSession
		}
	}
	return nil
}

// enforceLimit ends the subject's oldest sessions beyond MaxPerUser,
// never the one just made.
func (s *TicketStore) enforceLimit(ctx context.Context, iss, sub, keep string) error {
	var metas []Meta
	err := s.Sessions(ctx, sub, func(m Meta) error {
		if m.ID != keep && s.ofIssuer(&m, iss) {
			metas = append(metas, m)
		}
		return nil
	})
	if err != nil {
		return err
	}
	excess := len(metas) + 1 - s.env.MaxPerUser
	if excess <= 0 {
		return nil
	}
	sort.Slice(metas, func(i, j int) bool { return metas[i].CreatedAt.Before(metas[j].CreatedAt) })
	for _, m := range metas[:excess] {
		if err := s.end(ctx, m.ID, &m); err != nil {
			return err
		}
	}
	return nil
}

// Exists implements Checker: whether the session the cookie value refers
// to is still stored (not ended by a logout elsewhere, an operator or the
// IdP), without reading or decrypting it.
func (s *TicketStore) Exists(ctx context.Context, value string) (bool, error) {
	key, ok := s.RecordKey(value)
	if !ok {
		return false, nil
	}
	return s.Backend.Exists(ctx, key)
}

// RecordKey is the backend key of the session record a cookie value
// refers to, read from the ticket's handle alone (the secret is neither
// decoded nor checked).
func (s *TicketStore) RecordKey(value string) (string, bool) {
	handle, _, ok := splitTicket(s.env.CookieName, value)
	if !ok {
		return "", false
	}
	if s.KeyPrefix == "" {
		return handle, true // no copy on the hot path
	}
	return s.KeyPrefix + handle, true
}

// Delete implements Store. Only a cookie holding the ticket's secret ends
// the session: the ticket ID alone (a key name in the backend, an ID in the
// admin API) must not let anyone log its user out.
func (s *TicketStore) Delete(ctx context.Context, value string) error {
	t, ok := ParseTicket(s.env.CookieName, value)
	if !ok {
		return nil
	}
	sealed, err := s.Backend.Get(ctx, s.Key(t))
	switch {
	case errors.Is(err, ErrNoSession):
		// Already gone: clear whatever is left of it.
	case err != nil:
		return err
	default:
		if _, err := t.Open(sealed, s.env); err != nil {
			return nil
		}
	}
	return s.end(ctx, t.Handle, nil)
}

// end deletes a session, its metadata and its index entries. meta may be
// nil, in which case it is read (for the index names) when still there.
func (s *TicketStore) end(ctx context.Context, handle string, meta *Meta) error {
	if meta == nil {
		if m, err := s.readMeta(ctx, handle); err == nil {
			meta = m
		} else if !errors.Is(err, ErrNoSession) {
			return err
		}
	}
	if err := s.Backend.Delete(ctx, s.KeyPrefix+handle, s.metaKey(handle)); err != nil {
		return err
	}
	if meta != nil {
		for _, key := range s.indexKeys("sub", meta.Subject) {
			if err := s.Backend.IndexRemove(ctx, key, handle); err != nil {
				return err
			}
		}
		if meta.SID != "" {
			for _, key := range s.indexKeys("sid", meta.SID) {
				if err := s.Backend.IndexRemove(ctx, key, handle); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (s *TicketStore) sealMeta(m Meta) []byte {
	b, _ := json.Marshal(m) // cannot fail for this type
	return s.env.Keys.Seal(b, s.metaAAD(m.ID))
}

func (s *TicketStore) openMeta(handle string, sealed []byte) (*Meta, error) {
	plain, err := s.env.Keys.Open(sealed, s.metaAAD(handle))
	if err != nil {
		return nil, ErrNoSession
	}
	var m Meta
	if err := json.Unmarshal(plain, &m); err != nil || m.ID != handle {
		return nil, ErrNoSession
	}
	m.Store = s.Name
	return &m, nil
}

func (s *TicketStore) metaAAD(handle string) []byte {
	return append([]byte("meta\x00"+handle+"\x00"), s.env.Binding...)
}

func (s *TicketStore) readMeta(ctx context.Context, handle string) (*Meta, error) {
	sealed, err := s.Backend.Get(ctx, s.metaKey(handle))
	if err != nil {
		return nil, err
	}
	return s.openMeta(handle, sealed)
}

// Sessions implements Manager.
func (s *TicketStore) Sessions(ctx context.Context, sub string, fn func(Meta) error) error {
	if sub != "" {
		handles, err := s.members(ctx, s.indexKeys("sub", sub))
		if err != nil {
			return err
		}
		return s.walk(ctx, handles, func(m Meta) error {
			if m.Subject != sub {
				return nil // a stale index entry of a reused handle cannot happen, but be exact
			}
			return fn(m)
		})
	}
	prefix := s.KeyPrefix + s.env.CookieName + "-"
	return s.Backend.Scan(ctx, prefix, func(keys []string) error {
		var handles []string
		for _, k := range keys {
			if h, ok := strings.CutSuffix(k, metaSuffix); ok {
				handles = append(handles, strings.TrimPrefix(h, s.KeyPrefix))
			}
		}
		return s.walk(ctx, handles, fn)
	})
}

// walk reads the metadata of handles in one batch and calls fn for the
// live ones.
func (s *TicketStore) walk(ctx context.Context, handles []string, fn func(Meta) error) error {
	if len(handles) == 0 {
		return nil
	}
	keys := make([]string, len(handles))
	for i, h := range handles {
		keys[i] = s.metaKey(h)
	}
	vals, err := s.Backend.GetMany(ctx, keys)
	if err != nil {
		return err
	}
	for i, v := range vals {
		if v == nil {
			continue
		}
		m, err := s.openMeta(handles[i], v)
		if err != nil {
			continue // another deployment's record under the same prefix
		}
		if err := fn(*m); err != nil {
			return err
		}
	}
	return nil
}

func (s *TicketStore) members(ctx context.Context, indexKeys []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, key := range indexKeys {
		ms, err := s.Backend.IndexMembers(ctx, key)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	return out, nil
}

// EndID implements Manager.
func (s *TicketStore) EndID(ctx context.Context, id string) (bool, error) {
	if !strings.HasPrefix(id, s.env.CookieName+"-") {
		return false, nil
	}
	m, err := s.readMeta(ctx, id)
	if errors.Is(err, ErrNoSession) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, s.end(ctx, id, m)
}

// EndSubject implements Manager.
func (s *TicketStore) EndSubject(ctx context.Context, iss, sub string) (int, error) {
	return s.endMatching(ctx, func(fn func(Meta) error) error {
		return s.Sessions(ctx, sub, func(m Meta) error {
			if !s.ofIssuer(&m, iss) {
				return nil
			}
			return fn(m)
		})
	})
}

// ofIssuer reports whether m is of the IdP iss (any, when iss is empty).
func (s *TicketStore) ofIssuer(m *Meta, iss string) bool {
	return iss == "" || m.IssuerOf(s.env.Issuer) == iss
}

// EndSID implements Manager.
func (s *TicketStore) EndSID(ctx context.Context, iss, sid, sub string) (int, error) {
	handles, err := s.members(ctx, s.indexKeys("sid", sid))
	if err != nil {
		return 0, err
	}
	return s.endMatching(ctx, func(fn func(Meta) error) error {
		return s.walk(ctx, handles, func(m Meta) error {
			if m.SID != sid || (sub != "" && m.Subject != sub) || !s.ofIssuer(&m, iss) {
				return nil
			}
			return fn(m)
		})
	})
}

// EndAll implements Manager.
func (s *TicketStore) EndAll(ctx context.Context) (int, error) {
	return s.endMatching(ctx, func(fn func(Meta) error) error { return s.Sessions(ctx, "", fn) })
}

// Count implements Manager, from key names alone.
func (s *TicketStore) Count(ctx context.Context) (int, error) {
	n := 0
	err := s.Backend.Scan(ctx, s.KeyPrefix+s.env.CookieName+"-", func(keys []string) error {
		for _, k := range keys {
			if strings.HasSuffix(k, metaSuffix) {
				n++
			}
		}
		return nil
	})
	return n, err
}

// endMatching collects the sessions a walk yields, then ends them (ending
// while walking would disturb a backend's scan).
func (s *TicketStore) endMatching(ctx context.Context, walk func(func(Meta) error) error) (int, error) {
	var metas []Meta
	if err := walk(func(m Meta) error { metas = append(metas, m); return nil }); err != nil {
		return 0, err
	}
	for i := range metas {
		if err := s.end(ctx, metas[i].ID, &metas[i]); err != nil {
			return i, err
		}
	}
	return len(metas), nil
}

// Interface guards
var (
	_ Store   = (*TicketStore)(nil)
	_ Manager = (*TicketStore)(nil)
	_ Checker = (*TicketStore)(nil)
)
