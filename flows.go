package oidcsession

import (
	"encoding/base64"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/oidc-session/oidc_session/internal/cookies"
	"github.com/oidc-session/oidc_session/oidc"
)

// Login flow cookies: one short-lived encrypted cookie per login attempt
// (<cookie>_flow_<id>), so several tabs can log in at once.

// cookieBudget bounds the bytes the plugin's own cookies (session chunks
// and flow cookies) take in a request's Cookie header. Caddy refuses
// request headers over 16 KiB (max_header_bytes) with 431 before any
// handler runs, sign_out included: a browser whose cookies grew past that
// could not even log out until they expired. A full 3-chunk session (about
// 11.4 KB) leaves room for one or two pending logins; the rest of the limit
// is for the site's other cookies and headers.
const cookieBudget = 13 << 10

// writeFlow seals f into a new flow cookie, dropping older flows to stay
// within MaxLoginFlows and cookieBudget.
func (h *Handler) writeFlow(w http.ResponseWriter, r *http.Request, f *oidc.Flow) {
	name := h.jar.FlowPrefix() + f.ID()
	value := base64.RawURLEncoding.EncodeToString(h.flowKeys.Seal(f.Marshal(), h.flowBinding(name)))
	h.keepFlows(w, r, cookies.Size(name, value)+h.sessionCookiesSize(r))
	h.jar.SetFor(w, name, value, time.Duration(h.LoginTimeout))
}

// flowBinding ties a flow cookie's content to its name and to this IdP and
// client, so flows cannot be swapped between cookies or deployments.
func (h *Handler) flowBinding(cookieName string) []byte {
	return append(append([]byte(nil), h.binding...), "\x00"+cookieName...)
}

// keepFlows keeps the newest pending login flows of the request that fit,
// besides reserved bytes (a flow about to be written, the session cookies
// this response leaves the browser with), in MaxLoginFlows and
// cookieBudget; the others are deleted, so abandoned logins cannot pile up
// cookies until every request gets 431. It runs whenever the plugin's
// cookies grow: a new flow, a new or refreshed session.
func (h *Handler) keepFlows(w http.ResponseWriter, r *http.Request, reserved int) {
	type flowCookie struct {
		name    string
		size    int
		created time.Time
	}
	var flows []flowCookie
	for _, c := range r.Cookies() {
		if strings.HasPrefix(c.Name, h.jar.FlowPrefix()) {
			fc := flowCookie{name: c.Name, size: cookies.Size(c.Name, c.Value)}
			if f, err := h.openFlow(c); err == nil {
				fc.created = f.Created
			}
			flows = append(flows, fc)
		}
	}
	sort.Slice(flows, func(i, j int) bool { return flows[i].created.After(flows[j].created) })
	used, kept := reserved, 0
	for _, fc := range flows {
		if kept < h.MaxLoginFlows-1 && used+fc.size <= cookieBudget {
			used += fc.size
			kept++
			continue
		}
		h.jar.Delete(w, fc.name)
	}
}

// sessionCookiesSize is what the session cookies the request carries take.
func (h *Handler) sessionCookiesSize(r *http.Request) int {
	n := 0
	for _, c := range r.Cookies() {
		if h.jar.Owns(c.Name) && !strings.HasPrefix(c.Name, h.jar.FlowPrefix()) {
			n += cookies.Size(c.Name, c.Value)
		}
	}
	return n
}

// clearFlows deletes every login flow cookie the request carries.
func (h *Handler) clearFlows(w http.ResponseWriter, r *http.Request) {
	for _, c := range r.Cookies() {
		if strings.HasPrefix(c.Name, h.jar.FlowPrefix()) {
			h.jar.Delete(w, c.Name)
		}
	}
}

func (h *Handler) openFlow(c *http.Cookie) (*oidc.Flow, error) {
	sealed, err := base64.RawURLEncoding.Strict().DecodeString(c.Value)
	if err != nil {
		return nil, err
	}
	plain, err := h.flowKeys.Open(sealed, h.flowBinding(c.Name))
	if err != nil {
		return nil, err
	}
	return oidc.UnmarshalFlow(plain)
}
