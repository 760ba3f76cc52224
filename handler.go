package oidcsession

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/oidc-session/oidc_session/internal/lifecycle"
	"github.com/oidc-session/oidc_session/sessions"
)

// ServeHTTP lets requests with a valid session (or, with bearer, a valid
// access token) through to next and answers the others; requests to the
// plugin's endpoints are served here.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	h.stripIdentityHeaders(r)
	if ep, ok := h.endpoints[r.URL.Path]; ok {
		return ep(h, w, r)
	}
	if h.bearer != nil {
		// An API call with an access token is judged by it alone.
		if handled, err := h.serveAccessToken(w, r, next); handled {
			return err
		}
	}
	sess := h.admittedBefore(r)
	if sess == nil {
		var err error
		if sess, err = h.currentSession(w, r); err != nil {
			return err
		}
	}
	if sess == nil {
		return h.unauthenticated(w, r)
	}
	if need := h.stepUp(sess, time.Now()); need != nil {
		if !h.redirects(r) {
			return insufficientAuthentication(w, need)
		}
		need.idp = h.idpOf(sess) // a step-up is a new login at the session's own IdP
		return h.startLogin(w, r, r.URL.RequestURI(), *need)
	}
	return h.admit(w, r, next, sess, authSession)
}

// How a request was authenticated: {http.auth.user.auth_method}.
const (
	authSession = "session"
	authBearer  = "bearer"
)

// authMethodValue is method as the placeholder's value: a constant, so
// that no request allocates to box it.
func authMethodValue(method string) any {
	if method == authBearer {
		return authBearer
	}
	return authSession
}

// admit lets an authenticated user's request through to next if the
// access rules allow it, with the identity handed on and the plugin's
// cookies taken out of the request. sess is the browser's session, or the
// transient one of an access token (method says which).
func (h *Handler) admit(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, sess *sessions.Session, method string) error {
	if err := h.authorize(sess); err != nil {
		return caddyhttp.Error(http.StatusForbidden, err)
	}
	h.expose(r, sess)
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.user.auth_method", authMethodValue(method))
	}
	h.jar.StripRequest(r)
	h.migrator.stripRequest(r)
	if method == authSession {
		r = r.WithContext(context.WithValue(r.Context(), admittedKey{}, admitted{h.sessionOwner(), sess}))
	}
	if h.CacheControl != "off" {
		w = &cacheControlWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, value: h.CacheControl}
	}
	return next.ServeHTTP(w, r)
}

// admittedKey is the request context key of the session an oidc_session
// handler admitted. The cookies are gone from the request by then (so that
// upstreams never see them); a later handler of the same session, such as
// a step-up block on a matcher beside the site's general one, judges that
// session by its own rules instead of finding no cookie.
type admittedKey struct{}

type admitted struct {
	owner string
	sess  *sessions.Session
}

// sessionOwner names what a session belongs to: the IdPs, their clients
// and the cookie. Only a handler with all of them the same may take over
// a session another admitted.
func (h *Handler) sessionOwner() string { return h.owner }

// admittedBefore is the session an earlier handler of the same owner
// admitted for this request, or nil.
func (h *Handler) admittedBefore(r *http.Request) *sessions.Session {
	if a, ok := r.Context().Value(admittedKey{}).(admitted); ok && a.owner == h.sessionOwner() {
		return a.sess
	}
	return nil
}

// currentSession returns the request's valid session, refreshed and touched
// as needed (writing the updated cookie), or nil if there is none. The only
// error it returns is a 503 when the store cannot be reached and the
// session cannot be judged: the cookie is then left alone.
func (h *Handler) currentSession(w http.ResponseWriter, r *http.Request) (*sessions.Session, error) {
	value := h.jar.Read(r)
	sess, cookie, err := h.sessions.Current(r.Context(), value)
	if err != nil {
		h.logger.Error("session store unavailable", zap.Error(err))
		return nil, caddyhttp.Error(h.UnavailableStatus, sessions.ErrUnavailable)
	}
	if sess != nil && h.untrustedEmail(sess) {
		cookie = h.sessions.Discard(r.Context(), value, sess, logoutOther)
		sess = nil
	}
	// A session of an IdP this handler does not know (one of another
	// oidc_session block with more providers, e.g. a corp-only block on
	// /admin, or of a provider since removed) is no session here: it is
	// left as it is, for the handlers that know it, and a login here
	// replaces it.
	if sess != nil && h.idpOf(sess) == nil {
		sess, cookie = nil, lifecycle.Cookie{}
	}
	if sess == nil {
		// An oauth2-proxy session taken over writes its own cookie.
		if taken, err := h.migrator.takeOver(w, r, value); taken != nil || err != nil {
			return taken, err
		}
	}
	if err := h.applyCookie(w, r, cookie); err != nil {
		// The old cookie still holds a usable session; serve this request.
		h.logger.Warn("could not write the updated session cookie", zap.Error(err))
	}
	return sess, nil
}

// applyCookie does what the lifecycle says to the session cookie.
func (h *Handler) applyCookie(w http.ResponseWriter, r *http.Request, c lifecycle.Cookie) error {
	switch c.Action {
	case lifecycle.Write:
		if err := h.jar.Write(w, r, c.Value, c.Expires); err != nil {
			return err
		}
		// A new or refreshed session may be larger than the one the
		// browser had: pending login flows make room for it.
		h.keepFlows(w, r, h.jar.SessionSize(c.Value))
	case lifecycle.Clear:
		h.jar.Clear(w, r)
	}
	return nil
}

func (h *Handler) idleTimeout() time.Duration {
	return max(time.Duration(h.IdleTimeout), 0)
}

// unauthenticated answers a request without a valid session: a login for
// a browser navigating to a page, a 401 for anything else (with the
// bearer challenge when access tokens are accepted).
func (h *Handler) unauthenticated(w http.ResponseWriter, r *http.Request) error {
	if !h.redirects(r) {
		h.challengeProviders(w)
		if h.bearer != nil {
			// Where API clients learn how to get a token (RFC 9728). A
			// Caddy error still, so handle_errors sees it as before.
			for _, c := range h.bearer.Challenge(r).Challenges {
				w.Header().Add("WWW-Authenticate", c)
			}
		}
		return caddyhttp.Error(http.StatusUnauthorized, errors.New("login required"))
	}
	return h.startLogin(w, r, r.URL.RequestURI(), loginOptions{})
}

// redirects reports whether a request without the session it needs is
// sent to log in (else it gets a 401).
func (h *Handler) redirects(r *http.Request) bool {
	return h.Unauthenticated == "redirect" || (h.Unauthenticated == "auto" && isNavigation(r))
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
