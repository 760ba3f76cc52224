// Package bearer verifies the access tokens that API clients (CLI tools,
// mobile apps, service accounts, agents) send beside browsers:
// `Authorization: Bearer` (RFC 6750) with JWT access tokens (RFC 9068,
// checked against the JWKS of trusted issuers) or opaque tokens
// (RFC 7662 introspection), DPoP-bound tokens (RFC 9449) and the
// protected resource metadata of RFC 9728.
//
// A Verifier judges a request by its token alone; the handler maps its
// answers: a Principal (the identity), ErrNoToken (not an API call: go on
// with the session), an *Error (the RFC 6750 answer to send) or
// ErrUnavailable (an IdP cannot be reached: unavailable_status).
package bearer

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/oidc-session/oidc_session/internal/cfgargs"
)

// DPoP modes (Config.DPoP).
const (
	// DPoPOff refuses the DPoP scheme and every DPoP-bound token: a token
	// bound with cnf.jkt cannot be presented here at all.
	DPoPOff = "off"
	// DPoPAllowed accepts bearer tokens as they are and DPoP-bound tokens
	// with a valid proof. A bound token sent with the Bearer scheme, or
	// without a proof, is refused.
	DPoPAllowed = "allowed"
	// DPoPRequired accepts only DPoP-bound tokens, with a valid proof.
	DPoPRequired = "required"
)

// Config is the `bearer` block: which access tokens the routes accept
// besides a browser session. The zero value is not valid: Audiences is
// required.
type Config struct {
	// Audiences are this API's identifiers: a token is accepted only when
	// its aud claim (or, for an introspected token, the aud of the
	// introspection answer) contains one of them. Required; there is no
	// default, so a token minted for another API (or an ID token minted
	// for another client) never passes. Listing this site's client_id
	// here accepts the ID tokens of this client too unless the issuer is
	// in ATJWTIssuers, and introspection answers that carry no aud (an
	// IdP that omits it vouches only that the token is for the client
	// asking).
	Audiences []string `json:"audiences"`

	// Issuers are more trusted issuers besides the handler's issuer, each
	// discovered (on first use) at <issuer>/.well-known/openid-configuration
	// like the main one. Their JWT access tokens are accepted; opaque
	// tokens are introspected at the main issuer only. Default: the main
	// issuer only. Every issuer listed can mint tokens for Audiences: list
	// only issuers you trust as much as the main one.
	Issuers []string `json:"issuers,omitempty"`

	// ScopesRequired must all be in the token's scope (space-separated)
	// or, when it has none, scp (a list, or a space-separated string)
	// claim; a valid token missing one gets 403 insufficient_scope.
	// Default: none.
	ScopesRequired []string `json:"scopes_required,omitempty"`

	// Introspection verifies opaque (non-JWT) tokens at the main issuer's
	// introspection_endpoint (RFC 7662), authenticating with this site's
	// client_id and client_secret. Answers are cached by the token's
	// SHA-256 for at most min(token exp, 60 s), so a token revoked at the
	// IdP may still pass for up to a minute. Default: false (opaque tokens
	// are refused).
	Introspection bool `json:"introspection,omitempty"`

	// DPoP is off, allowed or required (RFC 9449). Default: allowed, where
	// a token bound to a key (cnf.jkt) needs the DPoP scheme and a valid
	// proof, and unbound tokens pass as bearer tokens. required refuses
	// unbound tokens; off refuses bound ones.
	DPoP string `json:"dpop,omitempty"`

	// ATJWTIssuers are the trusted issuers that issue RFC 9068 access
	// tokens: a JWT from one of them must have the header typ at+jwt
	// (application/at+jwt). There is no discovery metadata for this, so it
	// is set here. It stops ID tokens and other JWTs of that issuer that
	// happen to carry an accepted aud from passing for access tokens.
	// Default: none (typ at+jwt, JWT or none accepted; any other typ, e.g.
	// dpop+jwt or logout+jwt, is always refused).
	ATJWTIssuers []string `json:"at_jwt_issuers,omitempty"`

	// Resource is this protected resource's identifier (RFC 9728): an
	// absolute URL, or a path on the request's host. Its metadata is served
	// at /.well-known/oauth-protected-resource followed by the path (so a
	// resource at /api answers at
	// /.well-known/oauth-protected-resource/api), and the no-credentials
	// challenge points there. Default: the request's origin
	// (https://<host>, or http:// on a plain-HTTP listener).
	Resource string `json:"resource,omitempty"`
}

