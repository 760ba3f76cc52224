package oidcsession

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/oidc-session/oidc_session/internal/cookies"
	"github.com/oidc-session/oidc_session/internal/lifecycle"
	"github.com/oidc-session/oidc_session/oidc"
	"github.com/oidc-session/oidc_session/sessions"
)

// endpoint serves one of the plugin's own paths.
type endpoint func(h *Handler, w http.ResponseWriter, r *http.Request) error

// endpointPaths are the plugin's own paths, under path_prefix, and what
// serves each.
var endpointPaths = map[string]endpoint{
	"/start":     (*Handler).serveStart,
	"/callback":  (*Handler).serveCallback,
	"/sign_out":  (*Handler).serveSignOut,
	"/userinfo":  (*Handler).serveUserInfo,
	"/session":   (*Handler).serveSessionStatus,
	"/jwks.json": (*Handler).serveJWKS,

	"/backchannel_logout":  (*Handler).serveBackchannelLogout,
	"/frontchannel_logout": (*Handler).serveFrontchannelLogout,
}

// provisionEndpoints maps the plugin's paths to their handlers, and each
// IdP's callback path to the callback.
func (h *Handler) provisionEndpoints() {
	h.endpoints = make(map[string]endpoint, len(endpointPaths)+len(h.idps))
	for path, e := range endpointPaths {
		h.endpoints[h.PathPrefix+path] = e
	}
	for _, p := range h.idps {
		h.endpoints[p.redirect.Path] = (*Handler).serveCallback
	}
}

// parseRedirectURL reads redirect_url: an absolute http(s) URL or a path.
func parseRedirectURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Path == "" || !strings.HasPrefix(u.Path, "/") || (u.IsAbs() && u.Host == "") {
		return nil, fmt.Errorf("redirect_url %q must be an absolute URL or a path starting with /", raw)
	}
	if u.IsAbs() && u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("redirect_url %q must be http(s)", raw)
	}
	return u, nil
}

// serveStart begins a login that returns to rd (or /), with the
// login_hint of the query if it has one (or the email the chooser's form
// asked for, which is sent as one).
func (h *Handler) serveStart(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var opts loginOptions
	hint := q.Get("login_hint")
	if hint == "" {
		hint = strings.TrimSpace(q.Get("email"))
	}
	if hint != "" {
		if len(hint) > 256 || hasControlChars(hint) {
			return caddyhttp.Error(http.StatusBadRequest, errors.New("login_hint too long or with control characters"))
		}
		opts.loginHint = hint
	}
	p, err := h.idpForLogin(q.Get("provider"), opts.loginHint)
	if err != nil {
		return caddyhttp.Error(http.StatusBadRequest, err)
	}
	opts.idp = p
	return h.startLogin(w, r, q.Get("rd"), opts)
}

// loginOptions are the parameters of one login besides the configured
// ones: the IdP (nil: the only one, or the one the user chooses), a
// login_hint, and what a step-up requires.
type loginOptions struct {
	idp        *idp
	loginHint  string
	requireACR []string
	maxAge     time.Duration // 0: none beyond the configured max_age
}

