package sessions

import (
	"context"
	"errors"
	"time"
)

// Backend is the key-value store with expiry that a TicketStore keeps its
// encrypted records in (memory, Redis).
type Backend interface {
	// Get returns the value, ErrNoSession if the key does not exist, or an
	// error wrapping ErrUnavailable.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores the value for ttl (at least one second).
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Delete removes the key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// TicketStore is the Store logic shared by the server-side stores: tickets
// in the cookie, one record per session encrypted with the ticket's secret,
// expiring with the session.
type TicketStore struct {
	Backend Backend
	// KeyPrefix goes in front of every ticket handle to form the key.
	KeyPrefix string

	env Env
}

// Bind implements Store.
func (s *TicketStore) Bind(env Env) error {
	s.env = env
	return nil
}

// Env is what Bind gave the store.
func (s *TicketStore) Env() Env { return s.env }

// Key is the backend key of a ticket's record.
func (s *TicketStore) Key(t *Ticket) string { return s.KeyPrefix + t.Handle }

// Load implements Store.
func (s *TicketStore) Load(ctx context.Context, value string) (*Session, error) {
	t, ok := ParseTicket(s.env.CookieName, value)
	if !ok {
		return nil, ErrNoSession
	}
	sealed, err := s.Backend.Get(ctx, s.Key(t))
	if err != nil {
		return nil, err
	}
	return t.Open(sealed, s.env)
}

// Save implements Store. A new session (prev == "") always gets a new
// ticket; an update keeps the ticket it had.
func (s *TicketStore) Save(ctx context.Context, prev string, sess *Session) (string, error) {
	t, ok := ParseTicket(s.env.CookieName, prev)
	if prev == "" || !ok {
		t = NewTicket(s.env.CookieName)
	}
	ttl := time.Until(sess.Deadline(s.env.IdleTimeout))
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
	if err := s.Backend.Set(ctx, s.Key(t), sealed, ttl); err != nil {
		return "", err
	}
	return t.Value(), nil
}

// Delete implements Store.
func (s *TicketStore) Delete(ctx context.Context, value string) error {
	t, ok := ParseTicket(s.env.CookieName, value)
	if !ok {
		return nil
	}
	return s.Backend.Delete(ctx, s.Key(t))
}
