package lifecycle

import (
	"context"
	"time"

	"github.com/oidc-session/oidc_session/sessions"
)

// Store access: every call goes through Hooks.Store, and decoded sessions
// are kept in the cache. A cached session of a shared store is used only
// after the store's cheap existence check; a refresh or a touch-save reads
// the store itself (loadFresh).

func (k *Keeper) call(ctx context.Context, op StoreOp) (context.Context, func(error)) {
	if k.cfg.Hooks.Store == nil {
		return ctx, func(error) {}
	}
	return k.cfg.Hooks.Store(ctx, op)
}

func (k *Keeper) load(ctx context.Context, value string) (*sessions.Session, error) {
	key := keyOf(value)
	s := k.cache.get(key)
	if s == nil {
		return k.loadStored(ctx, value, key)
	}
	if s.Issuer == "" {
		s.Issuer = k.cfg.Issuer // a compact entry is the record as stored
	}
	checker := k.cfg.Capabilities.Checker
	if checker == nil {
		return s, nil
	}
	cctx, done := k.call(ctx, OpExists)
	exists, err := checker.Exists(cctx, value)
	done(err)
	switch {
	case err != nil:
		return nil, err
	case !exists:
		k.cache.drop(key)
		return nil, sessions.ErrNoSession
	}
	return s, nil
}

// loadFresh reads the session from its store, never from the cache: for
// refreshes, where a copy older than the store's could hold a refresh
// token another instance has already redeemed.
func (k *Keeper) loadFresh(ctx context.Context, value string) (*sessions.Session, error) {
	return k.loadStored(ctx, value, keyOf(value))
}

// loadStored reads the session from its store, with its tokens still
// encoded when the store can leave them so (see withTokens), and caches it.
func (k *Keeper) loadStored(ctx context.Context, value string, key cacheKey) (*sessions.Session, error) {
	cctx, done := k.call(ctx, OpLoad)
	var s *sessions.Session
	var err error
	if lazy, ok := k.cfg.Store.(sessions.LazyLoader); ok {
		s, err = lazy.LoadLazy(cctx, value)
	} else {
		s, err = k.cfg.Store.Load(cctx, value)
	}
	if err == sessions.ErrNoSession {
		done(nil) // an answer, not a failure of the store
	} else {
		done(err)
	}
	if err != nil {
		return nil, err
	}
	if k.cfg.Tokens {
		// Every request reads them: decode them once, not per request.
		if s, err = withTokens(s); err != nil {
			return nil, err
		}
	}
	k.cache.put(key, s, true, k.cfg.Tokens)
	if s.Issuer == "" {
		s.Issuer = k.cfg.Issuer
	}
	return s, nil
}

// withTokens decodes the tokens of a session the store left encoded, for
// what needs them: a refresh, the handler (Config.Tokens), a logout. A
// record that does not decode leads to no session.
func withTokens(s *sessions.Session) (*sessions.Session, error) {
	if err := s.DecodeTokens(); err != nil {
		return nil, sessions.ErrNoSession
	}
	return s, nil
}

// save stores s (prev is "" at login) and returns the cookie to write.
func (k *Keeper) save(ctx context.Context, prev string, s *sessions.Session) (Cookie, error) {
	cctx, done := k.call(ctx, OpSave)
	v, err := k.cfg.Store.Save(cctx, prev, s)
	done(err)
	if err != nil {
		return Cookie{}, err
	}
	if prev != "" && prev != v {
		k.cache.drop(keyOf(prev))
	}
	if k.cfg.Capabilities.DropsTokens {
		s = s.WithoutTokens() // what the value holds; this request keeps its copy
	}
	k.cache.put(keyOf(v), s, false, k.cfg.Tokens)
	return Cookie{Action: Write, Value: v, Expires: s.Deadline(k.cfg.IdleTimeout)}, nil
}

func (k *Keeper) delete(ctx context.Context, value string) error {
	k.cache.drop(keyOf(value))
	cctx, done := k.call(ctx, OpDelete)
	err := k.cfg.Store.Delete(cctx, value)
	done(err)
	return err
}

// needsRefresh decides expiry itself, rather than leaving it to
// golang.org/x/oauth2, whose fixed 10 s early expiry would refresh a
// short-lived token on every request.
func (k *Keeper) needsRefresh(s *sessions.Session, now time.Time) bool {
	if k.cfg.Refresher == nil || !s.HasRefreshToken() || s.TokenExpiry.IsZero() {
		return false
	}
	margin := k.cfg.RefreshMargin
	if lifetime := s.TokenExpiry.Sub(s.TokenIssued); lifetime > 0 {
		margin = min(margin, lifetime/3)
	}
	return s.TokenExpiry.Sub(now) < margin
}