// startLogin sends the browser to the IdP with a new login flow that comes
// back to returnTo, once loginReturnTo has checked it. On a site with
// several IdPs and none chosen, the browser gets the sign-in chooser.
func (h *Handler) startLogin(w http.ResponseWriter, r *http.Request, returnTo string, opts loginOptions) error {
	p := opts.idp
	if p == nil {
		if p, _ = h.idpForLogin("", opts.loginHint); p == nil {
			return h.serveChooser(w, r, h.loginReturnTo(r, returnTo), opts.loginHint)
		}
	}
	d, err := p.provider.Discover(r.Context())
	if err != nil {
		h.logger.Error("cannot start login", zap.String("provider", p.name), zap.Error(err))
		return caddyhttp.Error(h.UnavailableStatus, err)
	}
	f := oidc.NewFlow(h.loginReturnTo(r, returnTo), !p.cfg.DisablePKCE)
	f.Origin = requestScheme(r) + "://" + r.Host
	p.recordIn(h, f)
	if f.DPoP, err = p.newDPoPKey(); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	extra := url.Values{}
	if opts.loginHint != "" {
		extra.Set("login_hint", opts.loginHint)
	}
	if len(opts.requireACR) > 0 {
		f.RequireACR = opts.requireACR
		extra.Set("acr_values", strings.Join(opts.requireACR, " "))
		if p.cfg.Prompt == "" {
			// acr_values alone is a wish an IdP may meet with the
			// session it has: a step-up is a new authentication.
			extra.Set("prompt", "login")
		}
	}
	// The max_age sent is the stricter of the configured one and the
	// step-up's; the callback then requires auth_time within it.
	maxAge := time.Duration(p.cfg.MaxAge)
	if opts.maxAge > 0 && (maxAge == 0 || opts.maxAge < maxAge) {
		maxAge = opts.maxAge
	}
	if maxAge > 0 {
		f.MaxAge = int64(maxAge / time.Second)
		extra.Set("max_age", strconv.FormatInt(f.MaxAge, 10))
	}
	target, err := p.provider.LoginURL(r.Context(), d, f, h.redirectURL(r, p), extra)
	if errors.Is(err, oidc.ErrUnavailable) {
		h.logger.Error("cannot start login", zap.String("provider", p.name), zap.Error(err))
		return caddyhttp.Error(h.UnavailableStatus, err)
	}
	if err != nil {
		h.logger.Error("cannot start login: configuration and IdP do not fit", zap.String("provider", p.name), zap.Error(err))
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	h.writeFlow(w, r, f)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusFound)
	return nil
}

