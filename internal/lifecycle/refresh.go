package lifecycle

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/oidc-session/oidc_session/sessions"
)

// refresh renews the session's tokens through the Refresher, once per
// instance however many requests of the session ask at the same time;
// requests that arrive a little later with the same (now spent) refresh
// token get the same result from a short-lived cache, so an IdP that
// rotates refresh tokens does not log them out. After a failure to reach
// the IdP, this instance waits a little longer each time before the
// session's next attempt. The error wraps ErrRefused when the session must
// end.
func (k *Keeper) refresh(ctx context.Context, s *sessions.Session) (*sessions.Session, error) {
	key := tokenKey(s.RefreshToken)
	if r := k.recent.get(key, k.cfg.Now()); r != nil {
		return clone(r), nil
	}
	v, err, _ := k.flights.Do(key, func() (any, error) {
		if r := k.recent.get(key, k.cfg.Now()); r != nil {
			return r, nil
		}
		// The refresh outlives a cancelled request: others may be waiting
		// for it, and a token the IdP already rotated must not be lost.
		r, err := k.cfg.Refresher.Refresh(context.WithoutCancel(ctx), clone(s))
		if err != nil {
			return nil, err
		}
		k.recent.put(key, r, k.cfg.Now())
		return r, nil
	})
	switch {
	case errors.Is(err, ErrRefused):
		return nil, err
	case err != nil:
		wait := k.backoff.failed(key, k.cfg.Now())
		k.cfg.Logger.Warn("token refresh failed; keeping the session", zap.String("sub", s.Subject), zap.Duration("retry_after", wait), zap.Error(err))
		return nil, err
	}
	k.backoff.succeeded(key)
	return clone(v.(*sessions.Session)), nil
}

// refreshShared refreshes a session kept in a store that other handlers
// and instances share. Under the session's lock it reads the session
// again: if another instance (or request) refreshed it meanwhile, that
// result is used, so a rotating refresh token is redeemed exactly once. The
// refreshed session is saved before the lock is released. It returns nil
// when the session has ended (with the cookie to clear), and stored
// reports whether the session returned was read from the store.
func (k *Keeper) refreshShared(ctx context.Context, value string, s *sessions.Session) (*sessions.Session, Cookie, bool) {
	// Requests of one session on this instance share one trip through the
	// lock: only the first waits for it, the others take its result,
	// instead of queueing for the lock one poll interval at a time.
	v, _, _ := k.flights.Do("shared\x00"+value, func() (any, error) {
		return k.refreshUnderLock(ctx, value, s), nil
	})
	res := v.(lockedRefresh)
	if res.session == nil {
		return nil, res.cookie, false
	}
	return clone(res.session), res.cookie, res.stored
}

type lockedRefresh struct {
	session *sessions.Session
	cookie  Cookie
	stored  bool
}

// refreshUnderLock is refreshShared's work, done by one request per
// instance at a time.
func (k *Keeper) refreshUnderLock(ctx context.Context, value string, s *sessions.Session) lockedRefresh {
	// Other requests wait for this one: it must not stop because its own
	// client went away.
	ctx = context.WithoutCancel(ctx)
	release, err := k.cfg.Capabilities.Locker.Lock(ctx, value)
	if err != nil {
		k.cfg.Logger.Warn("refresh lock not acquired; serving with current tokens", zap.String("sub", s.Subject), zap.Error(err))
		return lockedRefresh{session: s}
	}
	defer release()
	fresh, err := k.loadFresh(ctx, value)
	switch {
	case errors.Is(err, sessions.ErrNoSession):
		return lockedRefresh{cookie: Cookie{Action: Clear}}
	case err != nil:
		return lockedRefresh{session: s}
	}
	if !k.needsRefresh(fresh, k.cfg.Now()) {
		return lockedRefresh{session: fresh, stored: true} // refreshed by someone else while we waited
	}
	if fresh, err = withTokens(fresh); err != nil {
		return lockedRefresh{cookie: Cookie{Action: Clear}}
	}
	refreshed, err := k.refresh(ctx, fresh)
	switch {
	case errors.Is(err, ErrRefused):
		k.cfg.Logger.Info("session ended: refresh refused", zap.String("sub", fresh.Subject), zap.Error(err))
		return lockedRefresh{cookie: k.Discard(ctx, value, fresh, ReasonRefused)}
	case err != nil:
		return lockedRefresh{session: fresh, stored: true}
	}
	refreshed.LastSeen = k.cfg.Now().Truncate(time.Millisecond)
	cookie, err := k.save(ctx, value, refreshed)
	switch {
	case errors.Is(err, sessions.ErrNoSession):
		return lockedRefresh{cookie: Cookie{Action: Clear}} // ended meanwhile (logout elsewhere, admin, IdP)
	case err != nil:
		k.cfg.Logger.Error("could not save refreshed session", zap.String("sub", refreshed.Subject), zap.Error(err))
	}
	return lockedRefresh{session: refreshed, cookie: cookie, stored: true}
}

// clone copies a session's fields; the slices and maps are shared, which
// is safe because a session's lists are replaced, never edited in place.
func clone(s *sessions.Session) *sessions.Session {
	cp := *s
	return &cp
}
