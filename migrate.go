package oidcsession

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/oidc-session/oidc_session/internal/cookies"
	"github.com/oidc-session/oidc_session/internal/lifecycle"
	"github.com/oidc-session/oidc_session/internal/oauth2proxy"
	"github.com/oidc-session/oidc_session/oidc"
	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/redisstore"
)

// MigrateOAuth2Proxy takes over the sessions of the oauth2-proxy this
// handler replaces, so that switching logs nobody out: until Until, a
// request without a session of ours but with a valid oauth2-proxy session
// gets a new session of ours (a new ticket, never the proxy's), our cookie,
// and the proxy's cookie cleared. An oauth2-proxy session is taken over only
// if its ID token verifies for this handler's issuer and client (signature,
// iss, aud, azp; not its expiry) and its access token is unexpired or its
// refresh token is accepted by the IdP; anything else is a normal login.
//
// Give the values oauth2-proxy ran with. Anyone holding one of these
// cookie secrets can make oauth2-proxy cookies; keep them as secret as our
// own, and remove the block once the window is over.
type MigrateOAuth2Proxy struct {
	// CookieSecrets are oauth2-proxy's --cookie-secret values (several for
	// several proxies). Required. Supports {env.*} and {file.*}
	// placeholders, and is never logged. A cookie signed by any of them is
	// read, so list only proxies whose users may use this site.
	CookieSecrets []string `json:"cookie_secrets"`

	// CookieNames are oauth2-proxy's --cookie-name values. Default:
	// _oauth2_proxy (which is also our own default cookie name: then our
	// cookie simply replaces the proxy's).
	CookieNames []string `json:"cookie_names,omitempty"`

	// CookieExpire is oauth2-proxy's --cookie-expire: a proxy cookie signed
	// longer ago is refused, as the proxy refuses it. A session taken over
	// also ends no later than the proxy's would have. Default: 168h.
	CookieExpire caddy.Duration `json:"cookie_expire,omitempty"`

	// CookieDomains are oauth2-proxy's --cookie-domain values and
	// CookiePath its --cookie-path: a browser removes a cookie only when
	// told with the domain and path it was set with, so these say how the
	// proxy's cookies are cleared. Default: no domain (host-only), path /.
	CookieDomains []string `json:"cookie_domains,omitempty"`
	CookiePath    string   `json:"cookie_path,omitempty"`

	// Redis is the Redis of oauth2-proxy's --session-store-type=redis (its
	// --redis-connection-url, or sentinel or cluster settings), the same
	// settings as store redis. Leave it out when the proxy kept sessions in
	// cookies. oauth2-proxy puts no prefix before its keys: this has no
	// key_prefix, whatever our own store uses.
	Redis *redisstore.Connection `json:"redis,omitempty"`

	// Until ends the migration window: a date (2026-03-01, meaning its
	// start in UTC) or an RFC 3339 time. Required, so the option cannot
	// linger: from then on it does nothing but warn at start. oauth2-proxy
	// sessions last at most cookie_expire after the proxy last saved them,
	// so the switch plus cookie_expire is as long as it needs to be.
	Until string `json:"until"`

	// KeepProxySessions leaves the oauth2-proxy cookies and Redis records
	// of taken-over sessions as they are, for a rolling switch in which
	// instances still running oauth2-proxy serve the same users: our
	// cookie must then have a name of its own. Without it, the proxy's
	// cookies are cleared and its Redis record is shortened to a few
	// seconds once taken over, so one proxy session becomes one of ours,
	// once. A sign-out clears the proxy's cookies either way.
	KeepProxySessions bool `json:"keep_proxy_sessions,omitempty"`
}

const (
	// takeoverGrace is how long a finished takeover is given to requests
	// that still carry the same oauth2-proxy session (sent by the browser
	// before our cookie reached it), and how long its Redis record is kept.
	takeoverGrace = 30 * time.Second
	// untilLayout is the date form of until.
	untilLayout = "2006-01-02"
)

// cookieNames are the configured cookie names, or oauth2-proxy's default.
func (mc *MigrateOAuth2Proxy) cookieNames() []string {
	if len(mc.CookieNames) == 0 {
		return []string{oauth2proxy.DefaultCookieName}
	}
	return mc.CookieNames
}

// parseUntil reads until: a date (its start in UTC) or an RFC 3339 time.
func parseUntil(v string) (time.Time, error) {
	if t, err := time.Parse(untilLayout, v); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("until %q is neither a date (2006-01-02) nor an RFC 3339 time", v)
	}
	return t, nil
}

