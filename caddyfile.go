package oidcsession

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oidc-session/oidc_session/internal/bearer"
	"github.com/oidc-session/oidc_session/internal/cfgargs"
	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/redisstore"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("oidc_session", parseCaddyfile)
	// Authentication comes before everything it protects, like basic_auth,
	// so users need no `order` option.
	httpcaddyfile.RegisterDirectiveOrder("oidc_session", httpcaddyfile.Before, "basic_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var handler Handler
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return &handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	oidc_session [<matcher>] {
//		issuer       <url>
//		client_id    <id>
//		client_secret <secret>
//		client_auth  client_secret_basic|client_secret_post|private_key_jwt|none
//		client_key   <pem file|PEM>
//		client_key_id <kid...>
//		par          auto|on|off
//		dpop         on|off
//		profile      fapi2
//		redirect_url <url|path>
//		scopes       <scope...>
//		cookie {
//			name      <name>
//			secret    <secret...>
//			domain    <domain>
//			path      <path>
//			secure    on|off
//			http_only on|off
//			same_site lax|strict|none
//		}
//		store <name> { ... }
//		bearer { ... }
//		migrate_oauth2_proxy {
//			cookie_secret <secret...>
//			cookie_name   <name...>
//			cookie_expire <duration>
//			cookie_domain <domain...>
//			cookie_path   <path>
//			redis { url ... | sentinel_master ... | cluster_urls ... }
//			until         <date>
//			keep_proxy_sessions
//		}
//		...
//	}
//
// The README lists every subdirective with its default.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	at := lines{file: d.File(), fields: map[string]int{"": d.Line()}}
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		at.fields[d.Val()] = d.Line()
		var err error
		if known, err := h.ProviderConfig.unmarshalSetting(d, at, ""); known {
			if err != nil {
				return err
			}
			continue
		}
		switch d.Val() {
		case "provider":
			err = h.unmarshalProvider(d, at)
		case "chooser_template":
			err = cfgargs.One(d, &h.ChooserTemplate)
		case "path_prefix":
			err = cfgargs.One(d, &h.PathPrefix)
		case "require_acr":
			err = cfgargs.Many(d, &h.RequireACR)
		case "max_auth_age":
			err = cfgargs.Duration(d, &h.MaxAuthAge)
		case "cookie":
			err = h.Cookie.unmarshalCaddyfile(d, at)
		case "store":
			err = h.unmarshalStore(d)
		case "migrate_oauth2_proxy":
			err = h.unmarshalMigrate(d, at)
		case "session_lifetime":
			err = cfgargs.Duration(d, &h.SessionLifetime)
		case "idle_timeout":
			var v string
			if err = cfgargs.One(d, &v); err == nil {
				if v == "off" {
					h.IdleTimeout = -1
				} else if err = cfgargs.ParseDuration(d, "idle_timeout", v, &h.IdleTimeout); err != nil {
					return err
				}
			}
		case "refresh_margin":
			err = cfgargs.Duration(d, &h.RefreshMargin)
		case "unauthenticated":
			err = cfgargs.One(d, &h.Unauthenticated)
		case "allowed_redirect_hosts":
			err = cfgargs.Many(d, &h.AllowedRedirectHosts)
		case "post_logout_redirect":
			err = cfgargs.One(d, &h.PostLogoutRedirect)
		case "end_session_method":
			err = cfgargs.One(d, &h.EndSessionMethod)
		case "user_id_claim":
			err = cfgargs.One(d, &h.UserIDClaim)
		case "groups_claim":
			err = cfgargs.One(d, &h.GroupsClaim)
		case "claims":
			err = cfgargs.Many(d, &h.Claims)
		case "headers":
			err = h.unmarshalHeaders(d)
		case "allowed_email_domains":
			err = cfgargs.Many(d, &h.AllowedEmailDomains)
		case "allow_unverified_email":
			err = cfgargs.Flag(d, &h.AllowUnverifiedEmail)
		case "allowed_groups":
			err = cfgargs.Many(d, &h.AllowedGroups)
		case "require_claim":
			err = unmarshalRequireClaim(d, &h.RequiredClaims)
		case "max_login_flows":
			var s string
			if err = cfgargs.One(d, &s); err == nil {
				if h.MaxLoginFlows, err = strconv.Atoi(s); err != nil || h.MaxLoginFlows < 1 {
					return d.Errf("max_login_flows must be a positive number, not %q", s)
				}
			}
		case "cache_control":
			err = cfgargs.One(d, &h.CacheControl)
		case "session_cache_size":
			var v string
			if err = cfgargs.One(d, &v); err == nil {
				if h.SessionCacheSize, err = strconv.Atoi(v); err != nil || h.SessionCacheSize < 1 {
					return d.Errf("session_cache_size must be a positive number, not %q", v)
				}
			}
		case "max_sessions_per_user":
			var v string
			if err = cfgargs.One(d, &v); err == nil {
				if h.MaxSessionsPerUser, err = strconv.Atoi(v); err != nil || h.MaxSessionsPerUser < 1 {
					return d.Errf("max_sessions_per_user must be a positive number, not %q", v)
				}
			}
		case "unavailable_status":
			var v string
			if err = cfgargs.One(d, &v); err == nil {
				if h.UnavailableStatus, err = strconv.Atoi(v); err != nil || h.UnavailableStatus == 0 {
					return d.Errf("unavailable_status must be a 4xx or 5xx status code, not %q", v)
				}
			}
		case "login_timeout":
			err = cfgargs.Duration(d, &h.LoginTimeout)
		case "bearer":
			if h.Bearer != nil {
				return d.Err("bearer: one bearer block only (list several audiences or issuers in it)")
			}
			h.Bearer = &bearer.Config{}
			err = h.Bearer.UnmarshalCaddyfile(d)
		default:
			return d.Errf("unknown oidc_session subdirective %q (see the README for the list)", d.Val())
		}
		if err != nil {
			return err
		}
	}
	// The configuration as Provision will see it, checked by the same
	// validation, its mistakes reported at their lines.
	defaulted := *h
	defaulted.Providers = slices.Clone(h.Providers)
	defaulted.applyDefaults()
	return at.wrap(defaulted.validate())
}

