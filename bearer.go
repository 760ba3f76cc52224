package oidcsession

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/oidc-session/oidc_session/internal/bearer"
	"github.com/oidc-session/oidc_session/sessions"
)

// API clients beside browsers (the bearer block): a request that carries
// an access token is judged by internal/bearer on the token alone. The
// session cookie plays no part in it: a bad token is never rescued by a
// good cookie, and a good token is never shadowed by another user's
// cookie. No cookie is read, written or cleared, and no login is started.

// serveAccessToken answers r when it is for the protected resource
// metadata or carries an access token, and reports whether it did; a
// request without a token (ErrNoToken) is left to the session. A refused
// token gets the RFC 6750 answer written here (handle_errors does not see
// it: the body and challenge are for the client's code); an IdP that
// cannot be reached is a Caddy error with unavailable_status, never a 401
// for a token that may well be good.
func (h *Handler) serveAccessToken(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) (bool, error) {
	if h.bearer.ServeMetadata(w, r) {
		return true, nil
	}
	p, err := h.bearer.Verify(r.Context(), r)
	switch {
	case err == nil:
		sess, err := h.tokenSession(r, p)
		if err != nil {
			return true, caddyhttp.Error(http.StatusForbidden, err)
		}
		return true, h.admit(w, r, next, sess, authBearer)
	case errors.Is(err, bearer.ErrNoToken):
		return false, nil
	}
	return true, h.refuseToken(w, err)
}

// refuseToken answers a request whose token Verify did not accept. (Apart
// from serveAccessToken: the error target would cost every API call an
// allocation.)
func (h *Handler) refuseToken(w http.ResponseWriter, err error) error {
	var refusal *bearer.Error
	if errors.As(err, &refusal) {
		h.logger.Debug("access token refused", zap.Int("status", refusal.Status), zap.Error(refusal))
		refusal.WriteResponse(w)
		return nil
	}
	h.logger.Error("cannot judge the access token: the IdP cannot be reached", zap.Error(err))
	return caddyhttp.Error(h.UnavailableStatus, err)
}

// tokenSession is the transient session of an API request: the verified
// token's claims mapped by applyClaims exactly as a login's ID token
// claims are (email only when verified, groups, user_id_claim, kept
// claims), so the access rules, placeholders and headers are the
// session's. It is never stored, and is made once per cached token
// (bearer.Principal.Derived): like a cached cookie session, it is shared
// by the requests presenting that token and read-only. Its access token
// is the one presented (the same for every request of that verdict,
// which is keyed by the token's hash), for a configured access_token
// header.
func (h *Handler) tokenSession(r *http.Request, p *bearer.Principal) (*sessions.Session, error) {
	v, err := p.Derived(func() (any, error) {
		// Its own copy of the token: not the whole header string.
		s := &sessions.Session{Issuer: p.Issuer, TokenExpiry: p.Expiry, ExpiresAt: p.Expiry, AccessToken: strings.Clone(presentedToken(r))}
		if err := h.applyClaims(s, p.Claims); err != nil {
			return nil, fmt.Errorf("access token: %w", err)
		}
		return s, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*sessions.Session), nil
}

// presentedToken is the token of the request's Authorization header
// (Bearer or DPoP scheme), which Verify has accepted.
func presentedToken(r *http.Request) string {
	_, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	return strings.TrimLeft(token, " ")
}
