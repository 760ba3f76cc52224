package oidcsession

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/oidc-session/oidc_session/internal/oauth2proxy"
	"github.com/oidc-session/oidc_session/oidc"
	"github.com/oidc-session/oidc_session/sessions"
)

// The handler's configuration, grouped by concern. The groups are embedded
// in Handler, so their fields stay at the top level of the JSON config and
// of the Caddyfile block.

// ProviderConfig says which IdP to log in with, as which client, and how
// to talk to it.
type ProviderConfig struct {
	// Issuer is the IdP's issuer URL; discovery is read from
	// <issuer>/.well-known/openid-configuration. Required. It must match
	// the iss claim of the ID tokens exactly.
	Issuer string `json:"issuer,omitempty"`

	// ClientID is this relying party's client id at the IdP. Required.
	ClientID string `json:"client_id,omitempty"`

	// ClientSecret is the client secret; empty for a public client (which
	// then relies on PKCE). Supports {env.*} and {file.*} placeholders, and
	// is never logged.
	ClientSecret string `json:"client_secret,omitempty"`

	// ClientAuth is how the client authenticates to the IdP at its token,
	// pushed authorization request, revocation and introspection
	// endpoints: client_secret_basic, client_secret_post, private_key_jwt
	// or none. Default: private_key_jwt with client_keys (unless the IdP
	// lists only secret methods and there is a client_secret), else the
	// secret method the IdP advertises with client_secret, else none. An
	// explicit method needs what it uses (a secret, a key, or neither).
	ClientAuth string `json:"client_auth,omitempty"`

	// ClientKeys are the private keys of private_key_jwt (RFC 7523), each
	// the PEM text itself or the path of a PEM file: RSA (2048 bits or
	// more), EC (P-256, P-384, P-521) or Ed25519, PKCS#8, PKCS#1 or SEC 1,
	// unencrypted. The first signs the client assertions; all are published
	// at <path_prefix>/jwks.json, so a new key can be announced to the IdP
	// before it signs (rotation: add it second, then put it first, then
	// drop the old one). Security: no secret shared with the IdP can leak
	// from it or be replayed, and each assertion is good for one request
	// at this IdP only. The keys are as secret as a client secret: give a
	// path or a {file.*} placeholder, so the PEM is not in Caddy's autosaved
	// config. Default: none.
	ClientKeys []string `json:"client_keys,omitempty"`

	// ClientKeyIDs are the key ids (kid) of ClientKeys, in the same order,
	// as registered at the IdP: the signing key's is sent in each
	// assertion. A key without one is named by its RFC 7638 thumbprint.
	// Default: the thumbprints.
	ClientKeyIDs []string `json:"client_key_ids,omitempty"`

	// PAR says whether logins use pushed authorization requests (RFC
	// 9126): the authorization request goes to the IdP over the back
	// channel, authenticated, and the browser carries only a request_uri,
	// so its parameters can be neither read nor changed on the way. "auto"
	// pushes when the IdP advertises a PAR endpoint (and so follows an IdP
	// that requires it), "on" always (a login fails when the IdP has
	// none), "off" never (a login fails when the IdP requires it). A PAR
	// endpoint that is down answers logins with unavailable_status.
	// Default: auto.
	PAR string `json:"par,omitempty"`

	// DPoP binds the session's tokens to a key pair of its own (RFC 9449):
	// "on" makes a key for each login, kept in the session with the
	// tokens, signs a proof with it for every token, refresh, PAR and
	// userinfo request, and refuses tokens the IdP does not bind to it
	// (token_type DPoP). An access or refresh token that leaks (from a
	// log, an upstream, a copy of a session record without its key) is
	// then of no use without the key. Sessions made without a key end at
	// their next refresh once it is on. "off" sends no proofs. Default:
	// off (on with profile fapi2).
	DPoP string `json:"dpop,omitempty"`

	// Profile is a security profile the client follows: "fapi2" is the
	// FAPI 2.0 Security Profile, which requires PKCE S256, pushed
	// authorization requests, private_key_jwt, DPoP, the RFC 9207 iss
	// check, and ID tokens and client assertions signed only with PS256,
	// ES256 or EdDSA. It turns on what is left to its default and refuses
	// to start, naming the setting, when the config cannot meet it (a
	// client_secret, no client_key, par off, dpop off, disable_pkce); an
	// IdP that cannot meet it fails discovery (logins answer
	// unavailable_status and the log says what it lacks). Default: none.
	Profile string `json:"profile,omitempty"`

	// RedirectURL is where the IdP sends the browser back: an absolute URL,
	// or a path resolved against the request's scheme and host. Default:
	// <path_prefix>/callback on the request's host. It must be registered
	// at the IdP.
	RedirectURL string `json:"redirect_url,omitempty"`

	// Scopes requested at login. Default: openid email profile. Add
	// offline_access (or what the IdP needs) to get a refresh token;
	// "openid" is always added.
	Scopes []string `json:"scopes,omitempty"`

	// DisablePKCE turns off PKCE (S256). Leave it on unless the IdP
	// rejects the code_challenge parameter: PKCE stops stolen authorization
	// codes from being redeemed. Default: false (PKCE on).
	DisablePKCE bool `json:"disable_pkce,omitempty"`

	// FetchUserInfo says when the IdP's userinfo endpoint is asked for
	// claims, at login and after each refresh (with the new access token):
	// "auto" when the ID token lacks the claims of a requested scope
	// (email, profile, groups...: certified OPs put them only in userinfo
	// for the code flow), "on" always, "off" never. Claims of the ID token
	// win where both have one, and a userinfo answer for another subject
	// fails the login. JSON true and false (configs written before) mean on
	// and off. Default: auto.
	FetchUserInfo FetchUserInfoMode `json:"fetch_userinfo,omitempty"`

	// Prompt is the prompt parameter of every login (login, consent,
	// select_account, none, or several separated by spaces); "omit" sends
	// none. Default: consent when the scopes ask for offline_access (OIDC
	// Core 11: an OP may ignore offline_access without it), else none.
	Prompt string `json:"prompt,omitempty"`

	// LoginHint is the login_hint of every login; <path_prefix>/start
	// takes one per login from ?login_hint=. Default: none.
	LoginHint string `json:"login_hint,omitempty"`

	// ACRValues asks the IdP for these authentication context classes
	// (acr_values), in order of preference. A request, not a rule: see
	// require_acr to enforce one. Default: none.
	ACRValues []string `json:"acr_values,omitempty"`

	// MaxAge asks the IdP to authenticate the user again when their last
	// authentication is older (max_age); the ID token must then carry
	// auth_time, and one older than this is refused. Default: none.
	MaxAge caddy.Duration `json:"max_age,omitempty"`

	// Resource names the APIs the access token is for (RFC 8707 resource
	// indicators), each an absolute URI. Default: none.
	Resource []string `json:"resource,omitempty"`

	// AuthParams are more parameters of every authorization request, for
	// what a given IdP takes (Google's access_type offline, Entra's
	// domain_hint). The protocol's own (client_id, redirect_uri, state,
	// nonce, PKCE, scope, response_type, request_uri) cannot be set here.
	AuthParams map[string]string `json:"auth_params,omitempty"`

	// ProviderTimeout bounds every call to the IdP. Default: 10s.
	ProviderTimeout caddy.Duration `json:"provider_timeout,omitempty"`
}