// unmarshalSetting reads the subdirective at d if it is one of an IdP's
// settings (known false otherwise). prefix is what the lines of the
// provider block it is in are recorded under.
func (p *ProviderConfig) unmarshalSetting(d *caddyfile.Dispenser, at lines, prefix string) (known bool, err error) {
	switch d.Val() {
	case "issuer":
		err = cfgargs.One(d, &p.Issuer)
	case "client_id":
		err = cfgargs.One(d, &p.ClientID)
	case "client_secret":
		err = cfgargs.One(d, &p.ClientSecret)
	case "client_auth":
		err = cfgargs.One(d, &p.ClientAuth)
	case "client_key":
		// Repeatable: a second one is published for rotation. Each
		// one's line, for the errors of that key.
		var key string
		if err = cfgargs.One(d, &key); err == nil {
			p.ClientKeys = append(p.ClientKeys, key)
			at.fields[prefix+clientKeyField(len(p.ClientKeys)-1)] = d.Line()
		}
	case "client_key_id":
		var ids []string
		if err = cfgargs.Many(d, &ids); err == nil {
			p.ClientKeyIDs = append(p.ClientKeyIDs, ids...)
		}
	case "par":
		err = cfgargs.One(d, &p.PAR)
	case "dpop":
		err = cfgargs.One(d, &p.DPoP)
	case "profile":
		err = cfgargs.One(d, &p.Profile)
	case "redirect_url":
		err = cfgargs.One(d, &p.RedirectURL)
	case "scopes":
		err = cfgargs.Many(d, &p.Scopes)
	case "disable_pkce":
		err = cfgargs.Flag(d, &p.DisablePKCE)
	case "fetch_userinfo":
		// Bare, as before there were modes: on.
		var mode string
		if d.NextArg() {
			mode = d.Val()
			if d.NextArg() {
				return true, d.ArgErr()
			}
		} else {
			mode = "on"
		}
		p.FetchUserInfo = FetchUserInfoMode(mode)
	case "prompt":
		var values []string
		if err = cfgargs.Many(d, &values); err == nil {
			p.Prompt = strings.Join(values, " ")
		}
	case "login_hint":
		err = cfgargs.One(d, &p.LoginHint)
	case "acr_values":
		err = cfgargs.Many(d, &p.ACRValues)
	case "max_age":
		err = cfgargs.Duration(d, &p.MaxAge)
	case "resource":
		var values []string
		if err = cfgargs.Many(d, &values); err == nil {
			p.Resource = append(p.Resource, values...)
		}
	case "auth_params":
		err = p.unmarshalAuthParams(d)
	case "provider_timeout":
		err = cfgargs.Duration(d, &p.ProviderTimeout)
	default:
		return false, nil
	}
	return true, err
}

