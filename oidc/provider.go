// Package oidc speaks OpenID Connect to the identity provider for
// oidc_session: lazy discovery, the authorization code flow with PKCE, state
// and nonce, token exchange and refresh, and ID token verification.
package oidc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

// ErrUnavailable wraps every failure to reach the IdP (discovery, network,
// 5xx): the request can be retried later and no session should be lost.
var ErrUnavailable = errors.New("identity provider unavailable")

// Config says which IdP to talk to and as which client.
type Config struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	Scopes       []string
	// UserInfo says when the userinfo endpoint's claims are added to the
	// ID token's; GroupsClaim is the claim the groups scope promises.
	UserInfo    UserInfoMode
	GroupsClaim string
	// AuthParams are added to every authorization request (prompt,
	// acr_values, max_age, resource, IdP-specific ones).
	AuthParams url.Values
	// ClientAuth is how the client authenticates to the IdP (token, PAR,
	// revocation, introspection). Default ClientAuthAuto: private_key_jwt
	// with ClientKeys, else the secret method the IdP advertises, else none.
	ClientAuth ClientAuthMethod
	// ClientKeys are the private_key_jwt keys: the first signs the client
	// assertions, the others are only published by ClientJWKS, so a new key
	// can be announced before it is used (rotation). Private: keep them out
	// of logs and of Caddy's autosaved config (use {file.*} placeholders).
	ClientKeys []*ClientKey
	// PAR is the pushed authorization request mode. Default PARAuto.
	PAR PARMode
	// DPoP sends DPoP proofs with the key a request's context carries
	// (WithDPoPKey) and refuses tokens that are not DPoP-bound. Default off.
	DPoP DPoPMode
	// Profile is a security profile (see ApplyFAPI2). Default none.
	Profile Profile
	// HTTPClient makes every call to the IdP; its timeout bounds them.
	HTTPClient *http.Client
	// RetryAfter is the shortest wait between two failed discovery attempts,
	// so a down IdP is not hammered by every incoming request.
	RetryAfter time.Duration
	// KeyRefetchInterval is the shortest time between two fetches of the
	// IdP's keys for logout tokens. Default: DefaultKeyRefetchInterval.
	KeyRefetchInterval time.Duration
}

// Provider is a lazily discovered IdP. Nothing is fetched until first used,
// so Caddy starts (and reloads) while the IdP is down; until discovery
// succeeds, every use returns ErrUnavailable.
type Provider struct {
	cfg Config

	ready atomic.Pointer[Discovered]

	mu      sync.Mutex // serialises discovery attempts
	lastTry time.Time
	lastErr error
}

// Discovered is what discovery yields: endpoints, keys and a verifier.
type Discovered struct {
	provider *gooidc.Provider
	verifier *gooidc.IDTokenVerifier
	// storedVerifier is verifier without the expiry check (idtoken.go).
	storedVerifier *gooidc.IDTokenVerifier
	// oauth has no RedirectURL: it depends on the request's host.
	oauth *oauth2.Config
	// Security is what discovery decided about client authentication,
	// PAR, DPoP and the iss response parameter.
	Security Security
	// EndSessionEndpoint is the IdP's RP-initiated logout endpoint, or "".
	EndSessionEndpoint string
	// HasUserInfo reports whether the IdP has a userinfo endpoint.
	HasUserInfo bool
	// RevocationEndpoint is the IdP's RFC 7009 token revocation endpoint,
	// or "".
	RevocationEndpoint string

	// signingAlgs are the asymmetric algorithms the IdP says it signs with,
	// the only ones accepted on ID and logout tokens.
	signingAlgs []jose.SignatureAlgorithm
	keys        *keyCache
}

// NewProvider returns a provider that discovers cfg.Issuer on first use.
func NewProvider(cfg Config) *Provider {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 2 * time.Second
	}
	p := &Provider{cfg: cfg}
	p.cfg.HTTPClient = p.hookedClient(cfg.HTTPClient)
	return p
}

// ClientID returns the configured client id.
func (p *Provider) ClientID() string { return p.cfg.ClientID }

// Issuer returns the configured issuer.
func (p *Provider) Issuer() string { return p.cfg.Issuer }

