package oidcsession

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/oidc-session/oidc_session/oidc"
	"github.com/oidc-session/oidc_session/sessions"
)

// newSession builds a session from a login's verified tokens at p.
func (h *Handler) newSession(p *idp, t *oidc.Tokens) (*sessions.Session, error) {
	now := time.Now().Truncate(time.Millisecond)
	s := &sessions.Session{
		Issuer:    p.provider.Issuer(),
		CreatedAt: now,
		LastSeen:  now,
		ExpiresAt: now.Add(time.Duration(h.SessionLifetime)),
	}
	if err := h.applyClaims(s, t.Claims); err != nil {
		return nil, err
	}
	applyTokens(s, t)
	return s, nil
}

// applyClaims sets the session's identity from ID token claims. Subject is
// always the sub claim (logout and refresh checks rely on it); a configured
// user_id_claim is kept with the claims and must be present. An email the
// IdP does not mark as verified is kept only with allow_unverified_email:
// anyone who can register an address at the IdP could otherwise appear
// upstream as its owner. The IdP session id of the login is kept when a
// refreshed ID token has none (many IdPs send sid only at login), or
// back- and front-channel logout by sid would find nothing to end.
func (h *Handler) applyClaims(s *sessions.Session, claims map[string]any) error {
	rules := h.rulesOf(s)
	s.Subject = oidc.ClaimString(claims, "sub")
	if s.Subject == "" {
		return errors.New("ID token has no sub claim")
	}
	verified := oidc.ClaimStrings(claims, "email_verified")
	s.EmailVerified = len(verified) == 1 && verified[0] == "true"
	trustEmail := s.EmailVerified || h.AllowUnverifiedEmail
	s.Email = ""
	if trustEmail {
		s.Email = oidc.ClaimString(claims, "email")
	}
	if rules.UserIDClaim != "sub" && oidc.ClaimString(claims, rules.UserIDClaim) == "" {
		return fmt.Errorf("ID token has no %q claim (user_id_claim)", rules.UserIDClaim)
	}
	if rules.UserIDClaim == "email" && !trustEmail {
		return fmt.Errorf("%w: user_id_claim email needs a verified email, and the IdP does not mark this one as verified (email_verified); allow_unverified_email accepts it", errForbidden)
	}
	s.Name = oidc.ClaimString(claims, "name")
	if s.Name == "" {
		s.Name = oidc.ClaimString(claims, "preferred_username")
	}
	s.Groups = oidc.ClaimStrings(claims, rules.GroupsClaim)
	if sid := oidc.ClaimString(claims, "sid"); sid != "" {
		s.SID = sid
	}
	s.Claims = nil
	keepAuthentication(s, claims)
	for _, name := range h.keptClaims(&rules) {
		if name == "email" && !trustEmail {
			continue
		}
		if v := oidc.ClaimStrings(claims, name); v != nil {
			if s.Claims == nil {
				s.Claims = make(map[string][]string)
			}
			s.Claims[name] = v
		}
	}
	return nil
}

// untrustedEmail reports whether a session carries an email that login no
// longer keeps (unverified, without allow_unverified_email): one made by an
// earlier version of the plugin. It ends, and the next login makes a
// session without it.
func (h *Handler) untrustedEmail(s *sessions.Session) bool {
	return !s.EmailVerified && !h.AllowUnverifiedEmail && (s.Email != "" || s.Claims["email"] != nil)
}

// userID is the session's {http.auth.user.id}: the sub, or the configured
// user_id_claim.
func (h *Handler) userID(s *sessions.Session) string {
	claim := h.rulesOf(s).UserIDClaim
	if claim == "sub" || claim == "" {
		return s.Subject
	}
	if v := s.Claims[claim]; len(v) > 0 {
		return v[0]
	}
	return s.Subject
}

