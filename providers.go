package oidcsession

// Several identity providers on one site (issue 15): each provider block
// (or the top-level settings, for a site with one IdP) becomes an idp, the
// unit the request path logs in with, refreshes at and takes logouts from.
// A session belongs to the idp of its issuer, a login flow to the idp it
// names.

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/oidc-session/oidc_session/oidc"
	"github.com/oidc-session/oidc_session/sessions"
)

// defaultProviderName names the IdP of the top-level settings.
const defaultProviderName = "default"

// idp is one identity provider as the request path uses it.
type idp struct {
	// name is the provider block's, or defaultProviderName.
	name    string
	label   string
	domains []string
	cfg     *ProviderConfig
	// rules are its claims mapping and authorization rules: its own where
	// its block sets them, else the site's.
	rules ProviderRules
	// provider talks to the IdP; its Issuer() is the issuer with its
	// placeholders replaced, the one sessions record.
	provider *oidc.Provider
	// binding is issuer and client id: what the primary IdP's sessions
	// and flows are sealed under.
	binding []byte
	// redirect is its callback URL (see redirectOf): an absolute URL, or
	// a path (with a query) on the request's host.
	redirect *url.URL
	// dpop: each login makes a DPoP key its session's tokens are bound to.
	dpop bool
	// counters are its series of logins_total and refreshes_total.
	counters idpCounters
}

// provisionProviders sets up the IdPs from the configuration, replacing
// placeholders. It reaches out to nothing: each IdP is discovered on first
// use.
func (h *Handler) provisionProviders(repl *caddy.Replacer) error {
	blocks := h.Providers
	if len(blocks) == 0 {
		blocks = []ProviderBlock{{Name: defaultProviderName, ProviderConfig: h.ProviderConfig}}
	}
	h.idps = make([]*idp, 0, len(blocks))
	h.idpByName = make(map[string]*idp, len(blocks))
	h.idpByIssuer = make(map[string]*idp, len(blocks))
	h.domainOwner = map[string]*idp{}
	var keys []*oidc.ClientKey
	for i := range blocks {
		b := &blocks[i]
		p, pkeys, err := newIdP(b, h.siteRules(), repl)
		if err == nil {
			p.redirect, err = redirectOf(h.PathPrefix, i, b)
		}
		if err != nil {
			if len(h.Providers) > 0 {
				return fmt.Errorf("provider %s: %w", b.Name, err)
			}
			return err
		}
		if other, dup := h.idpByIssuer[p.provider.Issuer()]; dup {
			return fmt.Errorf("provider %s: issuer %s is already provider %s's", b.Name, p.provider.Issuer(), other.name)
		}
		h.idps = append(h.idps, p)
		h.idpByName[p.name] = p
		h.idpByIssuer[p.provider.Issuer()] = p
		for _, d := range p.domains {
			h.domainOwner[d] = p
		}
		keys = append(keys, pkeys...)
	}
	if len(keys) > 0 {
		var err error
		if h.jwks, err = oidc.ClientJWKS(keys); err != nil {
			return err
		}
	}
	// The primary IdP's binding seals the sessions and the login flows.
	h.binding = h.idps[0].binding
	owner := []string{h.Cookie.Name}
	for _, p := range h.idps {
		owner = append(owner, string(p.binding))
	}
	h.owner = strings.Join(owner, "\x00")
	return nil
}

