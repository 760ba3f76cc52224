// Package oidcsession is a Caddy HTTP handler that logs users in with OpenID
// Connect and keeps their sessions: the relying party lives in Caddy's
// handler chain, with no second process and no extra HTTP hop.
package oidcsession

import (
	"encoding/json"
	"fmt"
	"net/http"

	"html/template"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/oidc-session/oidc_session/internal/bearer"
	"github.com/oidc-session/oidc_session/internal/cookies"
	"github.com/oidc-session/oidc_session/internal/lifecycle"
	"github.com/oidc-session/oidc_session/oidc"
	"github.com/oidc-session/oidc_session/sessions"

	// The caddy oidc-session command, in every Caddy built with the plugin.
	_ "github.com/oidc-session/oidc_session/internal/command"

	// Store modules register themselves; importing them here means building
	// Caddy with this package brings every store.
	_ "github.com/oidc-session/oidc_session/sessions/memstore"
	_ "github.com/oidc-session/oidc_session/sessions/redisstore"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler protects the routes after it with an OpenID Connect login. A request
// with a valid session passes on, with the user's identity in placeholders
// (and optionally headers); a browser without one is sent to the IdP; an API
// call without one gets a 401.
type Handler struct {
	ProviderConfig
	SessionPolicy
	BrowserConfig
	IdentityConfig
	AccessRules

	// Providers are the identity providers of a site that lets users log
	// in with several, in the order the sign-in chooser shows them. Each
	// has its own IdP settings, which are then not set at the top level.
	// Sessions belong to the provider they were made with (told apart by
	// their issuer): they are refreshed and logged out there only. The
	// first provider is the primary: sessions are sealed under its issuer
	// and client (keep it first to keep everyone logged in; it is also
	// the IdP of sessions stored before sessions recorded their issuer,
	// and of the bearer block and migrate_oauth2_proxy). Default: none,
	// the single IdP set by the top-level settings.
	Providers []ProviderBlock `json:"providers,omitempty"`

	// Cookie sets the session cookie's name, secrets and attributes.
	Cookie CookieConfig `json:"cookie"`

	// Migrate takes over the sessions of the oauth2-proxy this handler
	// replaces, until a given date (migrate.go). Default: none.
	Migrate *MigrateOAuth2Proxy `json:"migrate_oauth2_proxy,omitempty"`

	// StoreRaw is the session store module. Default: cookie (the whole
	// session, encrypted, in the browser's cookie).
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=http.handlers.oidc_session.stores inline_key=backend"`

	// Bearer makes the routes accept access tokens from API clients beside
	// browser sessions: a request with `Authorization: Bearer` (or DPoP) is
	// judged by its token alone (signature by a trusted issuer's keys,
	// audience, expiry, scopes, DPoP proof, or introspection), never by the
	// session cookie, and never gets a login redirect or a cookie. A good
	// token's user passes the same access rules and gets the same
	// placeholders and headers as a session's. It also serves the RFC 9728
	// metadata at /.well-known/oauth-protected-resource, and a 401 without
	// credentials names it. Default: nil, access tokens are not looked at
	// (a request with one is judged by its session like any other).
	// Security: every issuer it trusts can mint tokens for its audiences.
	Bearer *bearer.Config `json:"bearer,omitempty"`

	// idps are the identity providers, the primary first; idpByName and
	// idpByIssuer find them by name and by (replaced) issuer.
	idps        []*idp
	idpByName   map[string]*idp
	idpByIssuer map[string]*idp
	// owner names what the sessions belong to (sessionOwner).
	owner   string
	chooser *template.Template
	store   sessions.Store
	caps    sessions.Capabilities
	// sessions finds, refreshes, saves and ends the request's session.
	sessions   *lifecycle.Keeper
	migrator   *migrator // nil without migrate_oauth2_proxy or past its until
	jar        cookies.Jar
	flowKeys   *sessions.Keyring
	binding    []byte
	endpoints  map[string]endpoint
	stripNames map[string]bool
	// domainOwner is the provider of each domain of the providers' domains.
	domainOwner map[string]*idp
	// claimPlaceholders are the placeholder names of Claims, made once.
	claimPlaceholders []string
	jtis              *oidc.JTICache
	// logoutFetches limits, per client address, the logout tokens that may
	// make this instance fetch the IdP's keys again.
	logoutFetches *sourceLimiter
	storeName     string
	events        *caddyevents.App
	ctx           caddy.Context
	logger        *zap.Logger

	// bearer verifies access tokens; nil without Bearer.
	bearer *bearer.Verifier
	// jwks is the document of <prefix>/jwks.json; nil without client keys.
	jwks []byte
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oidc_session",
		New: func() caddy.Module { return new(Handler) },
	}
}

