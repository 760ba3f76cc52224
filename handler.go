package oidcsession

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/oidc-session/oidc_session/oidc"
	"github.com/oidc-session/oidc_session/sessions"
)

// ServeHTTP lets requests with a valid session through to next and answers
// the others; requests to the plugin's endpoints are served here.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	h.stripIdentityHeaders(r)
	if ep, ok := h.endpoints[r.URL.Path]; ok {
		return ep(h, w, r)
	}
	sess, err := h.currentSession(w, r)
	if err != nil {
		return err
	}
	if sess == nil {
		return h.unauthenticated(w, r)
	}
	if err := h.authorize(sess); err != nil {
		return caddyhttp.Error(http.StatusForbidden, err)
	}
	h.expose(r, sess)
	h.jar.StripRequest(r)
	if h.CacheControl != "off" {
		w = &cacheControlWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, value: h.CacheControl}
	}
	return next.ServeHTTP(w, r)
}

// currentSession returns the request's valid session, refreshed and touched
// as needed (writing the updated cookie), or nil if there is none. The only
// error it returns is a 503 when the store or the IdP cannot be reached and
// the session cannot be judged: the cookie is then left alone.
func (h *Handler) currentSession(w http.ResponseWriter, r *http.Request) (*sessions.Session, error) {
	value := h.jar.Read(r)
	if value == "" {
		return nil, nil
	}
	ctx := r.Context()
	now := time.Now()
	idle := h.idleTimeout()
	_, shared := h.store.(sessions.Checker)
	sess, err := h.storeLoad(ctx, value)
	fresh := false
	if err == nil && shared && sess.Expired(now, idle) && now.Before(sess.ExpiresAt) {
		// Idle by the copy in hand, which may predate a touch at another
		// instance that kept the session alive: judge by the stored one.
		sess, err = h.storeLoadFresh(ctx, value)
		fresh = true
	}
	switch {
	case errors.Is(err, sessions.ErrNoSession):
		h.jar.Clear(w, r) // junk or expired: stop the browser sending it
		return nil, nil
	case err != nil:
		h.logger.Error("session store unavailable", zap.Error(err))
		return nil, caddyhttp.Error(h.UnavailableStatus, sessions.ErrUnavailable)
	}
	if sess.Expired(now, idle) {
		h.endDeadSession(w, r, value, sess, logoutExpired)
		return nil, nil
	}
	if h.untrustedEmail(sess) {
		h.endDeadSession(w, r, value, sess, logoutOther)
		return nil, nil
	}
	changed := false
	if h.needsRefresh(sess, now) && !h.backoff.waiting(tokenKey(sess.RefreshToken), now) {
		if locker, ok := h.store.(sessions.Locker); ok {
			// Shared store: refreshed and saved under the store's lock.
			sess = h.refreshShared(w, r, locker, value, sess)
			if sess == nil {
				return nil, nil
			}
		} else {
			ok, err := h.refresh(ctx, sess)
			if !ok {
				h.logger.Info("session ended: refresh refused", zap.String("sub", sess.Subject), zap.Error(err))
				h.endDeadSession(w, r, value, sess, logoutOther)
				return nil, nil
			}
			changed = err == nil
		}
	}
	if touch := min(idle/16, 5*time.Minute); idle > 0 && now.Sub(sess.LastSeen) >= touch {
		if shared && !changed && !fresh {
			// The copy in hand may predate a refresh made elsewhere;
			// saving it would put back a spent refresh token.
			if stored, err := h.storeLoadFresh(ctx, value); err == nil {
				sess = stored
			}
		}
		sess.LastSeen = now.Truncate(time.Millisecond)
		changed = true
	}
	if changed {
		err := h.saveSession(w, r, value, sess)
		if errors.Is(err, sessions.ErrNoSession) {
			h.jar.Clear(w, r) // ended meanwhile (logout elsewhere, admin, IdP)
			return nil, nil
		}
		if err != nil {
			// The old cookie still holds a usable session; serve this
			// request and let the next one try to save again.
			h.logger.Warn("could not save updated session", zap.String("sub", sess.Subject), zap.Error(err))
		}
	}
	return sess, nil
}