// unmarshalProvider reads provider <name> { ... }: the settings of one IdP
// of several, with its label and domains.
func (h *Handler) unmarshalProvider(d *caddyfile.Dispenser, at lines) error {
	var p ProviderBlock
	if !d.NextArg() {
		return d.Err("provider needs a name: provider <name> { issuer ... client_id ... }")
	}
	p.Name = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	prefix := providerField(len(h.Providers), "")
	at.fields[prefix] = d.Line()
	prefix += "."
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		at.fields[prefix+d.Val()] = d.Line()
		known, err := p.unmarshalSetting(d, at, prefix)
		if !known {
			switch d.Val() {
			case "label":
				err = cfgargs.One(d, &p.Label)
			case "domains":
				var domains []string
				if err = cfgargs.Many(d, &domains); err == nil {
					p.Domains = append(p.Domains, domains...)
				}
			case "user_id_claim":
				err = cfgargs.One(d, &p.UserIDClaim)
			case "groups_claim":
				err = cfgargs.One(d, &p.GroupsClaim)
			case "allowed_email_domains":
				err = cfgargs.Many(d, &p.AllowedEmailDomains)
			case "allowed_groups":
				err = cfgargs.Many(d, &p.AllowedGroups)
			case "require_claim":
				err = unmarshalRequireClaim(d, &p.RequiredClaims)
			default:
				return d.Errf("unknown option %q in provider %s: a provider block takes the IdP settings (issuer, client_id, client_secret, scopes, redirect_url, login parameters...), label, domains, and the claims and rules that differ (user_id_claim, groups_claim, allowed_email_domains, allowed_groups, require_claim)", d.Val(), p.Name)
			}
		}
		if err != nil {
			return err
		}
	}
	h.Providers = append(h.Providers, p)
	return nil
}

// lines remembers where each subdirective of a block is, so a mistake
// validate finds is reported at its line.
type lines struct {
	file   string
	fields map[string]int // subdirective (cookie.name for those of the cookie block, providers.<i>.issuer for those of the i-th provider block) -> line; "" the block's
}

// wrap prefixes each configError of err with its position, as Caddyfile
// parse errors are.
func (l lines) wrap(err error) error {
	if err == nil {
		return nil
	}
	errs := []error{err}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs = joined.Unwrap()
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		line := l.fields[""]
		var ce *configError
		if errors.As(e, &ce) {
			// The subdirective's line, else its block's (cookie for
			// cookie.name, providers.1 for providers.1.issuer).
			for field := ce.field; field != ""; {
				if n, ok := l.fields[field]; ok {
					line = n
					break
				}
				i := strings.LastIndex(field, ".")
				if i < 0 {
					break
				}
				field = field[:i]
			}
		}
		out[i] = fmt.Errorf("%s:%d - Error during parsing: oidc_session: %w", l.file, line, e)
	}
	return errors.Join(out...)
}