// serveCallback finishes a login: it checks the state against this
// browser's flow cookie, redeems the code, verifies the ID token and starts
// a new session.
func (h *Handler) serveCallback(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	q := r.URL.Query()
	id, ok := oidc.IDFromState(q.Get("state"))
	if !ok {
		return loginFailed(nil, http.StatusBadRequest, loginFailureState, errors.New("login callback without a valid state"))
	}
	c, err := r.Cookie(h.jar.FlowPrefix() + id)
	if err != nil {
		return loginFailed(nil, http.StatusBadRequest, loginFailureState, errors.New("unknown or expired login attempt (state matches no login flow of this browser)"))
	}
	// A flow is used once, whatever the outcome.
	h.jar.Delete(w, c.Name)
	f, err := h.openFlow(c)
	if err != nil || !f.Matches(q.Get("state")) {
		return loginFailed(nil, http.StatusBadRequest, loginFailureState, errors.New("login flow cookie invalid or not for this state"))
	}
	if time.Since(f.Created) > time.Duration(h.LoginTimeout) {
		return loginFailed(nil, http.StatusBadRequest, loginFailureState, errors.New("login attempt expired"))
	}
	// The answer is taken from the IdP the login went to only, at the
	// callback URL registered there.
	p := h.idpOfFlow(f)
	if p == nil {
		return loginFailed(p, http.StatusBadRequest, loginFailureState, fmt.Errorf("login attempt with identity provider %q, which is no longer configured (or now has another issuer)", truncate(f.Provider, 64)))
	}
	if !p.reachedAt(r) {
		h.logger.Warn("login callback at another provider's callback URL", zap.String("provider", p.name))
		return loginFailed(p, http.StatusBadRequest, loginFailureState, fmt.Errorf("login callback at another URL than provider %s's", p.name))
	}
	ctx, sp := idpSpan(r.Context(), "exchange")
	d, err := p.provider.Discover(ctx)
	if err != nil {
		endSpan(sp, err)
		return loginFailed(p, h.UnavailableStatus, loginFailureUnavailable, err)
	}
	// RFC 9207: an answer that says it comes from another IdP (a mix-up)
	// is refused before its code is used, or its error shown.
	if err := d.CheckIssuer(q.Get("iss"), q.Has("iss")); err != nil {
		endSpan(sp, err)
		h.logger.Warn("login callback from another issuer", zap.String("provider", p.name), zap.Error(err))
		return loginFailed(p, http.StatusBadRequest, loginFailureState, err)
	}
	if e := q.Get("error"); e != "" {
		endSpan(sp, nil)
		h.logger.Info("IdP refused the login", zap.String("provider", p.name), zap.String("error", truncate(e, 64)))
		return loginFailed(p, http.StatusForbidden, loginFailureIdPError, fmt.Errorf("login refused by the identity provider: %s", truncate(e, 64)))
	}
	code := q.Get("code")
	if code == "" {
		endSpan(sp, nil)
		return loginFailed(p, http.StatusBadRequest, loginFailureState, errors.New("login callback without a code"))
	}
	// With dpop on, the code is redeemed with proofs of the flow's key,
	// which the authorization request named (dpop_jkt).
	tokens, err := p.provider.Exchange(oidc.WithDPoPKey(ctx, f.DPoP), d, f, code, h.redirectURL(r, p))
	endSpan(sp, err)
	if errors.Is(err, oidc.ErrUnavailable) {
		h.logger.Error("login failed: IdP unavailable", zap.String("provider", p.name), zap.Error(err))
		return loginFailed(p, h.UnavailableStatus, loginFailureUnavailable, err)
	}
	if errors.Is(err, oidc.ErrNotDPoPBound) {
		// dpop on, and an IdP (or client registration) without DPoP: no
		// login can work until one of them changes.
		h.logger.Error("login failed: configuration and IdP do not fit", zap.String("provider", p.name), zap.Error(err))
		return loginFailed(p, http.StatusInternalServerError, loginFailureExchange, err)
	}
	if err != nil {
		h.logger.Warn("login failed", zap.String("provider", p.name), zap.Error(err))
		return loginFailed(p, http.StatusBadRequest, loginFailureExchange, err)
	}
	if err := checkAuthentication(f, tokens.Claims); err != nil {
		h.logger.Info("login refused: authentication weaker than asked", zap.String("provider", p.name), zap.Error(err))
		return loginFailed(p, http.StatusForbidden, loginFailureDenied, err)
	}
	sess, err := h.newSession(p, tokens)
	if err == nil {
		err = keepDPoPKey(sess, f.DPoP)
	}
	if errors.Is(err, errForbidden) {
		h.logger.Info("login denied", zap.String("provider", p.name), zap.Error(err))
		return loginFailed(p, http.StatusForbidden, loginFailureDenied, err)
	}
	if err != nil {
		return loginFailed(p, http.StatusBadRequest, loginFailureVerify, err)
	}
	if err := h.authorize(sess); err != nil {
		h.logger.Info("login denied by authorization rules", zap.String("provider", p.name), zap.String("sub", sess.Subject), zap.Error(err))
		return loginFailed(p, http.StatusForbidden, loginFailureDenied, err)
	}
	// A new login never continues an earlier session (no fixation): the
	// old one is ended and the store mints a new identifier.
	cookie, err := h.sessions.Start(r.Context(), h.jar.Read(r), sess)
	if err == nil {
		err = h.applyCookie(w, r, cookie)
	}
	if err != nil {
		h.logger.Error("could not save new session", zap.String("sub", sess.Subject), zap.Error(err))
		if errors.Is(err, cookies.ErrTooLarge) {
			// A deployment problem, not the user's: say what to change.
			return caddyhttp.Error(http.StatusInternalServerError, err)
		}
		return caddyhttp.Error(h.UnavailableStatus, err)
	}
	h.logger.Info("login", zap.String("sub", sess.Subject), zap.String("provider", p.name))
	metricLogin(p)
	h.emit(eventCreated, sess, "")
	// The flow cookie is authenticated, but its return URL is checked again
	// against this request: whatever sends the browser on must be safe here.
	http.Redirect(w, r, h.callbackReturnTo(r, f), http.StatusFound)
	return nil
}