// saveSession stores sess and writes its cookie. prev is "" at login.
func (h *Handler) saveSession(w http.ResponseWriter, r *http.Request, prev string, sess *sessions.Session) error {
	value, err := h.storeSave(r.Context(), prev, sess)
	if err != nil {
		return err
	}
	return h.jar.Write(w, r, value, sess.Deadline(h.idleTimeout()))
}

// endSession deletes the session from its store and, once it is gone,
// clears the cookie; kind says why (a logouts_total label). When the store
// cannot be reached the cookie is left alone and the error returned: the
// session is not over, and the user must be able to try again.
func (h *Handler) endSession(w http.ResponseWriter, r *http.Request, value string, sess *sessions.Session, kind string) error {
	if err := h.storeDelete(r.Context(), value); err != nil {
		return err
	}
	h.jar.Clear(w, r)
	metricLogout(kind)
	h.emit(eventEnded, sess, kind)
	return nil
}

// endDeadSession ends a session that cannot go on whatever the store says
// (expired, its refresh refused): the cookie is cleared even when the
// store cannot be reached, since the record is useless and expires on its
// own.
func (h *Handler) endDeadSession(w http.ResponseWriter, r *http.Request, value string, sess *sessions.Session, kind string) {
	if err := h.endSession(w, r, value, sess, kind); err != nil {
		h.logger.Warn("could not delete session from store", zap.Error(err))
		h.jar.Clear(w, r)
		metricLogout(kind)
		h.emit(eventEnded, sess, kind)
	}
}

func (h *Handler) idleTimeout() time.Duration {
	return max(time.Duration(h.IdleTimeout), 0)
}

// refreshShared refreshes a session kept in a store that several Caddy
// instances share. Under the session's lock it reads the session again:
// if another instance (or request) refreshed it meanwhile, that result is
// used, so a rotating refresh token is redeemed exactly once. The refreshed
// session is saved before the lock is released. It returns nil when the
// session has ended (and clears the cookie).
func (h *Handler) refreshShared(w http.ResponseWriter, r *http.Request, locker sessions.Locker, value string, sess *sessions.Session) *sessions.Session {
	// Requests of one session on this instance share one trip through the
	// lock: only the first waits for it, the others take its result,
	// instead of queueing for the lock one poll interval at a time.
	v, _, _ := h.refreshes.Do("shared\x00"+value, func() (any, error) {
		return h.refreshUnderLock(w, r, locker, value, sess), nil
	})
	fresh, _ := v.(*sessions.Session)
	if fresh == nil {
		return nil
	}
	cp := *fresh
	return &cp
}

// refreshUnderLock is refreshShared's work, done by one request per
// instance at a time.
func (h *Handler) refreshUnderLock(w http.ResponseWriter, r *http.Request, locker sessions.Locker, value string, sess *sessions.Session) *sessions.Session {
	// Other requests wait for this one: it must not stop because its own
	// client went away.
	ctx := context.WithoutCancel(r.Context())
	release, err := locker.Lock(ctx, value)
	if err != nil {
		h.logger.Warn("refresh lock not acquired; serving with current tokens", zap.String("sub", sess.Subject), zap.Error(err))
		return sess
	}
	defer release()
	fresh, err := h.storeLoadFresh(ctx, value)
	switch {
	case errors.Is(err, sessions.ErrNoSession):
		h.jar.Clear(w, r)
		return nil
	case err != nil:
		return sess
	}
	if !h.needsRefresh(fresh, time.Now()) {
		return fresh // refreshed by someone else while we waited
	}
	ok, err := h.refresh(ctx, fresh)
	if !ok {
		h.logger.Info("session ended: refresh refused", zap.String("sub", fresh.Subject), zap.Error(err))
		h.endDeadSession(w, r, value, fresh, logoutOther)
		return nil
	}
	if err == nil {
		fresh.LastSeen = time.Now().Truncate(time.Millisecond)
		err := h.saveSession(w, r, value, fresh)
		if errors.Is(err, sessions.ErrNoSession) {
			h.jar.Clear(w, r) // ended meanwhile (logout elsewhere, admin, IdP)
			return nil
		}
		if err != nil {
			h.logger.Error("could not save refreshed session", zap.String("sub", fresh.Subject), zap.Error(err))
		}
	}
	return fresh
}