const (
	defaultCookieName = "_oauth2_proxy"
	defaultPrefix     = "/oauth2"

	endSessionPOST = "post"
	endSessionGET  = "get"
)

// Provision sets up the handler. It reaches out to nothing: the IdP is
// discovered on first use, and all keys derive from the configured secrets,
// so a reload or a second instance reads the same cookies.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	h.applyDefaults()
	if err := h.validate(); err != nil {
		return err
	}

	secrets := make([]string, len(h.Cookie.Secrets))
	for i, s := range h.Cookie.Secrets {
		secrets[i] = repl.ReplaceKnown(s, "")
	}
	sessionKeys, err := sessions.NewKeyring("session", secrets...)
	if err != nil {
		return fmt.Errorf("cookie secret: %w", err)
	}
	if h.flowKeys, err = sessions.NewKeyring("flow", secrets...); err != nil {
		return fmt.Errorf("cookie secret: %w", err)
	}
	if err := h.provisionProviders(repl); err != nil {
		return err
	}

	sameSite, err := parseSameSite(h.Cookie.SameSite)
	if err != nil {
		return err
	}
	h.jar = cookies.Jar{
		Name:     h.Cookie.Name,
		Domain:   h.Cookie.Domain,
		Path:     h.Cookie.Path,
		Secure:   !h.Cookie.Insecure,
		HTTPOnly: !h.Cookie.AllowScripts,
		SameSite: sameSite,
	}

	if h.StoreRaw == nil {
		h.StoreRaw = json.RawMessage(`{"backend":"cookie"}`)
	}
	mod, err := ctx.LoadModule(h, "StoreRaw")
	if err != nil {
		return fmt.Errorf("loading session store: %w", err)
	}
	h.store = mod.(sessions.Store)
	if h.caps, err = sessions.CapabilitiesOf(h.store); err != nil {
		return err
	}
	if h.caps.Manager == nil && h.MaxSessionsPerUser > 0 {
		// validate knows the stores of this repository; this is for others.
		return fmt.Errorf("max_sessions_per_user needs a store that can list a user's sessions, which %s cannot", storeName(h.store))
	}
	if err := h.store.Bind(sessions.Env{
		CookieName:  h.Cookie.Name,
		Keys:        sessionKeys,
		Binding:     h.binding,
		Issuer:      h.primary().provider.Issuer(),
		IdleTimeout: h.idleTimeout(),
		MaxPerUser:  h.MaxSessionsPerUser,
	}); err != nil {
		return fmt.Errorf("session store: %w", err)
	}

	registry.join(h, h.store)
	if err := h.provisionObservability(ctx); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	for _, p := range h.idps {
		p.counters = providerMetrics(p.name)
	}

	h.provisionEndpoints()
	h.provisionIdentity()
	if h.chooser, err = loadChooser(h.ChooserTemplate); err != nil {
		return err
	}
	// Logout tokens older than the verifier's max age are refused anyway,
	// so remembering jtis for that long catches every replay.
	h.jtis = oidc.NewJTICache(oidc.DefaultLogoutMaxAge+oidc.LogoutClockSkew, 100000)
	h.logoutFetches = newSourceLimiter(rate.Every(time.Minute), 3, 10000)

	if h.Bearer != nil {
		// Its own client: the same timeout, and the default transport's
		// connections shared with the provider's.
		primary := h.primary()
		h.bearer, err = bearer.NewVerifier(*h.Bearer, bearer.IdP{
			Issuer:       primary.provider.Issuer(),
			ClientID:     primary.provider.ClientID(),
			ClientSecret: repl.ReplaceKnown(primary.cfg.ClientSecret, ""),
			HTTPClient:   &http.Client{Timeout: time.Duration(primary.cfg.ProviderTimeout)},
		})
		if err != nil {
			return err // its messages start with "bearer:"
		}
	}
	h.sessions = lifecycle.New(lifecycle.Config{
		Store:         h.store,
		Capabilities:  h.caps,
		Issuer:        h.primary().provider.Issuer(),
		IdleTimeout:   h.idleTimeout(),
		RefreshMargin: time.Duration(h.RefreshMargin),
		Refresher:     refresher{h},
		CacheSize:     h.SessionCacheSize,
		Tokens:        h.Headers != nil && h.Headers.AccessToken != "",
		Hooks:         lifecycle.Hooks{Store: h.storeCall, Ended: h.sessionEnded},
		Logger:        h.logger,
	})
	return h.provisionMigrate()
}

// Cleanup takes the handler's store out of the admin API's view. The store
// module itself is cleaned up by Caddy.
func (h *Handler) Cleanup() error {
	registry.leave(h)
	return h.migrator.cleanup()
}

func contains(list []string, v string) bool {
	for _, e := range list {
		if e == v {
			return true
		}
	}
	return false
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
