// Package lifecycle keeps a request's session, from the cookie value that
// refers to it to the answer of what to do with that cookie: it finds the
// session (through a cache of decoded sessions), ends it when it has
// expired, refreshes its tokens before they expire (once per instance, and
// under the store's lock when the store is shared), touches it for the idle
// timeout, saves it and ends it.
//
// It never writes to a ResponseWriter. Every call returns a Cookie that
// says whether to keep the browser's cookie, write a new value, or clear
// it; the handler applies it. The IdP is reached through a Refresher the
// handler implements, store calls are traced and timed through Hooks, and
// time comes from Config.Now, so all of it can be tested without an IdP, a
// store server or real waits.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/oidc-session/oidc_session/sessions"
)

// Action says what the handler does with the browser's session cookie.
type Action int

const (
	// Keep leaves the cookie as the browser sent it.
	Keep Action = iota
	// Write sets the cookie to Cookie.Value, expiring at Cookie.Expires.
	Write
	// Clear removes the cookie (and its chunks).
	Clear
)

// Cookie is what to do with the session cookie after a call.
type Cookie struct {
	Action  Action
	Value   string
	Expires time.Time
}

// Reason says why a session ended, for the Ended hook (metrics, events).
// The handler passes its own (a logout's kind); these are the lifecycle's.
type Reason string

const (
	// ReasonExpired: the absolute lifetime or the idle timeout was reached.
	ReasonExpired Reason = "expired"
	// ReasonRefused: the IdP's final answer to a refresh (or the new tokens
	// could not be accepted).
	ReasonRefused Reason = "refused"
)

// ErrRefused wraps the Refresher's final answers: the session cannot be
// refreshed, ever (invalid_grant, invalid_client, an ID token that does not
// verify or names another subject), and ends.
var ErrRefused = errors.New("refresh refused")

// Refresher renews a session's tokens at its IdP.
type Refresher interface {
	// Refresh returns a copy of s with new tokens, and with its identity
	// renewed when the IdP sent a new ID token; s itself is not changed.
	// An error wrapping ErrRefused ends the session; any other error means
	// the IdP could not be reached, and the session goes on with its tokens.
	// Refresh is called once for all the requests of a refresh token on
	// this instance, with a context that outlives the request.
	Refresh(ctx context.Context, s *sessions.Session) (*sessions.Session, error)
}

// StoreOp names a store call for Hooks.Store.
type StoreOp string

const (
	OpExists StoreOp = "exists" // the cheap check of a cached session in a shared store
	OpLoad   StoreOp = "load"
	OpSave   StoreOp = "save"
	OpDelete StoreOp = "delete"
)

// Hooks let the handler observe the lifecycle. Each may be nil.
type Hooks struct {
	// Store is called before every store call; it returns the context for
	// the call (a tracing span's, say) and a function called with the
	// call's error once it is done (to end the span, to time it).
	Store func(ctx context.Context, op StoreOp) (context.Context, func(error))
	// Ended is called when a session ends; s is nil when the cookie led to
	// no session.
	Ended func(s *sessions.Session, reason Reason)
}

