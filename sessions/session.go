package sessions

import (
	"context"
	"errors"
	"time"
)

// Session is one logged-in user: who they are (from the ID token and, if
// enabled, the userinfo endpoint) and the tokens that keep them logged in.
type Session struct {
	// Issuer is the IdP the session was made with (its issuer URL): the one
	// to refresh it at and to take its logouts from. Empty in sessions
	// stored before sessions recorded it; those belong to the handler's
	// (only) IdP, whose binding they are sealed under.
	Issuer string

	// Identity.
	Subject string
	Email   string
	// EmailVerified is the IdP's email_verified claim.
	EmailVerified bool
	Name          string
	Groups        []string
	// Claims holds the extra claims the operator asked to keep, each as a list
	// of strings (a scalar claim is a list of one).
	Claims map[string][]string
	// SID is the IdP's session id (the ID token's sid claim), used by logout.
	SID string

	// Tokens. Any of them may be empty (see the cookie store's drop_tokens).
	IDToken      string
	AccessToken  string
	RefreshToken string
	// TokenIssued is when the current access token was obtained and
	// TokenExpiry when it expires (zero if the IdP did not say).
	TokenIssued time.Time
	TokenExpiry time.Time
	// DPoPKey is the private key the tokens are bound to (RFC 9449), in
	// the binary form of oidc.DPoPKey, when dpop is on; nil otherwise.
	// Whoever has it and the tokens can use them, so it is kept like the
	// refresh token: encrypted in the cookie or server-side record, never
	// logged, and dropped with the tokens (drop_tokens).
	DPoPKey []byte

	// Lifetime. CreatedAt never changes after login; ExpiresAt is the absolute
	// end (CreatedAt + session lifetime) and is never extended; LastSeen drives
	// the idle timeout.
	CreatedAt time.Time
	LastSeen  time.Time
	ExpiresAt time.Time

	// lazy holds the tokens of a session read by DecodeLazy (or a
	// LazyLoader) until DecodeTokens.
	lazy lazyTokens
}

// Expired reports whether the session is past its absolute lifetime, or idle
// for longer than idle (when idle > 0).
func (s *Session) Expired(now time.Time, idle time.Duration) bool {
	if !now.Before(s.ExpiresAt) {
		return true
	}
	return idle > 0 && now.Sub(s.LastSeen) >= idle
}

// Deadline is when the session ends if nothing touches it again: the absolute
// expiry or the idle deadline, whichever comes first.
func (s *Session) Deadline(idle time.Duration) time.Time {
	if idle > 0 {
		if d := s.LastSeen.Add(idle); d.Before(s.ExpiresAt) {
			return d
		}
	}
	return s.ExpiresAt
}

// Errors a Store returns. Anything else is treated like ErrUnavailable.
var (
	// ErrNoSession means the cookie does not lead to a usable session
	// (unknown, expired, tampered, encrypted with another secret): the user
	// has to log in again.
	ErrNoSession = errors.New("no session")
	// ErrUnavailable means the store could not be reached. The session may be
	// fine: the user's cookie must be kept and the request answered with a
	// temporary error.
	ErrUnavailable = errors.New("session store unavailable")
)

// Env is what the handler hands a store once it is provisioned.
type Env struct {
	// CookieName is the session cookie's name (server-side stores use it in
	// their ticket handles).
	CookieName string
	// Keys encrypts and authenticates sessions kept in the cookie itself.
	Keys *Keyring
	// Binding is authenticated with every encrypted session, so a session made
	// for one issuer and client cannot be replayed against another.
	Binding []byte
	// Issuer is the issuer of the sessions stored before sessions recorded
	// theirs (Session.Issuer, Meta.Issuer empty): the handler's first IdP.
	Issuer string
	// IdleTimeout is the handler's idle timeout (0: none); server-side
	// stores expire records at the session's Deadline.
	IdleTimeout time.Duration
	// MaxPerUser caps the sessions of one subject in server-side stores: a
	// new login beyond it ends that subject's oldest session. 0: no cap.
	MaxPerUser int
}

// Checker is implemented by stores whose sessions can end elsewhere
// (another instance, an operator, the IdP): a decoded session the handler
// keeps in memory is used only while Exists says it is still stored.
type Checker interface {
	Exists(ctx context.Context, value string) (bool, error)
}

// LazyLoader is implemented by stores that can load a session without
// decoding its tokens, which only a refresh, an access-token header or a
// logout needs: the caller decodes them with Session.DecodeTokens before
// reading or setting them. Load is LoadLazy followed by DecodeTokens.
type LazyLoader interface {
	LoadLazy(ctx context.Context, value string) (*Session, error)
}

// Pinger is implemented by stores that depend on a server, for readiness
// checks.
type Pinger interface {
	// Ping reports whether the store's server can be reached.
	Ping(ctx context.Context) error
}

// Reporter is implemented by stores with a state worth showing an operator
// beyond reachability, in the admin API's health view.
type Reporter interface {
	// Report is a short description of that state.
	Report() string
}

// Locker is implemented by stores shared between Caddy instances, so that
// one refresh of a session happens at a time across all of them.
type Locker interface {
	// Lock takes the refresh lock of the session the cookie value refers
	// to, waiting for another holder to finish. The lock is kept alive until
	// release is called, which must happen.
	Lock(ctx context.Context, value string) (release func(), err error)
}

// Store keeps sessions. The handler owns the cookie: a store only turns a
// session into the cookie value that refers to it, and back.
//
// Stores are Caddy modules in the http.handlers.oidc_session.stores namespace.
type Store interface {
	// Bind gives the store the handler's settings. It is called once, after
	// the store is provisioned and before any other method.
	Bind(env Env) error
	// Load returns the session the cookie value refers to, ErrNoSession if
	// there is none, or ErrUnavailable if the store cannot be reached.
	Load(ctx context.Context, value string) (*Session, error)
	// Save stores s and returns the cookie value that refers to it. prev is
	// the current cookie value when the session is updated (refresh, idle
	// touch) and "" when it is new (login), in which case the store must not
	// reuse any earlier identifier.
	Save(ctx context.Context, prev string, s *Session) (string, error)
	// Delete ends the session the cookie value refers to. Deleting a session
	// that does not exist is not an error.
	Delete(ctx context.Context, value string) error
}
