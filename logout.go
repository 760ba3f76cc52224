package oidcsession

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/oidc-session/oidc_session/oidc"
	"github.com/oidc-session/oidc_session/sessions"
)

// serveBackchannelLogout implements OpenID Connect Back-Channel Logout 1.0:
// the IdP POSTs a signed logout token naming a session (sid), a user (sub)
// or a user's session (both), and every matching session in the store
// ends. It needs a server-side store: the cookie store cannot reach
// sessions that live only in browsers.
//
// Anyone can POST here, so nothing shared is spent before a token has
// passed its cheap checks: malformed requests and tokens are refused
// first, a token is verified with the keys already fetched, and only a
// token naming a key this instance does not have may make it fetch the
// IdP's keys again, as limited per client address by logoutFetches.
func (h *Handler) serveBackchannelLogout(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("back-channel logout takes POST"))
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return backchannelError(w, http.StatusBadRequest, "invalid_request", "unreadable form body")
	}
	raw := r.PostForm.Get("logout_token")
	if raw == "" {
		return backchannelError(w, http.StatusBadRequest, "invalid_request", "logout_token is missing")
	}
	mgr, ok := h.store.(sessions.Manager)
	if !ok {
		return backchannelError(w, http.StatusNotImplemented, "unsupported", "the cookie store cannot end sessions from the back channel; use store memory or store redis")
	}
	// The token is verified by the provider it names as its issuer, with
	// that provider's keys, issuer and client id, and ends only that
	// provider's sessions: a token of one IdP never touches another's.
	p := h.logoutTokenIdP(raw)
	if p == nil {
		return backchannelError(w, http.StatusBadRequest, "invalid_request", "logout token from an issuer that is not one of this site's identity providers")
	}
	d, err := p.provider.Discover(r.Context())
	if err != nil {
		return backchannelError(w, h.UnavailableStatus, "temporarily_unavailable", "identity provider not reachable")
	}
	source := clientAddress(r)
	lt, err := p.provider.VerifyLogoutToken(r.Context(), d, raw, func() bool { return h.logoutFetches.allow(source) })
	if errors.Is(err, oidc.ErrUnavailable) {
		h.logger.Warn("back-channel logout token not checked now", zap.Error(err))
		w.Header().Set("Retry-After", "5")
		return backchannelError(w, h.UnavailableStatus, "temporarily_unavailable", "the identity provider's keys cannot be checked now; retry")
	}
	if err != nil {
		h.logger.Warn("back-channel logout token refused", zap.String("provider", p.name), zap.Error(err))
		return backchannelError(w, http.StatusBadRequest, "invalid_request", err.Error())
	}
	if h.jtis.Used(lt.Issuer, lt.JTI) {
		h.logger.Warn("back-channel logout token replayed")
		return backchannelError(w, http.StatusBadRequest, "invalid_request", "logout token already used (jti replay)")
	}
	var n int
	if lt.SID != "" {
		n, err = mgr.EndSID(r.Context(), lt.Issuer, lt.SID, lt.Subject)
	} else {
		n, err = mgr.EndSubject(r.Context(), lt.Issuer, lt.Subject)
	}
	if err != nil {
		// Not recorded as used: the IdP's retry of this token must work.
		h.logger.Error("back-channel logout: store unavailable", zap.Error(err))
		return backchannelError(w, h.UnavailableStatus, "temporarily_unavailable", "session store not reachable")
	}
	h.jtis.Record(lt.Issuer, lt.JTI)
	h.logger.Info("back-channel logout", zap.String("sub", lt.Subject), zap.String("provider", p.name), zap.Int("sessions", n))
	for i := 0; i < n; i++ {
		metricLogout(p, logoutBackchannel)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// logoutTokenIdP is the provider whose issuer the (not yet verified) logout
// token names, or nil. Choosing by it is safe: that provider then verifies
// the token, iss included.
func (h *Handler) logoutTokenIdP(raw string) *idp {
	if !h.multi() {
		return h.primary()
	}
	claims, err := oidc.UnverifiedClaims(raw)
	if err != nil {
		return nil
	}
	iss, _ := claims["iss"].(string)
	return h.idpByIssuer[iss]
}

// backchannelError answers as section 2.8 of the spec asks: a status and a
// JSON error body.
func backchannelError(w http.ResponseWriter, status int, code, description string) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{code, description})
}