// Config sets up a Keeper.
type Config struct {
	// Store keeps the sessions; Capabilities says what else it can do.
	Store        sessions.Store
	Capabilities sessions.Capabilities
	// Issuer is given to sessions stored before sessions recorded their
	// issuer (they belong to the handler's only IdP).
	Issuer string
	// IdleTimeout ends sessions unused this long; 0: no idle timeout.
	IdleTimeout time.Duration
	// RefreshMargin: a session whose access token has less than this left
	// (at most a third of its lifetime) is refreshed.
	RefreshMargin time.Duration
	// Refresher renews tokens; nil: sessions are never refreshed.
	Refresher Refresher
	// CacheSize bounds the decoded sessions kept (entries). Default
	// DefaultCacheSize.
	CacheSize int
	// Tokens says the handler reads the tokens of the sessions Current
	// returns (an access-token header): they are then decoded once, when a
	// session is read from its store, and cached decoded. Otherwise they
	// stay encoded until a refresh or a Peek needs them.
	Tokens bool
	// RecentRefresh is how long the result of a refresh is given to
	// requests that still carry the spent refresh token. Default 30s.
	RecentRefresh time.Duration
	Hooks         Hooks
	Logger        *zap.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// DefaultCacheSize is how many decoded sessions a Keeper keeps unless
// told otherwise: enough for 100 000 active users. An entry is the
// session's record as the store read it (for a Dex session about 1.3 KB;
// BenchmarkCurrentN reports it as heap-B/session), so this is about
// 130 MB; with Config.Tokens the session decoded, about 3.7 KB. The bound
// is in entries: sessions with a large identity are kept decoded and
// cost what they hold.
const DefaultCacheSize = 100_000

// Keeper keeps the sessions of one handler.
type Keeper struct {
	cfg     Config
	cache   *cache
	flights singleflight.Group
	recent  *recentRefreshes
	backoff *refreshBackoff
}

// New returns a Keeper for cfg.
func New(cfg Config) *Keeper {
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.RecentRefresh <= 0 {
		cfg.RecentRefresh = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Keeper{
		cfg:     cfg,
		cache:   newCache(cfg.CacheSize),
		recent:  newRecentRefreshes(cfg.RecentRefresh),
		backoff: newRefreshBackoff(100000),
	}
}

// Current returns the valid session the cookie value refers to, refreshed
// and touched as needed, or nil if there is none, with what to do with the
// cookie. Its tokens are decoded with Config.Tokens; otherwise they may
// still be encoded (Session.DecodeTokens). The only error is one wrapping sessions.ErrUnavailable: the store
// cannot be reached and the session cannot be judged; the cookie is kept.
func (k *Keeper) Current(ctx context.Context, value string) (*sessions.Session, Cookie, error) {
	if value == "" {
		return nil, Cookie{}, nil
	}
	now := k.cfg.Now()
	idle := k.cfg.IdleTimeout
	shared := k.cfg.Capabilities.Shared()
	sess, err := k.load(ctx, value)
	fresh := false
	if err == nil && shared && sess.Expired(now, idle) && now.Before(sess.ExpiresAt) {
		// Idle by the copy in hand, which may predate a touch at another
		// instance that kept the session alive: judge by the stored one.
		sess, err = k.loadFresh(ctx, value)
		fresh = true
	}
	switch {
	case errors.Is(err, sessions.ErrNoSession):
		return nil, Cookie{Action: Clear}, nil // junk or expired: stop the browser sending it
	case err != nil:
		return nil, Cookie{}, unavailable(err)
	}
	if sess.Expired(now, idle) {
		return nil, k.Discard(ctx, value, sess, ReasonExpired), nil
	}
	cookie := Cookie{}
	changed := false
	refresh := k.needsRefresh(sess, now)
	if refresh {
		if sess, err = withTokens(sess); err != nil {
			return nil, Cookie{Action: Clear}, nil
		}
		refresh = !k.backoff.waiting(tokenKey(sess.RefreshToken), now)
	}
	if refresh {
		if shared {
			// Refreshed and saved under the store's lock.
			var stored bool
			if sess, cookie, stored = k.refreshShared(ctx, value, sess); sess == nil {
				return nil, cookie, nil
			}
			fresh = fresh || stored
		} else {
			refreshed, err := k.refresh(ctx, sess)
			switch {
			case errors.Is(err, ErrRefused):
				k.cfg.Logger.Info("session ended: refresh refused", zap.String("sub", sess.Subject), zap.Error(err))
				return nil, k.Discard(ctx, value, sess, ReasonRefused), nil
			case err == nil:
				sess, changed = refreshed, true
			}
		}
	}
	if touch := min(idle/16, 5*time.Minute); idle > 0 && now.Sub(sess.LastSeen) >= touch {
		if shared && !fresh {
			// The copy in hand may predate a refresh made elsewhere;
			// saving it would put back a spent refresh token.
			if stored, err := k.loadFresh(ctx, value); err == nil {
				sess = stored
			}
		}
		sess.LastSeen = now.Truncate(time.Millisecond)
		changed = true
	}
	if changed {
		saved, err := k.save(ctx, value, sess)
		switch {
		case errors.Is(err, sessions.ErrNoSession):
			return nil, Cookie{Action: Clear}, nil // ended meanwhile (logout elsewhere, admin, IdP)
		case err != nil:
			// The old cookie still holds a usable session; serve this
			// request and let the next one try to save again.
			k.cfg.Logger.Warn("could not save updated session", zap.String("sub", sess.Subject), zap.Error(err))
		default:
			cookie = saved
		}
	}
	if k.cfg.Tokens {
		if sess, err = withTokens(sess); err != nil {
			return nil, Cookie{Action: Clear}, nil
		}
	}
	return sess, cookie, nil
}

// Peek returns the session the cookie value refers to as it is, tokens
// decoded, without refreshing, touching or ending it: for logouts and
// status pages. Errors:
// sessions.ErrNoSession, or one wrapping sessions.ErrUnavailable.
func (k *Keeper) Peek(ctx context.Context, value string) (*sessions.Session, error) {
	if value == "" {
		return nil, sessions.ErrNoSession
	}
	s, err := k.load(ctx, value)
	if err == nil {
		s, err = withTokens(s)
	}
	if err != nil && !errors.Is(err, sessions.ErrNoSession) {
		return nil, unavailable(err)
	}
	return s, err
}

// Start stores the session of a new login and returns its cookie. A new
// login never continues an earlier session (no fixation): prev, the cookie
// value the browser had, is ended and the store mints a new identifier.
func (k *Keeper) Start(ctx context.Context, prev string, s *sessions.Session) (Cookie, error) {
	if prev != "" {
		_ = k.delete(ctx, prev)
	}
	if s.Issuer == "" {
		s.Issuer = k.cfg.Issuer
	}
	return k.save(ctx, "", s)
}

// End deletes the session and returns the cookie to clear; reason goes to
// the Ended hook. When the store cannot be reached the session is not
// over: the error wraps sessions.ErrUnavailable and the cookie is kept, so
// the user can try again.
func (k *Keeper) End(ctx context.Context, value string, s *sessions.Session, reason Reason) (Cookie, error) {
	if err := k.delete(ctx, value); err != nil {
		return Cookie{}, unavailable(err)
	}
	k.ended(s, reason)
	return Cookie{Action: Clear}, nil
}

// Discard ends a session that cannot go on whatever the store says
// (expired, its refresh refused, or refused by the handler's rules): the
// cookie is cleared even when the store cannot be reached, since the
// record is useless and expires on its own.
func (k *Keeper) Discard(ctx context.Context, value string, s *sessions.Session, reason Reason) Cookie {
	if _, err := k.End(ctx, value, s, reason); err != nil {
		k.cfg.Logger.Warn("could not delete session from store", zap.Error(err))
		k.ended(s, reason)
	}
	return Cookie{Action: Clear}
}

func (k *Keeper) ended(s *sessions.Session, reason Reason) {
	if k.cfg.Hooks.Ended != nil {
		k.cfg.Hooks.Ended(s, reason)
	}
}

// unavailable makes a store error one the handler answers with its
// unavailable status.
func unavailable(err error) error {
	if errors.Is(err, sessions.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", sessions.ErrUnavailable, err)
}