// SessionPolicy says how long sessions and logins last and what happens
// when they cannot be judged.
type SessionPolicy struct {
	// SessionLifetime is the absolute lifetime of a session, counted from
	// login; refreshing tokens never extends it. Default: 24h.
	SessionLifetime caddy.Duration `json:"session_lifetime,omitempty"`

	// IdleTimeout ends a session not used for this long; 0 keeps the
	// default and a negative value disables the idle timeout. Default: 2h.
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`

	// RefreshMargin: the access token is refreshed when it has less than
	// this left, capped at a third of the token's whole lifetime so that
	// short-lived tokens are not refreshed on every request. Needs a
	// refresh token (usually the offline_access scope). Default: 1m.
	RefreshMargin caddy.Duration `json:"refresh_margin,omitempty"`

	// MaxSessionsPerUser caps the sessions of one user (subject) in a
	// server-side store: a new login beyond the cap ends that user's oldest
	// session. Needs the memory or redis store. Default: 0 (no cap).
	MaxSessionsPerUser int `json:"max_sessions_per_user,omitempty"`

	// SessionCacheSize bounds the decoded sessions this handler keeps in
	// memory (entries), so that a request of a session seen before skips
	// decrypting and decoding it. Each entry is the session's record as
	// its store keeps it, tokens still deflated (a Dex session: about
	// 1.3 KB; 130 MB at the default), or, when an access_token header
	// needs the tokens on every request, the session decoded (about
	// 3.7 KB). The bound is in entries, not bytes: sessions with a large
	// identity (an identity over 512 B, such as a long list of groups,
	// and older records) are kept decoded and cost what they hold, tens
	// of KB for hundreds of groups; lower the setting for such IdPs.
	// Beyond it, requests of
	// sessions not cached cost a decode (a few microseconds; for Redis a
	// read of the store). Entries are keyed by a SHA-256 of the cookie
	// value, never by a hash an attacker could make collide. Default:
	// 100000.
	SessionCacheSize int `json:"session_cache_size,omitempty"`

	// MaxLoginFlows caps the login attempts in progress per browser (one
	// cookie each, for several tabs); starting one more drops the oldest.
	// Default: 5.
	MaxLoginFlows int `json:"max_login_flows,omitempty"`

	// LoginTimeout is how long a login attempt may take at the IdP.
	// Default: 10m.
	LoginTimeout caddy.Duration `json:"login_timeout,omitempty"`

	// UnavailableStatus is the status answered when a session cannot be
	// judged because the session store or the IdP cannot be reached. The
	// user's cookie is kept, so service resumes when they are back.
	// Default: 503.
	UnavailableStatus int `json:"unavailable_status,omitempty"`
}

// BrowserConfig is how the plugin answers browsers and API calls: where
// its endpoints live, whom it sends to log in, and where redirects may go.
type BrowserConfig struct {
	// PathPrefix is where the plugin's endpoints live: start, callback,
	// sign_out and userinfo. Default: /oauth2.
	PathPrefix string `json:"path_prefix,omitempty"`

	// Unauthenticated chooses the answer to a request with no valid
	// session: "auto" redirects top-level browser navigations to the IdP
	// and answers everything else (XHR, fetch, JSON, non-GET) with 401;
	// "redirect" always redirects; "deny" always answers 401.
	// Default: auto.
	Unauthenticated string `json:"unauthenticated,omitempty"`

	// AllowedRedirectHosts lists the hosts, besides the request's own, that
	// the return URL (rd) and the post-logout redirect may point at. A
	// leading "*." matches any subdomain. Default: none (same host only).
	AllowedRedirectHosts []string `json:"allowed_redirect_hosts,omitempty"`

	// PostLogoutRedirect is where sign_out sends the browser when no rd is
	// given; at an IdP with end_session_endpoint it is passed as
	// post_logout_redirect_uri (and must be registered there). Default: /.
	PostLogoutRedirect string `json:"post_logout_redirect,omitempty"`

	// EndSessionMethod is how sign_out sends the browser to the IdP's
	// end_session_endpoint: "post" (an auto-submitted form, which OpenID
	// Connect RP-Initiated Logout requires OPs to accept) or "get" (a
	// redirect, for IdPs that take only GET). With get the user's ID token
	// (id_token_hint) is in the redirect's Location, and so in Caddy's
	// access log and the IdP's. Default: post.
	EndSessionMethod string `json:"end_session_method,omitempty"`

	// ChooserTemplate is the file of a Go html/template that replaces the
	// sign-in chooser page shown when a login could go to several
	// providers (see the README for its data). Read once at Provision.
	// Default: the built-in page, in English.
	ChooserTemplate string `json:"chooser_template,omitempty"`

	// CacheControl is the Cache-Control header given to responses of
	// authenticated requests that the handlers after this one leave without
	// one; "off" leaves them as they are. Default: no-store, so a page shown
	// to a logged-in user is kept by no shared cache and is not shown again
	// by the back button after logout. Upstreams that set their own
	// Cache-Control (static assets, say) keep it.
	CacheControl string `json:"cache_control,omitempty"`
}

// IdentityConfig says what of the user's claims the session keeps and how
// the identity is handed to the rest of the route.
type IdentityConfig struct {
	// UserIDClaim is the claim that becomes {http.auth.user.id}. Default:
	// sub.
	UserIDClaim string `json:"user_id_claim,omitempty"`

	// GroupsClaim is the claim read as the user's groups. Default: groups.
	GroupsClaim string `json:"groups_claim,omitempty"`

	// Claims lists extra ID token (or userinfo) claims to keep in the
	// session; each becomes {http.auth.user.<claim>}. Default: none.
	Claims []string `json:"claims,omitempty"`

	// Headers sets request headers for the next handlers from the session.
	// Client-sent headers of the same names are always removed first, in
	// any spelling. Default: no headers set.
	Headers *HeadersConfig `json:"headers,omitempty"`
}

// AccessRules admit only some of the IdP's users; a logged-in user who
// fails them gets a 403.
type AccessRules struct {
	// AllowedEmailDomains admits only users whose email is in one of these
	// domains (and verified, unless AllowUnverifiedEmail). Others get 403.
	AllowedEmailDomains []string `json:"allowed_email_domains,omitempty"`

	// AllowUnverifiedEmail accepts emails the IdP does not mark as
	// email_verified for AllowedEmailDomains. Default: false; turning it
	// on lets anyone who can register any address at the IdP pass the
	// domain check.
	AllowUnverifiedEmail bool `json:"allow_unverified_email,omitempty"`

	// RequireACR admits only sessions whose ID token's acr is one of
	// these (step-up): a session that lacks it gets a new login asking for
	// them (acr_values) if it is a navigation, and a 401 with
	// WWW-Authenticate error="insufficient_user_authentication" (RFC 9470)
	// otherwise. An IdP that answers with another acr gets a 403, not a
	// loop. Put it in an oidc_session block on the routes that need it:
	// blocks with the same issuer, client and cookie share the session.
	// Default: none.
	RequireACR []string `json:"require_acr,omitempty"`

	// MaxAuthAge admits only sessions whose user authenticated at the IdP
	// (the ID token's auth_time) less than this long ago; older ones are
	// sent to authenticate again (max_age), as for RequireACR. Default:
	// none.
	MaxAuthAge caddy.Duration `json:"max_auth_age,omitempty"`

	// AllowedGroups admits only users in at least one of these groups.
	AllowedGroups []string `json:"allowed_groups,omitempty"`

	// RequiredClaims admits only users whose claim has one of the listed
	// values (for a list claim: contains one), for every claim listed.
	RequiredClaims map[string][]string `json:"required_claims,omitempty"`
}

// CookieConfig is the session cookie's name, secrets and attributes.
type CookieConfig struct {
	// Name of the session cookie; a session too large for one cookie is
	// split into <name>_0, <name>_1, ... and login flows use
	// <name>_flow_<id>. Default: _oauth2_proxy.
	Name string `json:"name,omitempty"`

	// Secrets encrypt and authenticate the cookies. The first encrypts; all
	// decrypt, so a secret is rotated by putting a new one first and
	// dropping the old one once its sessions have expired. Each must be at
	// least 32 characters. Required. Supports {env.*} and {file.*}
	// placeholders, and is never logged.
	Secrets []string `json:"secrets"`

	// Domain of the cookie. Default: none (the request's host only), which
	// is the safest.
	Domain string `json:"domain,omitempty"`

	// Path of the cookie. Default: /.
	Path string `json:"path,omitempty"`

	// Insecure drops the Secure attribute so the cookie also travels over
	// plain http. Default: false (Secure set). Only for local testing.
	Insecure bool `json:"insecure,omitempty"`

	// AllowScripts drops the HttpOnly attribute so page scripts can read
	// the cookie. Default: false (HttpOnly set).
	AllowScripts bool `json:"allow_scripts,omitempty"`

	// SameSite is lax, strict or none. Default: lax, which the login
	// callback (a cross-site top-level navigation from the IdP) needs;
	// strict would lose the login flow cookie on that navigation.
	SameSite string `json:"same_site,omitempty"`
}

// HeadersConfig names the request headers set from the session. An empty
// name sets nothing.
type HeadersConfig struct {
	// User carries {http.auth.user.id}. Conventional: X-Forwarded-User.
	User string `json:"user,omitempty"`
	// Email carries the email. Conventional: X-Forwarded-Email.
	Email string `json:"email,omitempty"`
	// Name carries the display name.
	Name string `json:"name,omitempty"`
	// Groups carries the groups, comma-separated. Conventional:
	// X-Forwarded-Groups.
	Groups string `json:"groups,omitempty"`
	// AccessToken carries the access token. Only set it for upstreams that
	// call APIs on the user's behalf: it hands them the user's credential.
	AccessToken string `json:"access_token,omitempty"`
	// Provider carries {http.auth.user.provider}, the name of the identity
	// provider of the session. Security: on a site with several, a user id,
	// email or group is only as trustworthy as the provider that asserted
	// it (two providers may both have a user "ceo"): an upstream that
	// decides by them should also check this header.
	Provider string `json:"provider,omitempty"`
}

// applyDefaults fills in what the configuration leaves out.
func (h *Handler) applyDefaults() {
	if h.Cookie.Name == "" {
		h.Cookie.Name = defaultCookieName
	}
	if h.Cookie.Path == "" {
		h.Cookie.Path = "/"
	}
	if len(h.Providers) == 0 {
		h.ProviderConfig.applyDefaults()
	}
	for i := range h.Providers {
		h.Providers[i].applyDefaults()
	}
	if h.PathPrefix == "" {
		h.PathPrefix = defaultPrefix
	}
	h.PathPrefix = "/" + strings.Trim(h.PathPrefix, "/")
	if h.SessionLifetime == 0 {
		h.SessionLifetime = caddy.Duration(24 * time.Hour)
	}
	if h.IdleTimeout == 0 {
		h.IdleTimeout = caddy.Duration(2 * time.Hour)
	}
	if h.RefreshMargin == 0 {
		h.RefreshMargin = caddy.Duration(time.Minute)
	}
	if h.Unauthenticated == "" {
		h.Unauthenticated = "auto"
	}
	if h.PostLogoutRedirect == "" {
		h.PostLogoutRedirect = "/"
	}
	if h.EndSessionMethod == "" {
		h.EndSessionMethod = endSessionPOST
	}
	if h.UserIDClaim == "" {
		h.UserIDClaim = "sub"
	}
	if h.GroupsClaim == "" {
		h.GroupsClaim = "groups"
	}
	if h.MaxLoginFlows == 0 {
		h.MaxLoginFlows = 5
	}
	if h.LoginTimeout == 0 {
		h.LoginTimeout = caddy.Duration(10 * time.Minute)
	}
	if h.CacheControl == "" {
		h.CacheControl = "no-store"
	}
	if h.UnavailableStatus == 0 {
		h.UnavailableStatus = http.StatusServiceUnavailable
	}
}

// applyDefaults fills in what the configuration of one IdP leaves out.
func (p *ProviderConfig) applyDefaults() {
	if len(p.Scopes) == 0 {
		p.Scopes = []string{"openid", "email", "profile"}
	} else if !contains(p.Scopes, "openid") {
		p.Scopes = append([]string{"openid"}, p.Scopes...)
	}
	if p.ProviderTimeout == 0 {
		p.ProviderTimeout = caddy.Duration(10 * time.Second)
	}
}

// configError is a configuration mistake of one field (as named in the
// Caddyfile; "cookie.secret" for one inside the cookie block), so the
// Caddyfile parser can say on which line it is.
type configError struct {
	field string
	err   error
}

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// validate checks the configuration, after applyDefaults, and changes
// nothing: Provision calls it first, and the Caddyfile parser calls it on
// a defaulted copy to report mistakes with their line. Values that are
// placeholders ({env.*}) are checked where they are used, once replaced.
// Every message says what to fix.
func (h *Handler) validate() error {
	var errs []error
	bad := func(field string, format string, args ...any) {
		errs = append(errs, &configError{field, fmt.Errorf(format, args...)})
	}
	errs = append(errs, h.validateProviders()...)
	if h.ChooserTemplate != "" {
		t, err := loadChooser(h.ChooserTemplate)
		if err == nil {
			err = h.checkChooser(t)
		}
		if err != nil {
			bad("chooser_template", "%w", err)
		}
	}
	checkACR(bad, "require_acr", h.RequireACR)
	if h.MaxAuthAge < 0 {
		bad("max_auth_age", "max_auth_age must be positive")
	}
	if len(h.Cookie.Secrets) == 0 {
		bad("cookie", "cookie { secret <value> } is required (at least %d characters; e.g. secret {env.OIDC_COOKIE_SECRET})", sessions.MinSecretLength)
	}
	for _, secret := range h.Cookie.Secrets {
		if !isPlaceholder(secret) && len(secret) < sessions.MinSecretLength {
			bad("cookie.secret", "cookie secret is %d characters long; it must be at least %d (generate one with: caddy oidc-session secret)", len(secret), sessions.MinSecretLength)
		}
	}
	if h.Cookie.Name == "" || strings.ContainsAny(h.Cookie.Name, " ;,=\t\"") {
		bad("cookie.name", "cookie name %q is not a valid cookie name", h.Cookie.Name)
	}
	if err := h.Cookie.checkPrefix(); err != nil {
		bad("cookie.name", "%w", err)
	}
	if _, err := parseSameSite(h.Cookie.SameSite); err != nil {
		bad("cookie.same_site", "%w", err)
	}
	switch h.Unauthenticated {
	case "auto", "redirect", "deny":
	default:
		bad("unauthenticated", "unauthenticated must be auto, redirect or deny, not %q", h.Unauthenticated)
	}
	switch h.EndSessionMethod {
	case endSessionPOST, endSessionGET:
	default:
		bad("end_session_method", "end_session_method must be post or get, not %q", h.EndSessionMethod)
	}
	if h.SessionLifetime < 0 {
		bad("session_lifetime", "session_lifetime must be positive")
	}
	if h.UnavailableStatus < 400 || h.UnavailableStatus > 599 {
		bad("unavailable_status", "unavailable_status must be a 4xx or 5xx status code, not %d", h.UnavailableStatus)
	}
	switch {
	case h.SessionCacheSize < 0:
		bad("session_cache_size", "session_cache_size must be 0 (the default) or more")
	case h.MaxSessionsPerUser < 0:
		bad("max_sessions_per_user", "max_sessions_per_user must be 0 (no cap) or more")
	case h.MaxSessionsPerUser > 0 && storeBackend(h.StoreRaw) == "cookie":
		bad("max_sessions_per_user", "max_sessions_per_user needs a server-side store (store memory or store redis): the cookie store cannot see a user's other sessions")
	}
	if h.MaxLoginFlows < 1 {
		bad("max_login_flows", "max_login_flows must be at least 1")
	}
	for _, host := range h.AllowedRedirectHosts {
		rest, wildcard := strings.CutPrefix(host, "*.")
		if rest == "" || strings.ContainsAny(rest, "/\\@:*") || (!wildcard && strings.Contains(host, "*")) {
			bad("allowed_redirect_hosts", "allowed_redirect_hosts: %q is not a host name or *.<domain>", host)
		}
	}
	if h.Bearer != nil {
		if err := h.Bearer.Validate(); err != nil {
			bad("bearer", "%w", err)
		}
		if h.Bearer.Introspection && h.primaryConfig().ClientSecret == "" {
			bad("bearer", "bearer: introspection needs client_secret: the IdP authenticates introspection requests with this client's credentials")
		}
	}
	if m := h.Migrate; m != nil {
		const at = "migrate_oauth2_proxy."
		if len(m.CookieSecrets) == 0 {
			bad(at+"cookie_secret", "migrate_oauth2_proxy needs cookie_secret: the --cookie-secret oauth2-proxy runs with")
		}
		for i, secret := range m.CookieSecrets {
			if err := oauth2proxy.CheckCookieSecret(secret); err != nil && !isPlaceholder(secret) {
				bad(at+"cookie_secret", "migrate_oauth2_proxy: cookie_secret %d is not one oauth2-proxy accepts: %w", i+1, err)
			}
		}
		for _, name := range m.CookieNames {
			if err := oauth2proxy.CheckCookieName(name); err != nil {
				bad(at+"cookie_name", "migrate_oauth2_proxy: %w", err)
			}
		}
		if m.CookieExpire < 0 {
			bad(at+"cookie_expire", "migrate_oauth2_proxy: cookie_expire must be positive (oauth2-proxy's 0, no limit, is the longest lifetime its cookies could have had)")
		}
		for _, d := range m.CookieDomains {
			if d == "" || strings.ContainsAny(d, "/\\@:; ") {
				bad(at+"cookie_domain", "migrate_oauth2_proxy: cookie_domain %q is not a domain", d)
			}
		}
		if m.CookiePath != "" && !strings.HasPrefix(m.CookiePath, "/") {
			bad(at+"cookie_path", "migrate_oauth2_proxy: cookie_path %q must start with /", m.CookiePath)
		}
		if m.Redis != nil {
			if err := m.Redis.Check(); err != nil {
				bad(at+"redis", "migrate_oauth2_proxy: %w", err)
			}
		}
		if m.Until == "" {
			bad(at+"until", "migrate_oauth2_proxy needs until <date>, the end of the migration window (e.g. until 2026-03-01), so the option cannot linger")
		} else if _, err := parseUntil(m.Until); err != nil {
			bad(at+"until", "migrate_oauth2_proxy: %w", err)
		}
		if m.KeepProxySessions {
			for _, name := range m.cookieNames() {
				if mine := h.Cookie.Name; mine == name || strings.HasPrefix(mine, name+"_") || strings.HasPrefix(name, mine+"_") {
					bad(at+"keep_proxy_sessions", "migrate_oauth2_proxy: keep_proxy_sessions needs a cookie name of our own: oauth2-proxy's %q and ours %q would overwrite each other (set cookie { name ... })", name, mine)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// ProviderBlock is one identity provider of a site that lets users log in
// with several (a provider block): its own settings, and how the sign-in
// chooser shows it.
type ProviderBlock struct {
	// Name identifies the provider: in <path_prefix>/start?provider=, the
	// admin API, metrics, events and {http.auth.user.provider}. Letters,
	// digits, - and _; unique. Required.
	Name string `json:"name"`

	ProviderConfig

	// Label is the text of its button on the sign-in chooser. Default: the
	// name.
	Label string `json:"label,omitempty"`

	// ProviderRules map this provider's claims and admit its users where
	// they differ from the site's.
	ProviderRules

	// Domains are email domains whose users log in here without the
	// chooser: a login_hint (or an email given as one) ending in @domain
	// goes straight to this provider. Each domain belongs to one provider.
	// Default: none. Security: the domains are this provider's alone: a
	// login at another provider whose email (verified or not) is of one of
	// them is refused (403), so no other IdP can pass its users off as
	// this one's by their address.
	Domains []string `json:"domains,omitempty"`
}

// ProviderRules are the claims mapping and authorization rules of one
// provider block. Each one set replaces the top-level setting of the same
// name for the sessions of that provider; those left out are the
// top-level ones.
type ProviderRules struct {
	// UserIDClaim is the claim that becomes {http.auth.user.id} for this
	// provider's users. Default: the top-level user_id_claim.
	UserIDClaim string `json:"user_id_claim,omitempty"`
	// GroupsClaim is the claim read as this provider's users' groups.
	// Default: the top-level groups_claim.
	GroupsClaim string `json:"groups_claim,omitempty"`
	// AllowedEmailDomains admits only this provider's users of these
	// (verified) email domains. Default: the top-level
	// allowed_email_domains. Security: it replaces the top-level list for
	// this provider, it does not add to it.
	AllowedEmailDomains []string `json:"allowed_email_domains,omitempty"`
	// AllowedGroups admits only this provider's users in at least one of
	// these groups. Default: the top-level allowed_groups. Security: a
	// provider whose users name their own groups should have its own
	// list, or the top-level one decides.
	// In JSON, an empty list ("allowed_groups": []) is a list of its own:
	// it switches the rule off for this provider rather than taking the
	// top-level one (as do allowed_email_domains: [] and
	// required_claims: {}); leave the field out to inherit.
	AllowedGroups []string `json:"allowed_groups,omitempty"`
	// RequiredClaims admits only this provider's users whose claims have
	// one of the listed values, for every claim listed. Default: the
	// top-level require_claim.
	RequiredClaims map[string][]string `json:"required_claims,omitempty"`
}

// primaryConfig is the first IdP's settings: the top-level ones, or those
// of the first provider block. Sessions are sealed under its issuer and
// client, and the bearer block and migrate_oauth2_proxy use it.
func (h *Handler) primaryConfig() *ProviderConfig {
	if len(h.Providers) > 0 {
		return &h.Providers[0].ProviderConfig
	}
	return &h.ProviderConfig
}

// providerField names a setting of the i-th provider block (from 0) in
// configErrors: providers.<i>.<subdirective>, so the Caddyfile parser
// reports it at its line, or at the block's.
func providerField(i int, field string) string {
	f := "providers." + strconv.Itoa(i)
	if field != "" {
		f += "." + field
	}
	return f
}

// validateProviders checks the IdP settings: the top-level ones of a
// site with one IdP, or each provider block, which then exclude them.
func (h *Handler) validateProviders() []error {
	if len(h.Providers) == 0 {
		return append(h.ProviderConfig.validate(), h.validateRedirects()...)
	}
	errs := h.validateRedirects()
	bad := func(field string, format string, args ...any) {
		errs = append(errs, &configError{field, fmt.Errorf(format, args...)})
	}
	if top := setFields(h.ProviderConfig); len(top) > 0 {
		bad(top[0], "%s is set at the top and there are provider blocks: with several identity providers, every IdP setting (%s) goes inside its provider block", top[0], strings.Join(top, ", "))
	}
	names := map[string]int{}
	issuers := map[string]string{}
	domains := map[string]string{}
	for i := range h.Providers {
		p := &h.Providers[i]
		switch {
		case !validProviderName(p.Name):
			bad(providerField(i, ""), "provider name %q must be 1 to 64 letters, digits, - or _", p.Name)
		case names[p.Name] != 0:
			bad(providerField(i, ""), "provider %q is defined twice (each provider block needs its own name)", p.Name)
		}
		names[p.Name] = i + 1
		for _, err := range p.validate() {
			var ce *configError
			if errors.As(err, &ce) {
				err = &configError{providerField(i, ce.field), fmt.Errorf("provider %s: %w", p.Name, ce.err)}
			}
			errs = append(errs, err)
		}
		if p.Issuer != "" {
			if other, dup := issuers[p.Issuer]; dup {
				bad(providerField(i, "issuer"), "provider %s: issuer %s is already provider %s's (sessions are told apart by their issuer: one provider per issuer)", p.Name, p.Issuer, other)
			}
			issuers[p.Issuer] = p.Name
		}
		for _, d := range p.Domains {
			if d == "" || strings.ContainsAny(d, "@/\\:*; ") || d != strings.ToLower(d) {
				bad(providerField(i, "domains"), "provider %s: domains: %q is not a lower-case domain name", p.Name, d)
			}
			if other, dup := domains[d]; dup && other != p.Name {
				bad(providerField(i, "domains"), "provider %s: domain %s is already provider %s's", p.Name, d, other)
			}
			domains[d] = p.Name
		}
	}
	return errs
}

// validateRedirects checks the IdPs' callback URLs (see redirectOf): none
// is another of the plugin's endpoints, and no two could be reached by the
// same request, since the URL tells the IdPs' answers apart.
func (h *Handler) validateRedirects() []error {
	var errs []error
	blocks, field := h.Providers, func(i int) string { return providerField(i, "redirect_url") }
	if len(blocks) == 0 {
		blocks = []ProviderBlock{{Name: defaultProviderName, ProviderConfig: h.ProviderConfig}}
		field = func(int) string { return "redirect_url" }
	}
	urls := make([]*url.URL, len(blocks))
	for i := range blocks {
		u, err := redirectOf(h.PathPrefix, i, &blocks[i])
		if err != nil {
			continue // reported by ProviderConfig.validate
		}
		urls[i] = u
		if rest, ok := strings.CutPrefix(u.Path, h.PathPrefix); ok && rest != "/callback" && endpointPaths[rest] != nil {
			errs = append(errs, &configError{field(i), fmt.Errorf("redirect_url %s is the path of the plugin's own %s endpoint: choose another path (and register it at the IdP)", blocks[i].RedirectURL, rest)})
		}
		for j, v := range urls[:i] {
			if v != nil && sameCallback(u, v) {
				errs = append(errs, &configError{field(i), fmt.Errorf("provider %s: its callback URL %s is already provider %s's: each provider needs its own, which tells their answers apart (give one of them another redirect_url, or leave redirect_url out: <path_prefix>/callback?provider=<name>)", blocks[i].Name, u, blocks[j].Name)})
			}
		}
	}
	return errs
}

// sameCallback reports whether a request could reach both callback URLs
// (see idp.reachedAt): the same path and provider parameter, and hosts
// that may be the same (a path is on every host).
func sameCallback(u, v *url.URL) bool {
	if u.Path != v.Path || u.Query().Get("provider") != v.Query().Get("provider") {
		return false
	}
	return !u.IsAbs() || !v.IsAbs() || canonicalHost(u.Host, u.Scheme) == canonicalHost(v.Host, v.Scheme)
}

// setFields lists the settings given in p, by their JSON (and Caddyfile)
// names.
func setFields(p ProviderConfig) []string {
	b, _ := json.Marshal(p) // cannot fail for this type
	var m map[string]json.RawMessage
	_ = json.Unmarshal(b, &m)
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] == "issuer" || out[j] != "issuer" && out[i] < out[j] })
	return out
}

func validProviderName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// validate checks the settings of one IdP; the fields of its errors are
// named as in the Caddyfile block they are in.
func (p *ProviderConfig) validate() []error {
	var errs []error
	bad := func(field string, format string, args ...any) {
		errs = append(errs, &configError{field, fmt.Errorf(format, args...)})
	}
	switch {
	case p.Issuer == "":
		bad("issuer", "issuer is required (the IdP's issuer URL, e.g. https://accounts.example.com)")
	case !isPlaceholder(p.Issuer):
		if err := checkAbsoluteURL(p.Issuer); err != nil {
			bad("issuer", "issuer: %w", err)
		}
	}
	if p.ClientID == "" {
		bad("client_id", "client_id is required")
	}
	errs = append(errs, p.clientSecurity(&oidc.Config{ClientID: p.ClientID, ClientSecret: p.ClientSecret}, nil)...)
	if p.RedirectURL != "" {
		if _, err := parseRedirectURL(p.RedirectURL); err != nil {
			bad("redirect_url", "%w", err)
		}
	}
	switch p.FetchUserInfo {
	case "", "auto", "on", "off":
	default:
		bad("fetch_userinfo", "fetch_userinfo must be auto, on or off, not %q", p.FetchUserInfo)
	}
	if p.Prompt != "omit" {
		for _, v := range strings.Fields(p.Prompt) {
			if !promptValues[v] {
				bad("prompt", "prompt %q: each value must be one of none, login, consent, select_account, create (or prompt omit)", p.Prompt)
			}
		}
	}
	checkACR(bad, "acr_values", p.ACRValues)
	if p.MaxAge < 0 {
		bad("max_age", "max_age must be positive")
	}
	for _, r := range p.Resource {
		if u, err := url.Parse(r); !isPlaceholder(r) && (err != nil || !u.IsAbs() || u.Fragment != "") {
			bad("resource", "resource %q must be an absolute URI without a fragment (RFC 8707)", r)
		}
	}
	for k := range p.AuthParams {
		if directive, reserved := reservedAuthParams[k]; reserved {
			if directive != "" {
				bad("auth_params", "auth_params: use the %s subdirective for %s", directive, k)
			} else {
				bad("auth_params", "auth_params: %s is the protocol's own and cannot be set", k)
			}
		}
	}
	return errs
}

// checkACR checks acr values: each one word.
func checkACR(bad func(field, format string, args ...any), directive string, values []string) {
	for _, v := range values {
		if v == "" || strings.ContainsAny(v, " \t") {
			bad(directive, "%s: acr value %q must be one word", directive, v)
		}
	}
}

// storeBackend is the name of the configured store module.
func storeBackend(raw json.RawMessage) string {
	var m struct {
		Backend string `json:"backend"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &m) != nil || m.Backend == "" {
		return "cookie"
	}
	return m.Backend
}

