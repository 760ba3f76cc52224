// Package oauth2proxy reads the sessions that oauth2-proxy v7 keeps, so a
// site switching from oauth2-proxy + forward_auth to oidc_session can take
// its users' sessions over instead of sending everyone to log in again.
//
// It only reads: it never writes an oauth2-proxy cookie, and it decides
// nothing about the identity beyond what is cheap and certain (the cookie's
// signature and age, the Redis record's existence and integrity). Whether the
// ID token was issued by the right issuer for the right client, and whether
// its tokens are still good, is the caller's to check with its own verifier.
//
// The formats, as oauth2-proxy v7 writes them (checked against v7.8.1):
//
//   - Signed cookie value: B "|" T "|" S, where B is the payload in padded
//     base64url, T the Unix time of the save in decimal, and S the padded
//     base64url HMAC-SHA256 of name‖B‖T keyed with the cookie secret string
//     exactly as configured (not decoded).
//   - Cookie secret as an AES key: the secret base64url-decoded (padding
//     optional) when that yields 16, 24 or 32 bytes, else the secret's own
//     bytes, which must then be 16, 24 or 32 long.
//   - Cookie store payload: a 16-byte random IV, then AES-CFB under the
//     cookie secret of an LZ4 frame of the msgpack-encoded session. The
//     payload is not authenticated by the cipher; the signature covers it.
//   - Redis store payload (the ticket): "v2." base64url(key) "." base64url
//     (secret), or in the older form key "." base64url(secret), both unpadded.
//     The key is {cookie name}-{32 hex digits} and is the Redis key as is;
//     the value there is a 12-byte nonce, then AES-GCM under the ticket's
//     secret of the msgpack-encoded session (no LZ4).
//   - Chunks: a signed value too long for one cookie is split into name_0,
//     name_1, ... and joined in index order up to the first missing index; a
//     cookie called name itself wins over any chunks.
package oauth2proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultCookieName is oauth2-proxy's default --cookie-name.
const DefaultCookieName = "_oauth2_proxy"

// DefaultCookieExpire is oauth2-proxy's default --cookie-expire.
const DefaultCookieExpire = 168 * time.Hour

// Why a session could not be read. Every error Read returns wraps exactly
// one of these (test with errors.Is). All but ErrUnavailable mean "no
// usable oauth2-proxy session": the request goes on as if it had none (a
// normal login). ErrUnavailable means the session may well be good but its
// Redis cannot be asked right now: answer 503 rather than start a login.
var (
	// ErrNoCookie: the request carries no cookie of a configured name.
	ErrNoCookie = errors.New("oauth2proxy: no oauth2-proxy cookie")
	// ErrMalformed: a cookie of a configured name that is not an
	// oauth2-proxy value (wrong shape, bad encoding, too many chunks or
	// bytes), or a verified value whose ticket is not well formed.
	ErrMalformed = errors.New("oauth2proxy: not an oauth2-proxy session value")
	// ErrSignature: no configured cookie secret signed this value (tampered,
	// or made with another secret).
	ErrSignature = errors.New("oauth2proxy: cookie signature does not verify")
	// ErrExpired: the value was signed longer ago than the cookie lifetime
	// (or too far in the future).
	ErrExpired = errors.New("oauth2proxy: session cookie expired")
	// ErrDecrypt: a correctly signed value whose session does not decrypt
	// or decode; also a Redis ticket when no Redis is configured.
	ErrDecrypt = errors.New("oauth2proxy: session does not decrypt or decode")
	// ErrNotFound: a valid ticket whose Redis record is gone (expired,
	// signed out, or another Redis).
	ErrNotFound = errors.New("oauth2proxy: session not found in Redis")
	// ErrUnavailable: Redis did not answer.
	ErrUnavailable = errors.New("oauth2proxy: Redis unavailable")
)

