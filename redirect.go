package oidcsession

import (
	"net/http"
	"net/url"
	"strings"
)

// maxReturnURL bounds the return URL kept in the login flow cookie.
const maxReturnURL = 2048

// safeReturnTo returns rd if it is a safe place to send the browser: a path
// on this host, or an http(s) URL of this host or an allowed one. Anything
// that a browser could read as another host (//evil, /\evil, encoded
// forms, userinfo tricks, control characters) is refused.
func (h *Handler) safeReturnTo(r *http.Request, rd string) (string, bool) {
	if rd == "" || len(rd) > maxReturnURL || hasUnsafeChars(rd) {
		return "", false
	}
	// Defence in depth: an upstream that decodes the path once more must
	// not find a scheme-relative URL either.
	if dec, err := url.PathUnescape(rd); err != nil || hasUnsafeChars(dec) || isSchemeRelative(dec) {
		return "", false
	}
	if strings.HasPrefix(rd, "/") {
		if isSchemeRelative(rd) {
			return "", false
		}
		u, err := url.Parse(rd)
		if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
			return "", false
		}
		return rd, true
	}
	u, err := url.Parse(rd)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil || u.Host == "" || u.Opaque != "" {
		return "", false
	}
	if !h.hostAllowed(r, u.Hostname()) {
		return "", false
	}
	return u.String(), true
}

// absoluteURL makes a validated return URL absolute against the request, as
// an IdP's post_logout_redirect_uri must be.
func absoluteURL(r *http.Request, target string) string {
	if strings.HasPrefix(target, "/") {
		return requestScheme(r) + "://" + r.Host + target
	}
	return target
}

func (h *Handler) hostAllowed(r *http.Request, host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" {
		return false
	}
	if reqHost := strings.ToLower(hostOnly(r.Host)); host == reqHost {
		return true
	}
	for _, allowed := range h.AllowedRedirectHosts {
		allowed = strings.ToLower(allowed)
		if suffix, ok := strings.CutPrefix(allowed, "*"); ok {
			if strings.HasSuffix(host, suffix) && len(host) > len(suffix) {
				return true
			}
		} else if host == allowed {
			return true
		}
	}
	return false
}

func isSchemeRelative(s string) bool {
	return strings.HasPrefix(s, "//") || strings.HasPrefix(s, "/\\") || strings.HasPrefix(s, "\\")
}

func hasUnsafeChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return true
		}
	}
	return false
}

func hostOnly(hostport string) string {
	if u, err := url.Parse("//" + hostport); err == nil {
		return u.Hostname()
	}
	return hostport
}

func requestScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}