// hasPrefixFold is strings.HasPrefix ignoring case, as browsers match
// cookie name prefixes.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func isPlaceholder(v string) bool { return strings.Contains(v, "{") }

func checkAbsoluteURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %w", raw, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q must be an absolute http(s) URL", raw)
	}
	return nil
}

// checkPrefix enforces what browsers require of cookies named with the
// __Host- and __Secure- prefixes (RFC 6265bis): a browser silently drops a
// cookie that breaks them, which would make every login loop.
func (c *CookieConfig) checkPrefix() error {
	switch {
	case hasPrefixFold(c.Name, "__Host-"):
		if c.Domain != "" || c.Path != "/" || c.Insecure {
			return fmt.Errorf("cookie name %q: __Host- cookies need no domain, path / and secure on", c.Name)
		}
	case hasPrefixFold(c.Name, "__Secure-"):
		if c.Insecure {
			return fmt.Errorf("cookie name %q: __Secure- cookies need secure on", c.Name)
		}
	}
	return nil
}

func parseSameSite(v string) (http.SameSite, error) {
	switch strings.ToLower(v) {
	case "", "lax":
		return http.SameSiteLaxMode, nil
	case "strict":
		return http.SameSiteStrictMode, nil
	case "none":
		return http.SameSiteNoneMode, nil
	}
	return 0, fmt.Errorf("cookie same_site must be lax, strict or none, not %q", v)
}