// keptClaims are the claims stored in the session: those asked for, the
// user id claim, and those authorization rules need.
func (h *Handler) keptClaims(rules *ProviderRules) []string {
	names := append([]string(nil), h.Claims...)
	if rules.UserIDClaim != "sub" && !contains(names, rules.UserIDClaim) {
		names = append(names, rules.UserIDClaim)
	}
	for name := range rules.RequiredClaims {
		if !contains(names, name) {
			names = append(names, name)
		}
	}
	return names
}

// applyTokens records new tokens; a refresh without a new ID token keeps
// the old one (it is still the right id_token_hint for logout).
func applyTokens(s *sessions.Session, t *oidc.Tokens) {
	if t.IDToken != "" {
		s.IDToken = t.IDToken
	}
	s.AccessToken = t.AccessToken
	s.RefreshToken = t.RefreshToken
	s.TokenIssued = t.Issued.Truncate(time.Second)
	s.TokenExpiry = t.Expiry.Truncate(time.Second)
}

var errForbidden = errors.New("access denied")

// authorize applies the allow rules (its provider's) to an authenticated
// user. An email of a domain that is another provider's (its domains) is
// refused: only that provider speaks for its addresses.
func (h *Handler) authorize(s *sessions.Session) error {
	if err := h.checkDomainOwner(s); err != nil {
		return err
	}
	rules := h.rulesOf(s)
	if len(rules.AllowedEmailDomains) > 0 {
		_, domain, ok := strings.Cut(s.Email, "@")
		switch {
		case !ok && !s.EmailVerified && !h.AllowUnverifiedEmail:
			return fmt.Errorf("%w: no verified email", errForbidden)
		case !ok:
			return fmt.Errorf("%w: no email", errForbidden)
		case !s.EmailVerified && !h.AllowUnverifiedEmail:
			return fmt.Errorf("%w: email not verified", errForbidden)
		case !containsFold(rules.AllowedEmailDomains, domain):
			return fmt.Errorf("%w: email domain not allowed", errForbidden)
		}
	}
	if len(rules.AllowedGroups) > 0 && !intersects(rules.AllowedGroups, s.Groups) {
		return fmt.Errorf("%w: not in an allowed group", errForbidden)
	}
	for name, want := range rules.RequiredClaims {
		if !intersects(want, s.Claims[name]) {
			return fmt.Errorf("%w: claim %q has no allowed value", errForbidden, name)
		}
	}
	return nil
}

// checkDomainOwner refuses a session whose email is of a domain another
// provider than its own has in its domains.
func (h *Handler) checkDomainOwner(s *sessions.Session) error {
	if len(h.domainOwner) == 0 || s.Email == "" {
		return nil
	}
	at := strings.LastIndexByte(s.Email, '@')
	if at < 0 {
		return nil
	}
	owner := h.domainOwner[strings.ToLower(s.Email[at+1:])]
	if owner != nil && owner != h.idpOf(s) {
		return fmt.Errorf("%w: email domain %s is provider %s's, and this login is not from it (sign in with %s)", errForbidden, truncate(s.Email[at+1:], 64), owner.name, owner.label)
	}
	return nil
}

// expose hands the identity to the rest of the chain as placeholders and,
// if configured, request headers.
func (h *Handler) expose(r *http.Request, s *sessions.Session) {
	id, groups, provider := h.userID(s), joinList(s.Groups), h.providerName(s)
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.user.id", id)
		repl.Set("http.auth.user.email", s.Email)
		repl.Set("http.auth.user.name", s.Name)
		repl.Set("http.auth.user.groups", groups)
		repl.Set("http.auth.user.provider", provider)
		for i, name := range h.Claims {
			repl.Set(h.claimPlaceholders[i], joinList(s.Claims[name]))
		}
	}
	if hc := h.Headers; hc != nil {
		setHeader(r, hc.User, id)
		setHeader(r, hc.Email, s.Email)
		setHeader(r, hc.Name, s.Name)
		setHeader(r, hc.Groups, groups)
		setHeader(r, hc.AccessToken, s.AccessToken)
		setHeader(r, hc.Provider, provider)
	}
}