// serveFrontchannelLogout implements OpenID Connect Front-Channel Logout
// 1.0: the IdP loads this URL in an iframe with its iss and the sid of the
// IdP session that ended. The browser's own session ends if it belongs to
// that IdP session, and with a server-side store every session of that sid
// ends. Without iss and sid only a session that has no sid can be ended
// (an IdP that does not send them): one with a sid needs the matching sid.
//
// A page on another site must not be able to log the user out by
// navigating here (logout CSRF, as sign_out refuses): the IdP's iframe is a
// cross-site request with Sec-Fetch-Dest iframe, a forged link or redirect
// is a cross-site document navigation, which is refused.
func (h *Handler) serveFrontchannelLogout(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet {
		return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("front-channel logout takes GET"))
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" && r.Header.Get("Sec-Fetch-Dest") == "document" {
		return caddyhttp.Error(http.StatusForbidden, errors.New("cross-site navigation to frontchannel_logout refused (IdPs load it in an iframe)"))
	}
	q := r.URL.Query()
	iss, sid := q.Get("iss"), q.Get("sid")
	if (iss == "") != (sid == "") {
		return caddyhttp.Error(http.StatusBadRequest, errors.New("front-channel logout needs both iss and sid, or neither"))
	}
	// Without iss and sid, nothing ties the request to the IdP: another
	// site could frame this URL. A cross-site request must then come from
	// the IdP's own pages (when the browser says where it comes from), and
	// only the session of that IdP ends.
	crossSiteWithoutIss := iss == "" && r.Header.Get("Sec-Fetch-Site") == "cross-site"
	if crossSiteWithoutIss && r.Referer() != "" && h.refererIdP(r.Referer(), nil) == nil {
		return caddyhttp.Error(http.StatusForbidden, errors.New("cross-site front-channel logout without iss and sid from another origin than the IdP's"))
	}
	// The IdP whose session ended: the one of iss, or without iss (only
	// with one IdP, or for the browser's own session without sid) any.
	var p *idp
	if iss != "" {
		if p = h.idpByIssuer[iss]; p == nil {
			return caddyhttp.Error(http.StatusBadRequest, errors.New("front-channel logout for another issuer"))
		}
	}
	if value := h.jar.Read(r); value != "" {
		sess, err := h.sessions.Peek(r.Context(), value)
		switch {
		case err == nil && crossSiteWithoutIss && h.refererIdP(r.Referer(), h.idpOf(sess)) != h.idpOf(sess):
			return caddyhttp.Error(http.StatusForbidden, errors.New("cross-site front-channel logout without iss and sid from another origin than the session's IdP's"))
		case err == nil && sess.SID == sid && (p == nil || h.idpOf(sess) == p):
			cookie, err := h.sessions.End(r.Context(), value, sess, logoutFrontchannel)
			if err != nil {
				return caddyhttp.Error(h.UnavailableStatus, err)
			}
			_ = h.applyCookie(w, r, cookie) // a Clear: cannot fail
		case err != nil && !errors.Is(err, sessions.ErrNoSession):
			return caddyhttp.Error(h.UnavailableStatus, err)
		}
	}
	if mgr, ok := h.store.(sessions.Manager); ok && sid != "" {
		n, err := mgr.EndSID(r.Context(), p.provider.Issuer(), sid, "")
		if err != nil {
			return caddyhttp.Error(h.UnavailableStatus, err)
		}
		for i := 0; i < n; i++ {
			metricLogout(p, logoutFrontchannel)
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, err := io.WriteString(w, "<!doctype html><title>Logged out</title>\n")
	return err
}

// refererIdP is the IdP a Referer is from: the one of its origin, among
// several of that origin the one whose issuer path it is under (browsers
// often send the origin only; then prefer, when it is of that origin, is
// taken). Without a Referer (the browser does not say) it is prefer; nil
// when the Referer is of no IdP.
func (h *Handler) refererIdP(referer string, prefer *idp) *idp {
	if referer == "" {
		return prefer
	}
	ref, err := url.Parse(referer)
	if err != nil {
		return nil
	}
	var best *idp
	bestLen := -1
	for _, p := range h.idps {
		iss, err := url.Parse(p.provider.Issuer())
		if err != nil || !strings.EqualFold(ref.Scheme, iss.Scheme) || !strings.EqualFold(ref.Host, iss.Host) {
			continue
		}
		n := 0 // of its origin only
		if path := strings.TrimSuffix(iss.Path, "/"); path != "" && (ref.Path == path || strings.HasPrefix(ref.Path, path+"/")) {
			n = len(path)
		}
		if n > bestLen || n == bestLen && p == prefer {
			best, bestLen = p, n
		}
	}
	return best
}
