package oidcsession

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oidc-session/oidc_session/oidc"
	"github.com/oidc-session/oidc_session/sessions"
)

// Step-up: require_acr and max_auth_age on a route. A session that does
// not satisfy them is sent to log in again asking for them (acr_values,
// max_age); the login's answer is checked against what was asked
// (checkAuthentication), so an IdP that answers with less gets a 403
// rather than sending the user round in a loop.

// authTimeSkew is the clock difference tolerated on auth_time.
const authTimeSkew = 2 * time.Minute

// authTimeRounding is how much older than max_auth_age a session's
// auth_time may look and still count. auth_time is in whole seconds and
// OPs judge max_age in whole seconds too, so an OP may answer a login that
// asked for max_age with an auth_time that, a moment later, looks up to a
// second too old here: without this margin the step-up would send the user
// straight back to the OP, in a loop until the OP's own clock turns.
const authTimeRounding = time.Second

// The session claims that record how the user authenticated, from the ID
// token (kept with the other claims, whatever `claims` lists).
const (
	claimACR      = "acr"
	claimAuthTime = "auth_time"
)

// checkAuthentication refuses the login of flow f when its ID token's acr
// is not one of those the flow requires, or when max_age was sent and
// auth_time is missing (OIDC Core 3.1.2.1 makes it required) or older than
// max_age before the login started.
func checkAuthentication(f *oidc.Flow, claims map[string]any) error {
	if len(f.RequireACR) > 0 {
		if acr := oidc.ClaimString(claims, claimACR); !contains(f.RequireACR, acr) {
			return fmt.Errorf("%w: the identity provider authenticated the user with acr %q, not one of %s as this page requires", errForbidden, truncate(acr, 64), strings.Join(f.RequireACR, ", "))
		}
	}
	if f.MaxAge > 0 {
		at, ok := authTime(claims)
		switch {
		case !ok:
			return fmt.Errorf("%w: max_age was sent and the ID token has no auth_time", errForbidden)
		case at.Add(time.Duration(f.MaxAge)*time.Second + authTimeSkew).Before(f.Created):
			return fmt.Errorf("%w: the identity provider last authenticated the user at %s, longer ago than max_age (%ds) allows", errForbidden, at.UTC().Format(time.RFC3339), f.MaxAge)
		}
	}
	return nil
}

// authTime reads the auth_time claim (a NumericDate, or the string a
// session keeps it as).
func authTime(claims map[string]any) (time.Time, bool) {
	switch v := claims[claimAuthTime].(type) {
	case float64:
		if v > 0 && v < math.MaxInt32*4 {
			return time.Unix(int64(v), 0), true
		}
	case string:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			return time.Unix(n, 0), true
		}
	}
	return time.Time{}, false
}

// keepAuthentication records the ID token's acr and auth_time in the
// session's claims.
func keepAuthentication(s *sessions.Session, claims map[string]any) {
	set := func(name, value string) {
		if s.Claims == nil {
			s.Claims = map[string][]string{}
		}
		s.Claims[name] = []string{value}
	}
	if acr := oidc.ClaimString(claims, claimACR); acr != "" {
		set(claimACR, acr)
	}
	if at, ok := authTime(claims); ok {
		set(claimAuthTime, strconv.FormatInt(at.Unix(), 10))
	}
}

// stepUp says what the session lacks for this handler's require_acr and
// max_auth_age, as the options of the login that would give it; nil when
// it lacks nothing.
func (h *Handler) stepUp(s *sessions.Session, now time.Time) *loginOptions {
	needACR := len(h.RequireACR) > 0 && !intersects(h.RequireACR, s.Claims[claimACR])
	needAge := false
	if h.MaxAuthAge > 0 {
		at, ok := authTime(map[string]any{claimAuthTime: first(s.Claims[claimAuthTime])})
		needAge = !ok || at.Add(time.Duration(h.MaxAuthAge)+authTimeRounding).Before(now)
	}
	if !needACR && !needAge {
		return nil
	}
	opts := &loginOptions{requireACR: h.RequireACR}
	if needAge {
		opts.maxAge = time.Duration(h.MaxAuthAge)
	}
	return opts
}

// insufficientAuthentication answers an API call whose session needs a
// step-up: 401 with the challenge of RFC 9470, which tells the client what
// to ask the IdP for.
func insufficientAuthentication(w http.ResponseWriter, opts *loginOptions) error {
	challenge := `Bearer error="insufficient_user_authentication", error_description="a stronger or more recent authentication is required"`
	if len(opts.requireACR) > 0 {
		challenge += `, acr_values="` + strings.Join(opts.requireACR, " ") + `"`
	}
	if opts.maxAge > 0 {
		challenge += ", max_age=" + strconv.FormatInt(int64(opts.maxAge/time.Second), 10)
	}
	w.Header().Set("WWW-Authenticate", challenge)
	return caddyhttp.Error(http.StatusUnauthorized, errors.New("step-up authentication required"))
}

func first(list []string) string {
	if len(list) == 0 {
		return ""
	}
	return list[0]
}