// joinList joins with commas. A comma or percent sign inside an element is
// percent-encoded (%2C, %25), so a group named "admins,staff" cannot
// become two groups for an upstream that splits on commas; the common
// one-element case without them allocates nothing.
func joinList(list []string) string {
	if len(list) == 1 && !strings.ContainsAny(list[0], ",%") {
		return list[0]
	}
	var sb strings.Builder
	size := len(list) // the commas, and one byte to spare
	for _, e := range list {
		size += len(e)
	}
	sb.Grow(size) // one allocation unless something needs escaping
	for i, e := range list {
		if i > 0 {
			sb.WriteByte(',')
		}
		listEscaper.WriteString(&sb, e)
	}
	return sb.String()
}

var listEscaper = strings.NewReplacer("%", "%25", ",", "%2C")

func setHeader(r *http.Request, name, value string) {
	if name != "" && value != "" {
		r.Header.Set(name, value)
	}
}

// provisionIdentity prepares what the request path needs to hand the
// identity on: the header names to strip and the claim placeholder names.
func (h *Handler) provisionIdentity() {
	h.stripNames = identityHeaderNames(h.Headers)
	h.claimPlaceholders = make([]string, len(h.Claims))
	for i, name := range h.Claims {
		h.claimPlaceholders[i] = "http.auth.user." + name
	}
}

// defaultIdentityHeaders are stripped from every request even when not
// configured: upstreams moved from oauth2-proxy may still trust them.
var defaultIdentityHeaders = []string{
	"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups",
	"X-Forwarded-Preferred-Username", "X-Forwarded-Access-Token",
	"X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Groups",
	"X-Auth-Request-Preferred-Username", "X-Auth-Request-Access-Token",
	"Remote-User", "Remote-Email", "Remote-Groups", "Remote-Name",
}

// identityHeaderNames is the set of normalised header names a client must
// never be able to send.
func identityHeaderNames(hc *HeadersConfig) map[string]bool {
	names := map[string]bool{}
	for _, n := range defaultIdentityHeaders {
		names[normalizeHeader(n)] = true
	}
	if hc != nil {
		for _, n := range []string{hc.User, hc.Email, hc.Name, hc.Groups, hc.AccessToken, hc.Provider} {
			if n != "" {
				names[normalizeHeader(n)] = true
			}
		}
	}
	return names
}

// stripIdentityHeaders removes client-sent identity headers in any spelling:
// case and '_', '.' versus '-' do not matter, since some servers, frameworks
// and CGI-style gateways (PHP, FastCGI) fold them together. Caddy drops
// names with '_' or '.' itself, unless the server allowlists them
// (expected_underscore_headers, expected_dot_headers).
func (h *Handler) stripIdentityHeaders(r *http.Request) {
	var buf [64]byte
	for name := range r.Header {
		// string(bytes) as a map key does not allocate.
		if h.stripNames[string(appendNormalizedHeader(buf[:0], name))] {
			delete(r.Header, name)
		}
	}
}

// appendNormalizedHeader appends normalizeHeader(name) to buf, without
// allocating for the ASCII names HTTP allows.
func appendNormalizedHeader(buf []byte, name string) []byte {
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 0x80:
			return append(buf[:0], normalizeHeader(name)...) // let strings.ToLower decide
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_' || c == '.':
			c = '-'
		}
		buf = append(buf, c)
	}
	return buf
}

func normalizeHeader(name string) string {
	return headerSeparators.Replace(strings.ToLower(name))
}

var headerSeparators = strings.NewReplacer("_", "-", ".", "-")

func intersects(a, b []string) bool {
	for _, x := range a {
		if contains(b, x) {
			return true
		}
	}
	return false
}

func containsFold(list []string, v string) bool {
	for _, e := range list {
		if strings.EqualFold(e, v) {
			return true
		}
	}
	return false
}