// migrator takes oauth2-proxy sessions over for the handler.
type migrator struct {
	h       *Handler
	reader  *oauth2proxy.Reader
	redis   redis.UniversalClient // nil for cookie-store proxies
	release func() error
	until   time.Time
	keep    bool
	names   []string // the configured cookie names
	domains []string // longest first, as oauth2-proxy picks them
	path    string
	now     func() time.Time

	mu          sync.Mutex
	takeovers   map[string]*takeover // by oauth2proxy.Session.ID
	swept       time.Time
	windowEnded sync.Once
}

// takeover is one oauth2-proxy session being, or recently, taken over.
type takeover struct {
	done   chan struct{} // closed when finished
	at     time.Time     // when finished
	sess   *sessions.Session
	cookie lifecycle.Cookie
	err    error
}

// provisionMigrate sets up migrate_oauth2_proxy, after validate. Past
// until it warns and sets up nothing.
func (h *Handler) provisionMigrate() error {
	mc := h.Migrate
	if mc == nil {
		return nil
	}
	until, err := parseUntil(mc.Until)
	if err != nil {
		return err // validated
	}
	if !time.Now().Before(until) {
		h.logger.Warn("migrate_oauth2_proxy: the migration window is over; no oauth2-proxy session is taken over: remove the option",
			zap.Time("until", until))
		return nil
	}
	repl := caddy.NewReplacer()
	replaced := func(vs []string) []string {
		out := make([]string, len(vs))
		for i, v := range vs {
			out[i] = repl.ReplaceKnown(v, "")
		}
		return out
	}
	m := &migrator{
		h:       h,
		until:   until,
		keep:    mc.KeepProxySessions,
		domains: replaced(mc.CookieDomains),
		path:    cmp.Or(mc.CookiePath, "/"),
		names:   mc.cookieNames(),
		now:     time.Now,
		release: func() error { return nil },

		takeovers: map[string]*takeover{},
	}
	// As oauth2-proxy sorts them: the longest domain that matches wins.
	slices.SortStableFunc(m.domains, func(a, b string) int { return len(b) - len(a) })
	if mc.Redis != nil {
		if m.redis, m.release, err = mc.Redis.Open(); err != nil {
			return fmt.Errorf("migrate_oauth2_proxy: redis: %w", err)
		}
	}
	m.reader, err = oauth2proxy.New(oauth2proxy.Config{
		CookieNames:   m.names,
		CookieSecrets: replaced(mc.CookieSecrets),
		CookieExpire:  time.Duration(mc.CookieExpire),
		Redis:         m.redis,
	})
	if err != nil {
		_ = m.release()
		return fmt.Errorf("migrate_oauth2_proxy: %w", err)
	}
	h.migrator = m
	h.logger.Info("migrate_oauth2_proxy: taking oauth2-proxy sessions over", zap.Time("until", until), zap.Bool("keep_proxy_sessions", m.keep))
	return nil
}

// cleanup gives back the Redis client.
func (m *migrator) cleanup() error {
	if m == nil {
		return nil
	}
	return m.release()
}

// active reports whether the window is open. A Caddy running past until
// stops taking sessions over, and says so once.
func (m *migrator) active() bool {
	if m == nil {
		return false
	}
	if m.now().Before(m.until) {
		return true
	}
	m.windowEnded.Do(func() {
		m.h.logger.Warn("migrate_oauth2_proxy: the migration window is over; no oauth2-proxy session is taken over from now on: remove the option",
			zap.Time("until", m.until))
	})
	return false
}

// takeOver is called for a request without a valid session of ours (prev
// is the value of our cookie, if any). It returns the session made from
// the request's oauth2-proxy session, having written our cookie and
// cleared the proxy's; nil when there is none to take over (a normal
// login follows); an error for unavailable_status when oauth2-proxy's
// Redis, the IdP or our store cannot be reached, so the proxy's cookie is
// kept for a later try.
func (m *migrator) takeOver(w http.ResponseWriter, r *http.Request, prev string) (*sessions.Session, error) {
	if !m.active() {
		return nil, nil
	}
	h := m.h
	ps, err := m.reader.Read(r.Context(), r)
	switch {
	case errors.Is(err, oauth2proxy.ErrNoCookie):
		return nil, nil
	case errors.Is(err, oauth2proxy.ErrUnavailable):
		h.logger.Error("migrate_oauth2_proxy: oauth2-proxy's Redis unavailable", zap.Error(err))
		return nil, caddyhttp.Error(h.UnavailableStatus, err)
	case err != nil:
		h.logger.Info("migrate_oauth2_proxy: oauth2-proxy session not taken over", zap.Error(err))
		return nil, nil
	}
	t, leader := m.once(ps.ID, func() (*sessions.Session, lifecycle.Cookie, error) {
		// Waiters share this work: it must not end with the request that
		// happens to run it.
		return m.convert(context.WithoutCancel(r.Context()), prev, ps)
	})
	sess, cookie, err := t.sess, t.cookie, t.err
	if err == nil && !leader {
		// Another request made the session: use it as our cookie would.
		sess, cookie, err = m.joined(r.Context(), t)
	}
	switch {
	case errors.Is(err, errUnavailable):
		h.logger.Error("migrate_oauth2_proxy: cannot take the oauth2-proxy session over now", zap.Error(err))
		return nil, caddyhttp.Error(h.UnavailableStatus, err)
	case err != nil:
		h.logger.Info("migrate_oauth2_proxy: oauth2-proxy session not taken over", zap.Error(err))
		return nil, nil
	case sess == nil:
		return nil, nil
	}
	if err := h.applyCookie(w, r, cookie); err != nil {
		h.logger.Error("migrate_oauth2_proxy: could not write the session cookie", zap.String("sub", sess.Subject), zap.Error(err))
		return nil, caddyhttp.Error(http.StatusInternalServerError, err)
	}
	if !m.keep {
		m.clear(w, r, ps.Cookies, true)
	}
	return sess, nil
}