// FetchUserInfoMode is fetch_userinfo: auto (""), on or off.
type FetchUserInfoMode string

// UnmarshalJSON also takes the booleans of configs written when
// fetch_userinfo was on/off only.
func (m *FetchUserInfoMode) UnmarshalJSON(b []byte) error {
	var on bool
	if json.Unmarshal(b, &on) == nil {
		*m = "off"
		if on {
			*m = "on"
		}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("fetch_userinfo must be auto, on or off: %w", err)
	}
	*m = FetchUserInfoMode(s)
	return nil
}

// userInfoMode is fetch_userinfo as the oidc package takes it.
func (m FetchUserInfoMode) userInfoMode() oidc.UserInfoMode {
	switch m {
	case "on":
		return oidc.UserInfoOn
	case "off":
		return oidc.UserInfoOff
	}
	return oidc.UserInfoAuto
}

// reservedAuthParams are the authorization request's own parameters, and
// those with subdirectives of their own.
var reservedAuthParams = map[string]string{
	"client_id": "", "redirect_uri": "", "response_type": "", "scope": "scopes", "state": "", "nonce": "",
	"code_challenge": "", "code_challenge_method": "", "request_uri": "", "request": "", "dpop_jkt": "",
	"prompt": "prompt", "login_hint": "login_hint", "acr_values": "acr_values", "max_age": "max_age", "resource": "resource",
}

// promptValues are the prompt values of OIDC Core 3.1.2.1 (and create,
// OIDC Prompt Create 1.0).
var promptValues = map[string]bool{"none": true, "login": true, "consent": true, "select_account": true, "create": true}

// authParams are the parameters every login sends besides the protocol's.
func (p *ProviderConfig) authParams() url.Values {
	q := url.Values{}
	switch {
	case p.Prompt == "omit":
	case p.Prompt != "":
		q.Set("prompt", p.Prompt)
	case contains(p.Scopes, "offline_access"):
		q.Set("prompt", "consent")
	}
	if p.LoginHint != "" {
		q.Set("login_hint", p.LoginHint)
	}
	if len(p.ACRValues) > 0 {
		q.Set("acr_values", strings.Join(p.ACRValues, " "))
	}
	if p.MaxAge > 0 {
		q.Set("max_age", strconv.FormatInt(int64(time.Duration(p.MaxAge)/time.Second), 10))
	}
	for _, r := range p.Resource {
		q.Add("resource", r)
	}
	for k, v := range p.AuthParams {
		q.Set(k, v)
	}
	return q
}