func (c *CookieConfig) unmarshalCaddyfile(d *caddyfile.Dispenser, at lines) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		at.fields["cookie."+d.Val()] = d.Line()
		var err error
		switch d.Val() {
		case "name":
			err = cfgargs.One(d, &c.Name)
		case "secret":
			var secrets []string
			if err = cfgargs.Many(d, &secrets); err == nil {
				c.Secrets = append(c.Secrets, secrets...)
			}
		case "domain":
			err = cfgargs.One(d, &c.Domain)
		case "path":
			err = cfgargs.One(d, &c.Path)
		case "secure":
			var on bool
			err = cfgargs.OnOff(d, &on)
			c.Insecure = !on
		case "http_only":
			var on bool
			err = cfgargs.OnOff(d, &on)
			c.AllowScripts = !on
		case "same_site":
			if err = cfgargs.One(d, &c.SameSite); err == nil {
				c.SameSite = strings.ToLower(c.SameSite)
			}
		default:
			return d.Errf("unknown cookie option %q (known: name, secret, domain, path, secure, http_only, same_site)", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unmarshalMigrate reads the migrate_oauth2_proxy block.
func (h *Handler) unmarshalMigrate(d *caddyfile.Dispenser, at lines) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	m := &MigrateOAuth2Proxy{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		at.fields["migrate_oauth2_proxy."+d.Val()] = d.Line()
		var err error
		switch d.Val() {
		case "cookie_secret":
			var secrets []string
			if err = cfgargs.Many(d, &secrets); err == nil {
				m.CookieSecrets = append(m.CookieSecrets, secrets...)
			}
		case "cookie_name":
			var names []string
			if err = cfgargs.Many(d, &names); err == nil {
				m.CookieNames = append(m.CookieNames, names...)
			}
		case "cookie_expire":
			err = cfgargs.Duration(d, &m.CookieExpire)
		case "cookie_domain":
			var domains []string
			if err = cfgargs.Many(d, &domains); err == nil {
				m.CookieDomains = append(m.CookieDomains, domains...)
			}
		case "cookie_path":
			err = cfgargs.One(d, &m.CookiePath)
		case "redis":
			err = unmarshalRedisConnection(d, &m.Redis)
		case "until":
			err = cfgargs.One(d, &m.Until)
		case "keep_proxy_sessions":
			err = cfgargs.Flag(d, &m.KeepProxySessions)
		default:
			return d.Errf("unknown migrate_oauth2_proxy option %q (known: cookie_secret, cookie_name, cookie_expire, cookie_domain, cookie_path, redis, until, keep_proxy_sessions)", d.Val())
		}
		if err != nil {
			return err
		}
	}
	h.Migrate = m
	return nil
}

// unmarshalRedisConnection reads a block of Redis connection options, as
// store redis takes them.
func unmarshalRedisConnection(d *caddyfile.Dispenser, dst **redisstore.Connection) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	c := &redisstore.Connection{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		known, err := c.UnmarshalOption(d)
		if !known {
			return d.Errf("unknown redis option %q (known: url, sentinel_master, sentinel_urls, sentinel_password, cluster_urls, db, username, password, tls, pool_size, dial_timeout, read_timeout, write_timeout)", d.Val())
		}
		if err != nil {
			return err
		}
	}
	*dst = c
	return nil
}

func (h *Handler) unmarshalStore(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	name := d.Val()
	unm, err := caddyfile.UnmarshalModule(d, "http.handlers.oidc_session.stores."+name)
	if err != nil {
		return err
	}
	if _, ok := unm.(sessions.Store); !ok {
		return d.Errf("module %q is not an oidc_session store", name)
	}
	h.StoreRaw = caddyconfig.JSONModuleObject(unm, "backend", name, nil)
	return nil
}

// unmarshalHeaders reads `headers` (the conventional X-Forwarded-User,
// -Email and -Groups) or a block naming each header.
func (h *Handler) unmarshalHeaders(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	hc := &HeadersConfig{}
	nesting := d.Nesting()
	block := false
	for d.NextBlock(nesting) {
		block = true
		var target *string
		switch d.Val() {
		case "user":
			target = &hc.User
		case "email":
			target = &hc.Email
		case "name":
			target = &hc.Name
		case "groups":
			target = &hc.Groups
		case "access_token":
			target = &hc.AccessToken
		case "provider":
			target = &hc.Provider
		default:
			return d.Errf("unknown headers option %q (known: user, email, name, groups, access_token, provider)", d.Val())
		}
		if err := cfgargs.One(d, target); err != nil {
			return err
		}
	}
	if !block {
		hc = &HeadersConfig{User: "X-Forwarded-User", Email: "X-Forwarded-Email", Groups: "X-Forwarded-Groups"}
	}
	h.Headers = hc
	return nil
}

// unmarshalRequireClaim reads require_claim <claim> <value...> into m.
func unmarshalRequireClaim(d *caddyfile.Dispenser, m *map[string][]string) error {
	var args []string
	if err := cfgargs.Many(d, &args); err != nil {
		return err
	}
	if len(args) < 2 {
		return d.Err("require_claim takes a claim name and at least one value")
	}
	if *m == nil {
		*m = map[string][]string{}
	}
	(*m)[args[0]] = append((*m)[args[0]], args[1:]...)
	return nil
}

// unmarshalAuthParams reads auth_params { <name> <value> ... }.
func (p *ProviderConfig) unmarshalAuthParams(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		var value string
		if err := cfgargs.One(d, &value); err != nil {
			return err
		}
		if p.AuthParams == nil {
			p.AuthParams = map[string]string{}
		}
		p.AuthParams[name] = value
	}
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)