// errUnavailable marks a takeover that failed for want of a component
// (the IdP, our store), not because the session was refused.
var errUnavailable = errors.New("unavailable")

// once runs convert for one oauth2-proxy session at a time: requests that
// arrive while it runs, or up to takeoverGrace after it succeeded, get its
// result (leader false) instead of making a second session. A failure is
// forgotten at once, so the next request tries again.
func (m *migrator) once(id string, convert func() (*sessions.Session, lifecycle.Cookie, error)) (*takeover, bool) {
	m.mu.Lock()
	now := m.now()
	if t, ok := m.takeovers[id]; ok && (t.at.IsZero() || now.Sub(t.at) < takeoverGrace) {
		m.mu.Unlock()
		<-t.done
		return t, false
	}
	if now.Sub(m.swept) > takeoverGrace {
		for k, t := range m.takeovers {
			if !t.at.IsZero() && now.Sub(t.at) >= takeoverGrace {
				delete(m.takeovers, k)
			}
		}
		m.swept = now
	}
	t := &takeover{done: make(chan struct{})}
	m.takeovers[id] = t
	m.mu.Unlock()

	t.sess, t.cookie, t.err = convert()
	m.mu.Lock()
	t.at = m.now()
	if t.err != nil {
		delete(m.takeovers, id)
	}
	m.mu.Unlock()
	close(t.done)
	return t, true
}

// joined is the session another request made from the same oauth2-proxy
// session, as our cookie leads to it now (it may have been refreshed, or
// ended, since), and the cookie to write: this browser may not have ours.
func (m *migrator) joined(ctx context.Context, t *takeover) (*sessions.Session, lifecycle.Cookie, error) {
	sess, cookie, err := m.h.sessions.Current(ctx, t.cookie.Value)
	if err != nil {
		return nil, lifecycle.Cookie{}, fmt.Errorf("%w: %w", errUnavailable, err)
	}
	if sess != nil && cookie.Action == lifecycle.Keep {
		cookie = lifecycle.Cookie{Action: lifecycle.Write, Value: t.cookie.Value, Expires: sess.Deadline(m.h.idleTimeout())}
	}
	return sess, cookie, nil
}