// Discover returns the discovered IdP, running discovery if it has not yet
// succeeded and the last attempt is not too recent.
func (p *Provider) Discover(ctx context.Context) (*Discovered, error) {
	if d := p.ready.Load(); d != nil {
		return d, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := p.ready.Load(); d != nil {
		return d, nil
	}
	if p.lastErr != nil && time.Since(p.lastTry) < p.cfg.RetryAfter {
		return nil, p.lastErr
	}
	p.lastTry = time.Now()
	d, err := p.discover(ctx)
	if err == nil {
		err = p.discoverSecurity(d)
	}
	if err != nil {
		p.lastErr = fmt.Errorf("%w: discovery of %s: %w", ErrUnavailable, p.cfg.Issuer, err)
		return nil, p.lastErr
	}
	p.lastErr = nil
	p.ready.Store(d)
	return d, nil
}

func (p *Provider) discover(ctx context.Context) (*Discovered, error) {
	// The provider keeps this context for fetching keys later, so it must
	// carry our client but not the request's cancellation.
	pctx := gooidc.ClientContext(context.WithoutCancel(ctx), p.cfg.HTTPClient)
	gp, err := gooidc.NewProvider(pctx, p.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	var extra struct {
		EndSession  string   `json:"end_session_endpoint"`
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
		JWKS        string   `json:"jwks_uri"`
		SigningAlgs []string `json:"id_token_signing_alg_values_supported"`
	}
	_ = gp.Claims(&extra) // optional metadata: absent is fine
	endpoint := gp.Endpoint()
	endpoint.AuthStyle = authStyle(extra.AuthMethods)
	keys := newKeyCache(extra.JWKS, p.cfg.HTTPClient, p.cfg.KeyRefetchInterval)
	algs := asymmetricOf(extra.SigningAlgs)
	d := &Discovered{
		provider: gp,
		oauth: &oauth2.Config{
			ClientID:     p.cfg.ClientID,
			ClientSecret: p.cfg.ClientSecret,
			Endpoint:     endpoint,
			Scopes:       p.cfg.Scopes,
		},
		EndSessionEndpoint: extra.EndSession,
		HasUserInfo:        gp.UserInfoEndpoint() != "",
		signingAlgs:        algs,
		keys:               keys,
	}
	p.setVerifiers(d, algs)
	return d, nil
}

// idTokenVerifier verifies ID tokens (iss, aud, exp unless skipExpiry,
// and the signature with one of algs) against the key cache.
//
// stored verifies tokens kept since their login (a session taken over):
// their expiry is not checked, and, as they do not come from the IdP's
// token endpoint, an unknown key does not make the keys be fetched before
// the cache's interval is over.
func (p *Provider) idTokenVerifier(keys *keyCache, algs []jose.SignatureAlgorithm, stored bool) *gooidc.IDTokenVerifier {
	names := make([]string, len(algs))
	for i, a := range algs {
		names[i] = string(a)
	}
	return gooidc.NewVerifier(p.cfg.Issuer, idTokenKeys{keys, algs, !stored}, &gooidc.Config{ClientID: p.cfg.ClientID, SupportedSigningAlgs: names, SkipExpiryCheck: stored})
}

// asymmetricOf keeps the asymmetric algorithms of those the IdP advertises;
// an IdP that advertises none signs with RS256, the spec's default.
func asymmetricOf(advertised []string) []jose.SignatureAlgorithm {
	if len(advertised) == 0 {
		advertised = []string{gooidc.RS256}
	}
	var out []jose.SignatureAlgorithm
	for _, a := range advertised {
		if asymmetricAlgs[a] {
			out = append(out, jose.SignatureAlgorithm(a))
		}
	}
	return out
}

// authStyle picks how the client authenticates at the token endpoint from
// what the IdP advertises. Left to golang.org/x/oauth2 to guess, every
// token call to an IdP that only takes form parameters would be made twice.
func authStyle(methods []string) oauth2.AuthStyle {
	for _, m := range methods {
		if m == "client_secret_basic" {
			return oauth2.AuthStyleInHeader
		}
	}
	for _, m := range methods {
		if m == "client_secret_post" {
			return oauth2.AuthStyleInParams
		}
	}
	return oauth2.AuthStyleAutoDetect
}

// clientContext carries the IdP client for golang.org/x/oauth2 and go-oidc.
func (p *Provider) clientContext(ctx context.Context) context.Context {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, p.cfg.HTTPClient)
	return gooidc.ClientContext(ctx, p.cfg.HTTPClient)
}