// serveSignOut ends the session and, where the IdP supports it, sends the
// browser on to the IdP's end_session_endpoint. A session that cannot be
// ended because its store is down is not reported as ended: the answer is
// unavailable_status, the cookie stays, and the user can try again.
func (h *Handler) serveSignOut(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("sign_out takes GET or POST"))
	}
	// Logout CSRF: a page on another site must not log the user out. Browsers
	// say where a request comes from; a cross-site one is refused.
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return caddyhttp.Error(http.StatusForbidden, errors.New("cross-site sign_out refused"))
	}
	w.Header().Set("Cache-Control", "no-store")
	target, ok := h.safeReturnTo(r, r.URL.Query().Get("rd"))
	if !ok {
		target = h.PostLogoutRedirect
	}
	h.migrator.signOut(w, r)
	var idToken string
	if value := h.jar.Read(r); value != "" {
		sess, err := h.sessions.Peek(r.Context(), value)
		if err != nil && !errors.Is(err, sessions.ErrNoSession) {
			h.logger.Error("sign_out: session store unavailable", zap.Error(err))
			return caddyhttp.Error(h.UnavailableStatus, err)
		}
		kind := logoutLocal
		var p *idp
		if sess != nil {
			p = h.idpOf(sess)
			h.logger.Info("logout", zap.String("sub", sess.Subject), zap.String("provider", h.providerName(sess)))
			idToken = sess.IDToken
		}
		// RP-initiated logout and revocation at the session's own IdP.
		var d *oidc.Discovered
		derr := errors.New("no identity provider")
		if p != nil {
			d, derr = p.provider.Discover(r.Context())
		}
		rpInitiated := derr == nil && idToken != "" && d.EndSessionEndpoint != ""
		if rpInitiated {
			kind = logoutRPInitiated
		}
		cookie, err := h.sessions.End(r.Context(), value, sess, lifecycle.Reason(kind))
		if err != nil {
			h.logger.Error("sign_out: could not end the session in its store", zap.Error(err))
			return caddyhttp.Error(h.UnavailableStatus, err)
		}
		_ = h.applyCookie(w, r, cookie) // a Clear: cannot fail
		if sess != nil && derr == nil {
			h.revoke(p, d, sess)
		}
		if rpInitiated {
			h.clearFlows(w, r)
			return h.sendToEndSession(w, r, p, d.EndSessionEndpoint, idToken, target)
		}
	}
	h.clearFlows(w, r)
	http.Redirect(w, r, target, http.StatusFound)
	return nil
}

