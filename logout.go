package oidcsession

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/oidc-session/oidc_session/sessions"
)

// serveBackchannelLogout implements OpenID Connect Back-Channel Logout 1.0:
// the IdP POSTs a signed logout token naming a session (sid) or a user
// (sub), and every matching session in the store ends. It needs a
// server-side store: the cookie store cannot reach sessions that live only
// in browsers.
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
	// Anyone can POST here, and a token with an unknown key id makes the
	// verifier fetch the IdP's keys again: bound the rate so the endpoint
	// cannot be used to hammer the IdP.
	if !h.logoutLimiter.Allow() {
		return backchannelError(w, http.StatusTooManyRequests, "temporarily_unavailable", "too many logout requests")
	}
	raw := r.PostForm.Get("logout_token")
	if raw == "" {
		return backchannelError(w, http.StatusBadRequest, "invalid_request", "logout_token is missing")
	}
	mgr, ok := h.store.(sessions.Manager)
	if !ok {
		return backchannelError(w, http.StatusNotImplemented, "unsupported", "the cookie store cannot end sessions from the back channel; use store memory or store redis")
	}
	d, err := h.provider.Discover(r.Context())
	if err != nil {
		return backchannelError(w, h.UnavailableStatus, "temporarily_unavailable", "identity provider not reachable")
	}
	lt, err := h.provider.VerifyLogoutToken(r.Context(), d, raw)
	if err != nil {
		h.logger.Warn("back-channel logout token refused", zap.Error(err))
		return backchannelError(w, http.StatusBadRequest, "invalid_request", err.Error())
	}
	if h.jtis.Seen(lt.Issuer, lt.JTI) {
		h.logger.Warn("back-channel logout token replayed")
		return backchannelError(w, http.StatusBadRequest, "invalid_request", "logout token already used (jti replay)")
	}
	var n int
	if lt.SID != "" {
		n, err = mgr.EndSID(r.Context(), lt.SID)
	} else {
		n, err = mgr.EndSubject(r.Context(), lt.Subject)
	}
	if err != nil {
		h.logger.Error("back-channel logout: store unavailable", zap.Error(err))
		return backchannelError(w, h.UnavailableStatus, "temporarily_unavailable", "session store not reachable")
	}
	h.logger.Info("back-channel logout", zap.String("sub", lt.Subject), zap.Int("sessions", n))
	for i := 0; i < n; i++ {
		metricLogout(logoutBackchannel)
	}
	w.WriteHeader(http.StatusOK)
	return nil
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
// 1.0: the IdP loads this URL (usually in an iframe) with its iss and the
// sid of the IdP session that ended. The browser's own session ends if it
// belongs to that IdP session (or if no sid is given), and with a
// server-side store every session of that sid ends.
func (h *Handler) serveFrontchannelLogout(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet {
		return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("front-channel logout takes GET"))
	}
	q := r.URL.Query()
	iss, sid := q.Get("iss"), q.Get("sid")
	if (iss == "") != (sid == "") {
		return caddyhttp.Error(http.StatusBadRequest, errors.New("front-channel logout needs both iss and sid, or neither"))
	}
	if iss != "" && iss != h.provider.Issuer() {
		return caddyhttp.Error(http.StatusBadRequest, errors.New("front-channel logout for another issuer"))
	}
	if value := h.jar.Read(r); value != "" {
		if sess, err := h.storeLoad(r.Context(), value); err == nil && (sid == "" || sess.SID == sid) {
			h.endSession(w, r, value, sess, logoutFrontchannel)
		}
	}
	if mgr, ok := h.store.(sessions.Manager); ok && sid != "" {
		n, err := mgr.EndSID(r.Context(), sid)
		if err != nil {
			return caddyhttp.Error(h.UnavailableStatus, err)
		}
		for i := 0; i < n; i++ {
			metricLogout(logoutFrontchannel)
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, err := io.WriteString(w, "<!doctype html><title>Logged out</title>\n")
	return err
}