// convert makes our session from an oauth2-proxy session, or says why
// not. The identity comes from the ID token, verified as ours; the tokens
// must still be good, or be renewed by the IdP.
func (m *migrator) convert(ctx context.Context, prev string, ps *oauth2proxy.Session) (*sessions.Session, lifecycle.Cookie, error) {
	h := m.h
	refused := func(format string, args ...any) (*sessions.Session, lifecycle.Cookie, error) {
		return nil, lifecycle.Cookie{}, fmt.Errorf(format, args...)
	}
	d, err := h.primary().provider.Discover(ctx)
	if err != nil {
		return nil, lifecycle.Cookie{}, fmt.Errorf("%w: %w", errUnavailable, err)
	}
	now := m.now().Truncate(time.Millisecond)
	s := &sessions.Session{
		IDToken:      ps.IDToken,
		AccessToken:  ps.AccessToken,
		RefreshToken: ps.RefreshToken,
		TokenIssued:  ps.CreatedAt,
		TokenExpiry:  ps.ExpiresOn,
		CreatedAt:    now,
		LastSeen:     now,
		// Our lifetime, but never past the end oauth2-proxy would have
		// given the session.
		ExpiresAt: minTime(now.Add(time.Duration(h.SessionLifetime)), ps.Expires),
	}
	claims, err := h.primary().provider.VerifyStoredIDToken(ctx, d, ps.IDToken)
	verified := err == nil
	switch {
	case verified:
		if h.primary().provider.WantsUserInfo(d, claims) && now.Before(ps.ExpiresOn) {
			// As at login; an expired token gets them at its refresh.
			if err := h.primary().provider.MergeUserInfo(ctx, d, ps.AccessToken, claims); err != nil {
				return refused("%w", err)
			}
		}
		if err := h.applyClaims(s, claims); err != nil {
			return refused("ID token: %w", err)
		}
		if err := h.authorize(s); err != nil {
			return refused("%w", err)
		}
	case errors.Is(err, oidc.ErrIDTokenSignature) && ps.RefreshToken != "":
		// Signed with a key the IdP no longer publishes: the IdP itself
		// must vouch for the session, by redeeming its refresh token for
		// this client and sending a new ID token for the same user. The
		// unverified one is dropped, so the refresh takes no claim from it.
		s.Subject, s.IDToken = ps.User, ""
	case errors.Is(err, oidc.ErrIDTokenSignature) && errors.Is(err, oidc.ErrUnavailable):
		// No refresh token to ask the IdP with, and the keys cannot be
		// checked now: try again later rather than refuse.
		return nil, lifecycle.Cookie{}, fmt.Errorf("%w: %w", errUnavailable, err)
	default:
		return refused("%w", err)
	}
	if !verified || !now.Before(ps.ExpiresOn) {
		if ps.RefreshToken == "" {
			return refused("access token expired and no refresh token")
		}
		refreshed, err := refresher{h}.Refresh(ctx, s)
		switch {
		case errors.Is(err, lifecycle.ErrRefused):
			return refused("%w", err)
		case err != nil:
			return nil, lifecycle.Cookie{}, fmt.Errorf("%w: %w", errUnavailable, err)
		case !verified && refreshed.IDToken == "":
			return refused("ID token signed with an unknown key, and the IdP's refresh sent no new one")
		}
		if err := h.authorize(refreshed); err != nil {
			return refused("%w", err)
		}
		s = refreshed
	}
	cookie, err := h.sessions.Start(ctx, prev, s)
	if err != nil {
		return nil, lifecycle.Cookie{}, fmt.Errorf("%w: %w", errUnavailable, err)
	}
	h.logger.Info("migrate_oauth2_proxy: oauth2-proxy session taken over", zap.String("sub", s.Subject), zap.String("from", string(ps.Store)))
	h.emit(eventCreated, s, "")
	if !m.keep && ps.Store == oauth2proxy.StoreRedis {
		// One proxy session, one of ours: its record outlives the takeover
		// only as long as requests sent before our cookie need it.
		if err := m.redis.Expire(ctx, ps.RedisKey, takeoverGrace).Err(); err != nil {
			h.logger.Warn("migrate_oauth2_proxy: could not shorten the oauth2-proxy record", zap.Error(err))
		}
	}
	return s, cookie, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// clear tells the browser to drop oauth2-proxy cookies, with the domain and
// path the proxy set them with. With ours written, a cookie that is also
// ours (same name, domain and path) is left alone: writing our cookie has
// replaced it, or removed it as a leftover chunk.
func (m *migrator) clear(w http.ResponseWriter, r *http.Request, names []string, ours bool) {
	h := m.h
	theirs := cookies.Jar{
		Domain:   m.domain(r),
		Path:     m.path,
		Secure:   h.jar.Secure,
		HTTPOnly: true,
		SameSite: h.jar.SameSite,
	}
	shared := ours && theirs.Domain == h.jar.Domain && theirs.Path == h.jar.Path
	for _, name := range names {
		if shared && h.jar.Owns(name) {
			continue
		}
		theirs.Delete(w, name)
	}
}

// domain is the cookie domain oauth2-proxy used for this request: the
// longest configured one the host ends with, else the shortest.
func (m *migrator) domain(r *http.Request) string {
	for _, d := range m.domains {
		if strings.HasSuffix(r.Host, d) {
			return d
		}
	}
	if len(m.domains) > 0 {
		return m.domains[len(m.domains)-1]
	}
	return ""
}

// signOut clears the request's oauth2-proxy cookies at a sign-out, kept
// ones too: otherwise the next request would take the session over again.
func (m *migrator) signOut(w http.ResponseWriter, r *http.Request) {
	if m.active() {
		m.clear(w, r, m.reader.Cookies(r), false)
	}
}

// stripRequest removes oauth2-proxy cookies from the request before it
// goes upstream, as our own are: session material is not the upstream's.
func (m *migrator) stripRequest(r *http.Request) {
	if !m.active() {
		return
	}
	for _, name := range m.names {
		(&cookies.Jar{Name: name}).StripRequest(r)
	}
}
