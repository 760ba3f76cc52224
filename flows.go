package oidcsession

import (
	"encoding/base64"
	"net/http"
	"sort"
	"strings"
	"time"

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
	h.capFlows(w, r, cookieSize(name, value))
	h.jar.SetFor(w, name, value, time.Duration(h.LoginTimeout))
}

// flowBinding ties a flow cookie's content to its name and to this IdP and
// client, so flows cannot be swapped between cookies or deployments.
func (h *Handler) flowBinding(cookieName string) []byte {
	return append(append([]byte(nil), h.binding...), "\x00"+cookieName...)
}

// capFlows keeps the newest earlier login flows that fit, with the one
// about to be written (newFlow bytes) and the session cookies the request
// carries, in MaxLoginFlows and cookieBudget; the others are deleted, so
// abandoned logins cannot pile up cookies until every request gets 431.
func (h *Handler) capFlows(w http.ResponseWriter, r *http.Request, newFlow int) {
	type flowCookie struct {
		name    string
		size    int
		created time.Time
	}
	var flows []flowCookie
	used := newFlow
	for _, c := range r.Cookies() {
		switch {
		case strings.HasPrefix(c.Name, h.jar.FlowPrefix()):
			fc := flowCookie{name: c.Name, size: cookieSize(c.Name, c.Value)}
			if f, err := h.openFlow(c); err == nil {
				fc.created = f.Created
			}
			flows = append(flows, fc)
		case h.jar.Owns(c.Name):
			used += cookieSize(c.Name, c.Value)
		}
	}
	sort.Slice(flows, func(i, j int) bool { return flows[i].created.After(flows[j].created) })
	kept := 0
	for _, fc := range flows {
		if kept < h.MaxLoginFlows-1 && used+fc.size <= cookieBudget {
			used += fc.size
			kept++
			continue
		}
		h.jar.Delete(w, fc.name)
	}
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

// cookieSize is what a cookie adds to a request's Cookie header.
func cookieSize(name, value string) int { return len(name) + 1 + len(value) + len("; ") }