// needsRefresh decides expiry itself, rather than leaving it to
// golang.org/x/oauth2, whose fixed 10 s early expiry would refresh a
// short-lived token on every request.
func (h *Handler) needsRefresh(s *sessions.Session, now time.Time) bool {
	if s.RefreshToken == "" || s.TokenExpiry.IsZero() {
		return false
	}
	margin := time.Duration(h.RefreshMargin)
	if lifetime := s.TokenExpiry.Sub(s.TokenIssued); lifetime > 0 {
		margin = min(margin, lifetime/3)
	}
	return s.TokenExpiry.Sub(now) < margin
}

// refresh renews the session's tokens. It reports false when the session
// must end: the IdP's answer is final (invalid_grant, or another refusal
// such as invalid_client or unauthorized_client that no retry will
// change), or the new tokens cannot be accepted (an ID token that fails
// verification, or one for another subject). A true with an error means
// the IdP could not be reached: the session goes on with its current
// tokens, and this instance waits a little longer after each failure
// before trying again, so a down IdP is not called on every request.
func (h *Handler) refresh(ctx context.Context, s *sessions.Session) (bool, error) {
	key := tokenKey(s.RefreshToken)
	t, err := h.refreshTokens(ctx, s.RefreshToken)
	switch {
	case errors.Is(err, oidc.ErrInvalidGrant):
		metricRefreshFailure(refreshFailureInvalidGrant)
		return false, err
	case errors.Is(err, oidc.ErrUnavailable):
		metricRefreshFailure(refreshFailureUnavailable)
		wait := h.backoff.failed(key, time.Now())
		h.logger.Warn("token refresh failed; keeping the session", zap.String("sub", s.Subject), zap.Duration("retry_after", wait), zap.Error(err))
		return true, err
	case err != nil:
		metricRefreshFailure(refreshFailureOther)
		return false, err
	}
	h.backoff.succeeded(key)
	if t.Claims != nil {
		before := s.Subject
		if err := h.applyClaims(s, t.Claims); err != nil {
			metricRefreshFailure(refreshFailureOther)
			return false, fmt.Errorf("refreshed ID token: %w", err)
		}
		if s.Subject != before {
			metricRefreshFailure(refreshFailureOther)
			return false, errors.New("refreshed ID token is for another subject")
		}
	}
	applyTokens(s, t)
	metricRefresh()
	h.emit(eventRefreshed, s, "")
	return true, nil
}

// refreshTokens redeems a refresh token once per instance, however many
// requests of the session ask at the same time; requests that arrive a
// little later with the same (now spent) refresh token get the same result
// from a short-lived cache, so an IdP that rotates refresh tokens does not
// log them out.
func (h *Handler) refreshTokens(ctx context.Context, refreshToken string) (*oidc.Tokens, error) {
	key := tokenKey(refreshToken)
	if t := h.recent.get(key); t != nil {
		return t, nil
	}
	v, err, _ := h.refreshes.Do(key, func() (any, error) {
		if t := h.recent.get(key); t != nil {
			return t, nil
		}
		// The refresh outlives a cancelled request: others may be waiting
		// for it, and a token the IdP already rotated must not be lost.
		ctx, sp := idpSpan(context.WithoutCancel(ctx), "refresh")
		d, err := h.provider.Discover(ctx)
		if err != nil {
			endSpan(sp, err)
			return nil, err
		}
		t, err := h.provider.Refresh(ctx, d, refreshToken, h.FetchUserInfo)
		endSpan(sp, err)
		if err != nil {
			return nil, err
		}
		h.recent.put(key, t)
		return t, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*oidc.Tokens), nil
}

// unauthenticated answers a request without a valid session: a login for
// a browser navigating to a page, a 401 for anything else.
func (h *Handler) unauthenticated(w http.ResponseWriter, r *http.Request) error {
	redirect := h.Unauthenticated == "redirect" || (h.Unauthenticated == "auto" && isNavigation(r))
	if !redirect {
		return caddyhttp.Error(http.StatusUnauthorized, errors.New("login required"))
	}
	return h.startLogin(w, r, r.URL.RequestURI())
}

// isNavigation tells a top-level browser navigation from an API call, by
// the Fetch Metadata headers where the browser sends them and by the
// Accept header otherwise.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if r.Header.Get("X-Requested-With") != "" {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	return acceptsHTML(r.Header.Get("Accept"))
}
