package sessions

import (
	"context"
	"time"
)

// Meta is what a server-side store keeps about a session besides the
// session itself: enough to list and end sessions without the user's
// cookie, and no token. It is encrypted with the server's key.
type Meta struct {
	// ID is the ticket handle, {CookieName}-{ticketID}.
	ID    string `json:"id"`
	Store string `json:"store,omitempty"`
	// Issuer is the IdP the session was made with (Session.Issuer); empty
	// in metadata stored before it was recorded, whose sessions are of
	// Env.Issuer (IssuerOf).
	Issuer    string    `json:"iss,omitempty"`
	Subject   string    `json:"sub"`
	Email     string    `json:"email,omitempty"`
	Name      string    `json:"name,omitempty"`
	SID       string    `json:"sid,omitempty"`
	CreatedAt time.Time `json:"created"`
	LastSeen  time.Time `json:"last_seen"`
	ExpiresAt time.Time `json:"expires"`
}

// Manager is implemented by server-side stores: sessions can be listed and
// ended by operators and by the IdP's logout notifications.
type Manager interface {
	// Sessions calls fn for each live session, or for those of one subject
	// when sub is not empty, as it reads them (so any number can be
	// streamed). An error from fn stops the walk and is returned.
	Sessions(ctx context.Context, sub string, fn func(Meta) error) error
	// EndID ends one session by its ID; false if there was none.
	EndID(ctx context.Context, id string) (bool, error)
	// EndSubject ends every session of a subject; with iss not empty,
	// only those made with that IdP (a subject is unique per issuer only).
	EndSubject(ctx context.Context, iss, sub string) (int, error)
	// EndSID ends every session of an IdP session (sid claim); with sub
	// not empty, only those of that subject (a back-channel logout token
	// naming both); with iss not empty, only those made with that IdP, so
	// that one IdP's logout never ends another's sessions.
	EndSID(ctx context.Context, iss, sid, sub string) (int, error)
	// EndAll ends every session of the store.
	EndAll(ctx context.Context) (int, error)
	// Count returns the number of live sessions.
	Count(ctx context.Context) (int, error)
}

// IssuerOf is the issuer of the session m describes, given the issuer of
// sessions stored before it was recorded (Env.Issuer).
func (m *Meta) IssuerOf(legacy string) string {
	if m.Issuer == "" {
		return legacy
	}
	return m.Issuer
}