// serveUserInfo answers with the session's identity as JSON; never tokens.
func (h *Handler) serveUserInfo(w http.ResponseWriter, r *http.Request) error {
	sess, err := h.currentSession(w, r)
	if err != nil {
		return err
	}
	if sess == nil {
		return caddyhttp.Error(http.StatusUnauthorized, errors.New("login required"))
	}
	// The identity of a user the rules keep out of the site is not shown
	// here either.
	if err := h.authorize(sess); err != nil {
		return caddyhttp.Error(http.StatusForbidden, err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(struct {
		User          string              `json:"user"`
		Subject       string              `json:"sub"`
		Email         string              `json:"email,omitempty"`
		EmailVerified bool                `json:"email_verified"`
		Name          string              `json:"name,omitempty"`
		Groups        []string            `json:"groups,omitempty"`
		Claims        map[string][]string `json:"claims,omitempty"`
		CreatedAt     time.Time           `json:"created_at"`
		ExpiresAt     time.Time           `json:"expires_at"`
		Provider      string              `json:"provider"`
	}{h.userID(sess), sess.Subject, sess.Email, sess.EmailVerified, sess.Name, sess.Groups, sess.Claims, sess.CreatedAt, sess.ExpiresAt, h.providerName(sess)})
}

// serveSessionStatus answers GET <prefix>/session for single-page apps:
// whether there is a session and when it, its idle timeout and its access
// token run out, as JSON; never a token. It reads the session without
// refreshing or touching it, so polling it keeps no session alive.
func (h *Handler) serveSessionStatus(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("session takes GET"))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	sess, err := h.sessions.Peek(r.Context(), h.jar.Read(r))
	if err != nil && !errors.Is(err, sessions.ErrNoSession) {
		h.logger.Error("session store unavailable", zap.Error(err))
		return caddyhttp.Error(h.UnavailableStatus, sessions.ErrUnavailable)
	}
	now := time.Now()
	if sess == nil || sess.Expired(now, h.idleTimeout()) || h.untrustedEmail(sess) || h.idpOf(sess) == nil {
		w.WriteHeader(http.StatusUnauthorized)
		if !h.multi() {
			_, err := io.WriteString(w, `{"authenticated":false}`+"\n")
			return err
		}
		// Where a single-page app can send the user to log in.
		type provider struct {
			Name     string `json:"name"`
			Label    string `json:"label"`
			LoginURL string `json:"login_url"`
		}
		out := struct {
			Authenticated bool       `json:"authenticated"`
			Providers     []provider `json:"providers"`
		}{}
		for _, p := range h.idps {
			out.Providers = append(out.Providers, provider{p.name, p.label, h.loginURL(p, "", "")})
		}
		return json.NewEncoder(w).Encode(out)
	}
	status := struct {
		Authenticated        bool       `json:"authenticated"`
		Subject              string     `json:"sub"`
		Provider             string     `json:"provider"`
		ExpiresAt            time.Time  `json:"expires_at"`
		IdleExpiresAt        *time.Time `json:"idle_expires_at,omitempty"`
		AccessTokenExpiresAt *time.Time `json:"access_token_expires_at,omitempty"`
	}{Authenticated: true, Subject: sess.Subject, Provider: h.providerName(sess), ExpiresAt: sess.ExpiresAt}
	if idle := h.idleTimeout(); idle > 0 {
		t := sess.Deadline(idle)
		status.IdleExpiresAt = &t
	}
	if !sess.TokenExpiry.IsZero() {
		status.AccessTokenExpiresAt = &sess.TokenExpiry
	}
	return json.NewEncoder(w).Encode(status)
}

// revoke asks the IdP to revoke the refresh token, then the access token,
// of a session that has ended (RFC 7009), in the background: a slow or
// down IdP must never delay or fail the logout, and each call is bounded
// by provider_timeout.
func (h *Handler) revoke(p *idp, d *oidc.Discovered, s *sessions.Session) {
	if d.RevocationEndpoint == "" || (s.RefreshToken == "" && s.AccessToken == "") {
		return
	}
	refresh, access, sub := s.RefreshToken, s.AccessToken, s.Subject
	go func() {
		for _, t := range []struct{ token, hint string }{{refresh, "refresh_token"}, {access, "access_token"}} {
			if t.token == "" {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(p.cfg.ProviderTimeout))
			err := p.provider.Revoke(ctx, d, t.token, t.hint)
			cancel()
			if err != nil {
				h.logger.Info("token revocation failed", zap.String("sub", sub), zap.String("token", t.hint), zap.Error(err))
			}
		}
	}()
}

// loginFailed counts a failed login at p (nil: not known yet) by reason and
// makes its error.
func loginFailed(p *idp, status int, reason string, err error) error {
	metricLoginFailure(p, reason)
	return caddyhttp.Error(status, err)
}

// acceptsHTML reports whether an Accept header asks for an HTML page.
func acceptsHTML(accept string) bool {
	return strings.Contains(accept, "text/html") || strings.Contains(accept, "application/xhtml+xml")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