// Config says how the oauth2-proxy whose sessions are read was run.
type Config struct {
	// CookieNames are the --cookie-name values of the proxies whose sessions
	// are taken over (several proxies may have used different names).
	// Default: [DefaultCookieName].
	CookieNames []string
	// CookieSecrets are their --cookie-secret values, as configured
	// (placeholders resolved). Required. Each signs and, decoded as
	// oauth2-proxy does, encrypts; every one is tried on every cookie, so
	// list only secrets of proxies whose users may be served here: a
	// cookie made under any of them is accepted.
	CookieSecrets []string
	// CookieExpire is the proxies' --cookie-expire: a value signed longer
	// ago is refused (ErrExpired), as oauth2-proxy itself would. Default
	// DefaultCookieExpire (168h). oauth2-proxy's 0 (no limit) cannot be
	// expressed: give the longest lifetime its cookies could have had.
	// Longer than the proxy's lifetime accepts older (possibly stolen and
	// long logged-out) cookies.
	CookieExpire time.Duration
	// Redis is the Redis of --session-store-type=redis, or nil when the
	// proxies kept sessions in cookies. With nil, a ticket cookie is
	// refused (ErrDecrypt).
	Redis redis.UniversalClient
	// RedisKeyPrefix is put before each ticket's key. oauth2-proxy uses no
	// prefix, so this stays empty unless something between it and Redis
	// added one; it is not oidc_session's own store key_prefix.
	RedisKeyPrefix string
}

// Reader reads oauth2-proxy sessions from requests. It is safe for
// concurrent use.
type Reader struct {
	names   []string
	secrets []cookieSecret
	expire  time.Duration
	redis   redis.UniversalClient
	prefix  string
	now     func() time.Time // time.Now; tests move it
}

// New checks cfg and returns its Reader. It refuses what oauth2-proxy
// itself refuses at start: a cookie name that is empty, longer than 256
// bytes or not a valid cookie name, and a cookie secret that is not 16, 24
// or 32 bytes raw or base64-decoded.
func New(cfg Config) (*Reader, error) {
	r := &Reader{
		names:  slices.Clone(cfg.CookieNames),
		expire: cfg.CookieExpire,
		redis:  cfg.Redis,
		prefix: cfg.RedisKeyPrefix,
		now:    time.Now,
	}
	if len(r.names) == 0 {
		r.names = []string{DefaultCookieName}
	}
	for _, name := range r.names {
		if err := CheckCookieName(name); err != nil {
			return nil, err
		}
	}
	if len(cfg.CookieSecrets) == 0 {
		return nil, errors.New("oauth2proxy: at least one cookie secret is required")
	}
	for i, s := range cfg.CookieSecrets {
		cs, err := newCookieSecret(s)
		if err != nil {
			return nil, fmt.Errorf("oauth2proxy: cookie secret %d: %w", i+1, err)
		}
		r.secrets = append(r.secrets, cs)
	}
	if r.expire < 0 {
		return nil, errors.New("oauth2proxy: negative cookie lifetime")
	}
	if r.expire == 0 {
		r.expire = DefaultCookieExpire
	}
	return r, nil
}

// Store says where oauth2-proxy kept a session.
type Store string

const (
	// StoreCookie: the session was in the cookie itself.
	StoreCookie Store = "cookie"
	// StoreRedis: the cookie held a ticket to a Redis record.
	StoreRedis Store = "redis"
)

