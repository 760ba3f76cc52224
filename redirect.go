package oidcsession

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/oidc-session/oidc_session/oidc"
)

const (
	// maxReturnURL bounds an accepted return URL.
	maxReturnURL = 2048
	// maxStoredReturnURL bounds the return URL a login flow cookie keeps:
	// a few pending logins must fit in the request headers beside a large
	// session (see cookieBudget).
	maxStoredReturnURL = 1024
)

// safeReturnTo returns rd if it is a safe place to send the browser: a path
// on this host, or an http(s) URL of this host or an allowed one. Anything
// that a browser could read as another host (//evil, /\evil, encoded
// forms, userinfo tricks, control characters) is refused.
func (h *Handler) safeReturnTo(r *http.Request, rd string) (string, bool) {
	if rd == "" || len(rd) > maxReturnURL || hasControlChars(rd) {
		return "", false
	}
	if strings.HasPrefix(rd, "/") {
		// The path is what a browser could read as a host (//evil, /\evil)
		// and what an upstream that decodes it once more must not find
		// scheme-relative either; the query and fragment may hold any
		// text (a search for 100%, a C:\ path).
		path, _ := splitPath(rd)
		dec, err := url.PathUnescape(path)
		if err != nil || strings.Contains(path, "\\") || hasUnsafeChars(dec) || isSchemeRelative(path) || isSchemeRelative(dec) {
			return "", false
		}
		u, err := url.Parse(rd)
		if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
			return "", false
		}
		return rd, true
	}
	if strings.Contains(rd, "\\") {
		return "", false
	}
	u, err := url.Parse(rd)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil || u.Host == "" || u.Opaque != "" {
		return "", false
	}
	if u.Scheme == "http" && requestScheme(r) == "https" {
		return "", false // no way back from https to plain http
	}
	if dec, err := url.PathUnescape(u.EscapedPath()); err != nil || hasUnsafeChars(dec) || isSchemeRelative(dec) {
		return "", false
	}
	if !h.hostAllowed(r, u.Hostname()) {
		return "", false
	}
	return u.String(), true
}

// splitPath cuts a relative URL into its path and the rest (query and
// fragment, with their ? or #).
func splitPath(ref string) (path, rest string) {
	if i := strings.IndexAny(ref, "?#"); i >= 0 {
		return ref[:i], ref[i:]
	}
	return ref, ""
}

// loginReturnTo is where a login started from r goes back to: target if
// safeReturnTo accepts it, else "/". Every return URL passes here, whether
// it came from rd or from the request's own URI (an unauthenticated
// request for //evil.example/ must not come back as a scheme-relative
// redirect). A URL too long to keep in the flow cookie loses its query,
// then falls back to "/".
func (h *Handler) loginReturnTo(r *http.Request, target string) string {
	safe, ok := h.safeReturnTo(r, target)
	if !ok {
		return "/"
	}
	if len(safe) > maxStoredReturnURL {
		if short, _, _ := strings.Cut(safe, "?"); len(short) <= maxStoredReturnURL {
			if again, ok := h.safeReturnTo(r, short); ok {
				return again
			}
		}
		return "/"
	}
	return safe
}

// callbackReturnTo is where the callback r of the login flow f sends the
// browser: the flow's return URL, checked again as the host that started
// the login would check it, made absolute when that host is not the
// callback's (an absolute redirect_url on a host of its own).
func (h *Handler) callbackReturnTo(r *http.Request, f *oidc.Flow) string {
	origin, err := url.Parse(f.Origin)
	if err != nil || origin.Host == "" || strings.EqualFold(origin.Host, r.Host) {
		return h.loginReturnTo(r, f.ReturnTo)
	}
	start := r.Clone(r.Context())
	start.Host = origin.Host
	target := h.loginReturnTo(start, f.ReturnTo)
	if strings.HasPrefix(target, "/") {
		target = origin.Scheme + "://" + origin.Host + target
	}
	return target
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

// hasUnsafeChars reports a control character or a backslash.
func hasUnsafeChars(s string) bool {
	return hasControlChars(s) || strings.Contains(s, "\\")
}

func hasControlChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
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

// requestScheme is how the browser reached this site. Behind a
// TLS-terminating proxy that the server trusts (Caddy's trusted_proxies),
// the proxy's X-Forwarded-Proto says so; from any other client the header
// changes nothing, or anyone could make the plugin build https URLs for a
// plain-http site or the reverse.
func requestScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
		if strings.EqualFold(strings.TrimSpace(proto), "https") {
			return "https"
		}
	}
	return "http"
}