// newIdP makes the idp of one provider block, and returns the client keys
// it publishes.
func newIdP(b *ProviderBlock, site ProviderRules, repl *caddy.Replacer) (*idp, []*oidc.ClientKey, error) {
	rules := b.ProviderRules.over(site)
	pc := &b.ProviderConfig
	issuer := repl.ReplaceKnown(pc.Issuer, "")
	if err := checkAbsoluteURL(issuer); err != nil {
		return nil, nil, fmt.Errorf("issuer: %w", err) // a placeholder, checked once replaced
	}
	clientID := repl.ReplaceKnown(pc.ClientID, "")
	cfg := oidc.Config{
		Issuer:       issuer,
		ClientID:     clientID,
		ClientSecret: repl.ReplaceKnown(pc.ClientSecret, ""),
		Scopes:       pc.Scopes,
		UserInfo:     pc.FetchUserInfo.userInfoMode(),
		GroupsClaim:  rules.GroupsClaim,
		AuthParams:   pc.authParams(),
		HTTPClient:   &http.Client{Timeout: time.Duration(pc.ProviderTimeout)},
	}
	if errs := pc.clientSecurity(&cfg, repl); len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	p := &idp{
		name:    b.Name,
		label:   b.Label,
		domains: b.Domains,
		cfg:     pc,
		rules:   rules,
		binding: []byte(issuer + "\x00" + clientID),
		dpop:    cfg.DPoP.Enabled(),
	}
	if p.label == "" {
		p.label = b.Name
	}
	p.provider = oidc.NewProvider(cfg)
	return p, cfg.ClientKeys, nil
}

// primary is the first IdP (see Handler.Providers); nil before Provision.
func (h *Handler) primary() *idp {
	if len(h.idps) == 0 {
		return nil
	}
	return h.idps[0]
}

// multi reports whether the site has several IdPs.
func (h *Handler) multi() bool { return len(h.idps) > 1 }

// idpOf is the IdP a session belongs to, by its issuer; nil when none of
// the configured ones is (a provider since removed).
func (h *Handler) idpOf(s *sessions.Session) *idp {
	if s.Issuer == "" {
		return h.primary() // stored before sessions recorded their issuer
	}
	return h.idpByIssuer[s.Issuer]
}

// idpOfFlow is the IdP a login flow was started with; nil when it is no
// longer configured, or its name is now another issuer's. (The primary's
// flows are sealed under its issuer and client id.)
func (h *Handler) idpOfFlow(f *oidc.Flow) *idp {
	if f.Provider == "" {
		return h.primary()
	}
	if p := h.idpByName[f.Provider]; p != nil && p.provider.Issuer() == f.Issuer {
		return p
	}
	return nil
}

// recordIn records p in a flow as idpOfFlow reads it: nothing for the
// primary, so the flows of a site with one IdP are as before; its name
// and issuer for the others.
func (p *idp) recordIn(h *Handler, f *oidc.Flow) {
	if p != h.primary() {
		f.Provider, f.Issuer = p.name, p.provider.Issuer()
	}
}

// providerName is the name of a session's IdP, for placeholders, events
// and answers; "" for one whose IdP is gone.
func (h *Handler) providerName(s *sessions.Session) string {
	if p := h.idpOf(s); p != nil {
		return p.name
	}
	return ""
}

// redirectOf is the callback URL of the i-th IdP (from 0) of a site with
// this path prefix: its redirect_url, else <prefix>/callback for the
// primary and <prefix>/callback?provider=<name> for the others. Each IdP
// thus sends its answers to a URL of its own, which the callback checks
// against the login flow's IdP (OAuth 2.0 Security BCP 4.4.2: an answer
// of one IdP is never taken for another's, even from an IdP that sends no
// RFC 9207 iss). A site with one IdP keeps <prefix>/callback.
func redirectOf(prefix string, i int, b *ProviderBlock) (*url.URL, error) {
	if b.RedirectURL != "" {
		return parseRedirectURL(b.RedirectURL)
	}
	u := &url.URL{Path: prefix + "/callback"}
	if i > 0 {
		u.RawQuery = url.Values{"provider": {b.Name}}.Encode()
	}
	return u, nil
}

// redirectURL is the callback URL of p for this request.
func (h *Handler) redirectURL(r *http.Request, p *idp) string {
	if p.redirect.IsAbs() {
		return p.redirect.String()
	}
	return absoluteURL(r, p.redirect.String())
}