// Session is an oauth2-proxy session, as the proxy stored it. Fields the
// proxy did not store (a --cookie-minimal session has no tokens, for
// example) are empty.
type Session struct {
	// Email, User, PreferredUsername and Groups are what oauth2-proxy took
	// from the ID token's claims (by default email, sub,
	// preferred_username, groups) when the session was made or refreshed.
	Email             string
	User              string
	PreferredUsername string
	Groups            []string
	// IDToken is the raw ID token: verify it (issuer, audience, signature;
	// not necessarily its expiry) before trusting anything above, since a
	// proxy for another client or issuer may have shared the secret.
	IDToken string
	// AccessToken and RefreshToken are the proxy's tokens at the IdP.
	AccessToken  string
	RefreshToken string
	// CreatedAt is when the session was made or last refreshed (zero if
	// not recorded).
	CreatedAt time.Time
	// ExpiresOn is when the access token expires, per the proxy (zero if
	// unknown). oauth2-proxy kept serving a session past it until a
	// refresh failed; whether it is still good is the caller's decision.
	ExpiresOn time.Time
	// Expires is when oauth2-proxy would have stopped accepting the cookie
	// (its signing time plus the cookie lifetime): a session taken over
	// should not outlive it.
	Expires time.Time

	// Store is where the session was kept.
	Store Store
	// CookieName is the configured cookie name it was read from.
	CookieName string
	// Cookies names every request cookie of that name: CookieName itself
	// and any CookieName_N chunks, read or left over. Clear them (with the
	// proxy's cookie domain and path) once the session is taken over,
	// except a name the caller's own cookie now uses.
	Cookies []string
	// RedisKey is the Redis key of a StoreRedis session (with the prefix).
	RedisKey string
	// ID identifies this session and stays the same while the proxy does
	// not save it again: the Redis key, or for cookie sessions a hash of
	// the signed value. Use it to take a session over only once, and to
	// let parallel requests share one takeover. It is not a secret and
	// cannot be turned back into the cookie.
	ID string
}

// Read returns the oauth2-proxy session of the request, or why there is
// none (an error wrapping one of the Err values). The cookie's signature and
// age are checked before anything is decrypted. With several configured
// cookie names, the first that yields a session wins; if none does, the
// error is ErrUnavailable when any of them needed Redis and could not have
// it, else that of the first name present. A Redis lookup runs under ctx:
// bound it as other store calls are bounded.
func (r *Reader) Read(ctx context.Context, req *http.Request) (*Session, error) {
	rc := parseCookies(req)
	var first, unavailable error
	for _, name := range r.names {
		s, err := r.readName(ctx, rc, name)
		switch {
		case err == nil:
			return s, nil
		case errors.Is(err, ErrNoCookie):
		case errors.Is(err, ErrUnavailable):
			unavailable = firstOf(unavailable, err)
		default:
			first = firstOf(first, err)
		}
	}
	if unavailable != nil {
		return nil, unavailable
	}
	if first != nil {
		return nil, first
	}
	return nil, ErrNoCookie
}

// Cookies names the request's cookies of the configured names (each name
// and its chunks), whatever they hold: what a sign-out clears, so that no
// oauth2-proxy session of the browser is taken over after it.
func (r *Reader) Cookies(req *http.Request) []string {
	rc := parseCookies(req)
	var out []string
	for _, n := range rc.names {
		for _, name := range r.names {
			if isOfName(n, name) {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

// firstOf returns the first non-nil of a and b.
func firstOf(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// readName reads the session kept under one cookie name.
func (r *Reader) readName(ctx context.Context, rc requestCookies, name string) (*Session, error) {
	value, cookies, err := rc.value(name)
	if err != nil {
		return nil, err
	}
	payload, signedAt, secret, err := r.verify(name, value)
	if err != nil {
		return nil, err
	}
	s := &Session{
		Expires:    signedAt.Add(r.expire).UTC(),
		CookieName: name,
		Cookies:    cookies,
	}
	var st *state
	if t, ok, err := parseTicket(payload); ok {
		if err != nil {
			return nil, err
		}
		st, err = r.loadTicket(ctx, t)
		if err != nil {
			return nil, err
		}
		s.Store, s.RedisKey, s.ID = StoreRedis, r.prefix+t.key, r.prefix+t.key
	} else {
		st, err = secret.decodeCookieSession(payload)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256([]byte(value))
		s.Store, s.ID = StoreCookie, hex.EncodeToString(sum[:16])
	}
	st.fill(s)
	return s, nil
}