// UnmarshalCaddyfile reads the contents of a `bearer` block, with the
// dispenser on the `bearer` token (as the handler's UnmarshalCaddyfile
// hands it over for a nested block):
//
//	bearer {
//		audiences        <aud...>
//		issuers          <url...>
//		scopes_required  <scope...>
//		introspection
//		dpop             off|allowed|required
//		at_jwt_issuers   <url...>
//		resource         <url|path>
//	}
//
// It ends with Validate, so a block without audiences is an error here.
func (c *Config) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "audiences":
			err = cfgargs.Many(d, &c.Audiences)
		case "issuers":
			err = cfgargs.Many(d, &c.Issuers)
		case "scopes_required":
			err = cfgargs.Many(d, &c.ScopesRequired)
		case "introspection":
			err = cfgargs.Flag(d, &c.Introspection)
		case "dpop":
			err = cfgargs.One(d, &c.DPoP)
		case "at_jwt_issuers":
			err = cfgargs.Many(d, &c.ATJWTIssuers)
		case "resource":
			err = cfgargs.One(d, &c.Resource)
		default:
			return d.Errf("unknown bearer option %q (known: audiences, issuers, scopes_required, introspection, dpop, at_jwt_issuers, resource)", d.Val())
		}
		if err != nil {
			return err
		}
	}
	if err := c.Validate(); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

// Validate checks the configuration; every message says what to fix.
// Values with placeholders ({env.*}) are checked when the Verifier is
// made.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Audiences) == 0 {
		errs = append(errs, errors.New("bearer: audiences is required: the identifiers of this API that tokens must carry in aud (e.g. audiences https://api.example.com); there is no default, so tokens minted for other APIs are refused"))
	}
	for _, a := range c.Audiences {
		if strings.TrimSpace(a) == "" {
			errs = append(errs, errors.New("bearer: audiences: an empty audience would match nothing; remove it"))
		}
	}
	for _, list := range []struct {
		name string
		urls []string
	}{{"issuers", c.Issuers}, {"at_jwt_issuers", c.ATJWTIssuers}} {
		for _, u := range list.urls {
			if err := checkIssuerURL(u); err != nil {
				errs = append(errs, fmt.Errorf("bearer: %s: %w", list.name, err))
			}
		}
	}
	for _, s := range c.ScopesRequired {
		if s == "" || strings.ContainsAny(s, " \t\"\\") {
			errs = append(errs, fmt.Errorf("bearer: scopes_required: %q is not a scope (no spaces, quotes or backslashes)", s))
		}
	}
	if _, err := parseDPoPMode(c.DPoP); err != nil {
		errs = append(errs, err)
	}
	if err := checkResource(c.Resource); err != nil {
		errs = append(errs, fmt.Errorf("bearer: resource: %w", err))
	}
	return errors.Join(errs...)
}

// dpopMode is Config.DPoP, parsed.
type dpopMode int

const (
	dpopAllowed dpopMode = iota
	dpopOff
	dpopRequired
)

func parseDPoPMode(s string) (dpopMode, error) {
	switch s {
	case "", DPoPAllowed:
		return dpopAllowed, nil
	case DPoPOff:
		return dpopOff, nil
	case DPoPRequired:
		return dpopRequired, nil
	}
	return 0, fmt.Errorf("bearer: dpop must be off, allowed or required, not %q", s)
}

func checkIssuerURL(raw string) error {
	if strings.Contains(raw, "{") {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q must be an absolute http(s) issuer URL without query or fragment", raw)
	}
	return nil
}

func checkResource(raw string) error {
	if raw == "" || strings.Contains(raw, "{") {
		return nil
	}
	if strings.ContainsAny(raw, "?#") {
		return fmt.Errorf("%q must not have a query or fragment (RFC 9728)", raw)
	}
	if strings.HasPrefix(raw, "/") {
		if strings.HasPrefix(raw, "//") {
			return fmt.Errorf("%q: a path must start with a single /", raw)
		}
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return fmt.Errorf("%q must be an absolute http(s) URL or a path starting with /", raw)
	}
	return nil
}