// reachedAt reports whether a callback request came to p's callback URL:
// its path, its host when the URL is absolute, and its query parameters,
// the provider parameter included (absent when p's URL has none). The
// scheme is not compared: behind a proxy the request's own may differ.
func (p *idp) reachedAt(r *http.Request) bool {
	u := p.redirect
	if r.URL.Path != u.Path {
		return false
	}
	if u.IsAbs() && canonicalHost(r.Host, u.Scheme) != canonicalHost(u.Host, u.Scheme) {
		return false
	}
	want, got := u.Query(), r.URL.Query()
	if got.Get("provider") != want.Get("provider") {
		return false
	}
	for k, v := range want {
		if !slices.Equal(got[k], v) {
			return false
		}
	}
	return true
}

// canonicalHost is host[:port] in lower case, without a trailing dot and
// without the scheme's default port.
func canonicalHost(host, scheme string) string {
	host = strings.ToLower(host)
	if scheme == "https" {
		host = strings.TrimSuffix(host, ":443")
	} else {
		host = strings.TrimSuffix(host, ":80")
	}
	if h, port, err := net.SplitHostPort(host); err == nil {
		return net.JoinHostPort(strings.TrimSuffix(h, "."), port)
	}
	return strings.TrimSuffix(host, ".")
}

// idpForLogin picks the IdP a login goes to: the one named, the one of the
// login hint's domain, the only one; nil when the user must choose. An
// unknown name is an error (a 400).
func (h *Handler) idpForLogin(name, loginHint string) (*idp, error) {
	if name != "" {
		p, ok := h.idpByName[name]
		if !ok {
			return nil, fmt.Errorf("no identity provider named %q", truncate(name, 64))
		}
		return p, nil
	}
	if !h.multi() {
		return h.primary(), nil
	}
	if at := strings.LastIndexByte(loginHint, '@'); at >= 0 {
		return h.domainOwner[strings.ToLower(loginHint[at+1:])], nil
	}
	return nil, nil
}

// challengeProviders tells an API client without a session, on a site with
// several IdPs, which ones there are and where a login with each starts:
//
//	WWW-Authenticate: OIDC-Session providers="corp partners", login_uri="/oauth2/start"
//
// (a login is then <login_uri>?provider=<name>&rd=<url>).
func (h *Handler) challengeProviders(w http.ResponseWriter) {
	if !h.multi() {
		return
	}
	names := make([]string, len(h.idps))
	for i, p := range h.idps {
		names[i] = p.name
	}
	w.Header().Add("WWW-Authenticate", fmt.Sprintf(`OIDC-Session providers="%s", login_uri="%s"`, strings.Join(names, " "), h.PathPrefix+"/start"))
}

// siteRules are the top-level claims mapping and authorization rules.
func (h *Handler) siteRules() ProviderRules {
	return ProviderRules{
		UserIDClaim:         h.UserIDClaim,
		GroupsClaim:         h.GroupsClaim,
		AllowedEmailDomains: h.AllowedEmailDomains,
		AllowedGroups:       h.AllowedGroups,
		RequiredClaims:      h.RequiredClaims,
	}
}

// over is r with the settings it leaves out taken from site.
func (r ProviderRules) over(site ProviderRules) ProviderRules {
	if r.UserIDClaim == "" {
		r.UserIDClaim = site.UserIDClaim
	}
	if r.GroupsClaim == "" {
		r.GroupsClaim = site.GroupsClaim
	}
	if r.AllowedEmailDomains == nil {
		r.AllowedEmailDomains = site.AllowedEmailDomains
	}
	if r.AllowedGroups == nil {
		r.AllowedGroups = site.AllowedGroups
	}
	if r.RequiredClaims == nil {
		r.RequiredClaims = site.RequiredClaims
	}
	return r
}

// rulesOf are the claims mapping and rules of a session: its provider's,
// or the site's for one of no provider (an access token of another trusted
// issuer).
func (h *Handler) rulesOf(s *sessions.Session) ProviderRules {
	if p := h.idpOf(s); p != nil {
		return p.rules
	}
	return h.siteRules()
}
