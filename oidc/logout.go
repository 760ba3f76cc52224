package oidc

import (
	"bytes"
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
)

// OpenID Connect Back-Channel Logout 1.0: verification of the logout token
// the IdP POSTs to the back-channel logout endpoint, and a replay cache for
// its jti.

// ErrInvalidLogoutToken wraps every refusal of a logout token. The message
// names the check that failed; it never contains the token.
var ErrInvalidLogoutToken = errors.New("logout token rejected")

const (
	// DefaultLogoutMaxAge is how old (by its iat) a logout token may be
	// when VerifyLogoutToken is used, or VerifyLogoutTokenMaxAge is given
	// a max age <= 0.
	DefaultLogoutMaxAge = 10 * time.Minute
	// LogoutClockSkew is the tolerated difference between our clock and the
	// IdP's: iat may be this far in the future, exp this far in the past.
	LogoutClockSkew = 2 * time.Minute

	// backchannelLogoutEvent is the member of the events claim that makes
	// a JWT a logout token.
	backchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"
	// maxLogoutTokenSize bounds the work done on an unauthenticated input;
	// real logout tokens are a few hundred bytes to a few KiB.
	maxLogoutTokenSize = 64 << 10
)

// asymmetricAlgs are the JWS algorithms a logout token may be signed with:
// the IdP's public keys only. "none" and the HMAC algorithms (which would be
// keyed with the client secret, known to every instance of the client) are
// refused before the signature is even looked at.
var asymmetricAlgs = map[string]bool{
	gooidc.RS256: true, gooidc.RS384: true, gooidc.RS512: true,
	gooidc.PS256: true, gooidc.PS384: true, gooidc.PS512: true,
	gooidc.ES256: true, gooidc.ES384: true, gooidc.ES512: true,
	gooidc.EdDSA: true,
}

// LogoutToken is a verified back-channel logout token: the sessions to end
// are those of Subject at this IdP, or the one IdP session SID, or (when
// both are set) SID of Subject.
type LogoutToken struct {
	Issuer   string // always the provider's issuer
	Subject  string // "" when the token names only a session
	SID      string // "" when the token names only a subject
	JTI      string // unique id of the token, for replay detection (JTICache)
	IssuedAt time.Time
	Expiry   time.Time // zero when the token has no exp
}

// VerifyLogoutToken verifies a back-channel logout token (the logout_token
// form parameter) against the discovered IdP, accepting tokens issued up
// to DefaultLogoutMaxAge ago. See VerifyLogoutTokenMaxAge.
func (p *Provider) VerifyLogoutToken(ctx context.Context, d *Discovered, raw string, mayFetch KeyFetch) (*LogoutToken, error) {
	return p.VerifyLogoutTokenMaxAge(ctx, d, raw, DefaultLogoutMaxAge, mayFetch)
}

// VerifyLogoutTokenMaxAge verifies a back-channel logout token, as in
// section 2.6 of OpenID Connect Back-Channel Logout 1.0:
//
//   - it is a signed compact JWS (an encrypted token is refused) whose alg
//     is asymmetric and advertised by the IdP; "none" and HS* are refused;
//   - its typ header, if present, is "logout+jwt" (the spec's
//     recommendation) or "JWT" (what many IdPs send), case-insensitively and
//     with or without "application/"; any other typ is refused so that other
//     kinds of JWT (access tokens, ...) are not taken for logout tokens;
//   - the signature verifies with a key of the IdP's JWKS;
//   - iss is the provider's issuer and aud contains the client id;
//   - iat is present, at most LogoutClockSkew in the future and at most
//     maxAge in the past (maxAge <= 0 means DefaultLogoutMaxAge);
//   - exp, if present, has not passed (with LogoutClockSkew of tolerance);
//   - jti is present and not empty (replay detection is the caller's: see
//     JTICache);
//   - events is a JSON object whose member
//     "http://schemas.openid.net/event/backchannel-logout" is a JSON object;
//   - nonce is absent (so an ID token cannot pass for a logout token);
//   - sub or sid, or both, are present (as non-empty strings).
//
// Every refusal wraps ErrInvalidLogoutToken and says which check failed,
// without the token. A token that could not be checked because the IdP's
// keys cannot be fetched (now) wraps ErrUnavailable instead: the IdP should
// retry. See logoutKeys for when a token may make the keys be fetched.
func (p *Provider) VerifyLogoutTokenMaxAge(ctx context.Context, d *Discovered, raw string, maxAge time.Duration, mayFetch KeyFetch) (*LogoutToken, error) {
	if d == nil || d.keys == nil {
		return nil, errors.New("logout token: identity provider not discovered")
	}
	if maxAge <= 0 {
		maxAge = DefaultLogoutMaxAge
	}
	if raw == "" {
		return nil, refuse("empty token")
	}
	if len(raw) > maxLogoutTokenSize {
		return nil, refuse("token too large")
	}
	payload, err := checkLogoutHeader(raw)
	if err != nil {
		return nil, err
	}
	// The claims are checked before the signature too: junk is refused
	// without a key lookup, and each refusal says which claim is wrong.
	// Only the check of the verified claims below decides acceptance.
	now := time.Now()
	if _, err := p.checkLogoutClaims(payload, now, maxAge); err != nil {
		return nil, err
	}
	verified, err := d.keys.verify(ctx, raw, d.signingAlgs, mayFetch, false)
	if errors.Is(err, errSignature) {
		return nil, refuse("%v", err)
	}
	if err != nil {
		return nil, err
	}
	return p.checkLogoutClaims(verified, now, maxAge)
}

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidLogoutToken, fmt.Sprintf(format, args...))
}

// checkLogoutHeader checks the JOSE header, before any key is fetched, and
// returns the (not yet verified) payload.
func checkLogoutHeader(raw string) (payload []byte, err error) {
	parts := strings.Split(raw, ".")
	switch len(parts) {
	case 3:
	case 5:
		return nil, refuse("encrypted logout tokens are not supported")
	default:
		return nil, refuse("not a compact JWS")
	}
	hb, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[0], "="))
	if err != nil {
		return nil, refuse("header is not base64url")
	}
	payload, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil, refuse("payload is not base64url")
	}
	if err := checkHeaderFields(hb); err != nil {
		return nil, err
	}
	return payload, nil
}

func checkHeaderFields(hb []byte) error {
	var h map[string]json.RawMessage
	if err := json.Unmarshal(hb, &h); err != nil || h == nil {
		return refuse("header is not a JSON object")
	}
	var alg string
	if err := json.Unmarshal(h["alg"], &alg); err != nil || alg == "" {
		return refuse("header alg missing or not a string")
	}
	switch {
	case strings.EqualFold(alg, "none"):
		return refuse("unsigned token (alg none)")
	case strings.HasPrefix(strings.ToUpper(alg), "HS"):
		return refuse("symmetric signature (%s) not allowed", safeAlg(alg))
	case !asymmetricAlgs[alg]:
		return refuse("unsupported signature algorithm %s", safeAlg(alg))
	}
	if rt, ok := h["typ"]; ok {
		var typ string
		if err := json.Unmarshal(rt, &typ); err != nil {
			return refuse("header typ is not a string")
		}
		t := strings.ToLower(typ)
		t = strings.TrimPrefix(t, "application/")
		if t != "logout+jwt" && t != "jwt" {
			return refuse("header typ is neither logout+jwt nor JWT")
		}
	}
	return nil
}

// safeAlg returns alg for an error message if it is short and plain.
func safeAlg(alg string) string {
	if len(alg) > 16 {
		return "(long value)"
	}
	for _, r := range alg {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '+' || r == '_') {
			return "(unprintable value)"
		}
	}
	return alg
}

func (p *Provider) checkLogoutClaims(payload []byte, now time.Time, maxAge time.Duration) (*LogoutToken, error) {
	var c map[string]json.RawMessage
	if err := json.Unmarshal(payload, &c); err != nil || c == nil {
		return nil, refuse("claims are not a JSON object")
	}
	var t LogoutToken

	// iss
	iss, ok, err := stringClaim(c, "iss")
	if err != nil || !ok || iss != p.cfg.Issuer {
		return nil, refuse("iss is not the issuer")
	}
	t.Issuer = iss

	// aud: a string or an array of strings containing the client id.
	if !audienceContains(c["aud"], p.cfg.ClientID) {
		return nil, refuse("aud does not contain the client id")
	}

	// iat
	iat, ok, err := timeClaim(c, "iat")
	switch {
	case err != nil:
		return nil, refuse("iat is not a valid date")
	case !ok:
		return nil, refuse("iat missing")
	case iat.After(now.Add(LogoutClockSkew)):
		return nil, refuse("iat is in the future")
	case iat.Before(now.Add(-maxAge)):
		return nil, refuse("iat is older than %s", maxAge)
	}
	t.IssuedAt = iat

	// exp (optional here; REQUIRED by the final spec, but not every IdP
	// sends it)
	exp, ok, err := timeClaim(c, "exp")
	switch {
	case err != nil:
		return nil, refuse("exp is not a valid date")
	case ok && !now.Before(exp.Add(LogoutClockSkew)):
		return nil, refuse("token expired (exp)")
	}
	if ok {
		t.Expiry = exp
	}

	// jti
	jti, ok, err := stringClaim(c, "jti")
	if err != nil || !ok || jti == "" {
		return nil, refuse("jti missing or not a string")
	}
	t.JTI = jti

	// events: {"http://schemas.openid.net/event/backchannel-logout": {...}}
	rawEvents, ok := c["events"]
	if !ok {
		return nil, refuse("events missing")
	}
	var events map[string]json.RawMessage
	if !isJSONObject(rawEvents) || json.Unmarshal(rawEvents, &events) != nil {
		return nil, refuse("events is not a JSON object")
	}
	ev, ok := events[backchannelLogoutEvent]
	if !ok {
		return nil, refuse("events has no back-channel logout event")
	}
	if !isJSONObject(ev) {
		return nil, refuse("back-channel logout event is not a JSON object")
	}

	// nonce: its mere presence (even null) refuses the token.
	if _, ok := c["nonce"]; ok {
		return nil, refuse("nonce present (logout tokens must not have one)")
	}

	// sub and/or sid
	sub, _, err := stringClaim(c, "sub")
	if err != nil {
		return nil, refuse("sub is not a string")
	}
	sid, _, err := stringClaim(c, "sid")
	if err != nil {
		return nil, refuse("sid is not a string")
	}
	if sub == "" && sid == "" {
		return nil, refuse("neither sub nor sid present")
	}
	t.Subject, t.SID = sub, sid
	return &t, nil
}

// stringClaim returns a string claim; ok is false when it is absent (or
// null), err is set when it is something other than a string.
func stringClaim(c map[string]json.RawMessage, name string) (s string, ok bool, err error) {
	r, present := c[name]
	if !present || isJSONNull(r) {
		return "", false, nil
	}
	if err := json.Unmarshal(r, &s); err != nil {
		return "", false, err
	}
	return s, true, nil
}

// timeClaim returns a NumericDate claim (seconds since the epoch, possibly
// fractional); ok is false when it is absent (or null).
func timeClaim(c map[string]json.RawMessage, name string) (t time.Time, ok bool, err error) {
	r, present := c[name]
	if !present || isJSONNull(r) {
		return time.Time{}, false, nil
	}
	var f float64
	if err := json.Unmarshal(r, &f); err != nil {
		return time.Time{}, false, err
	}
	// Far beyond any real date, and beyond what int64 nanoseconds hold.
	if math.IsNaN(f) || f < 0 || f > 1e11 {
		return time.Time{}, false, errors.New("out of range")
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

func audienceContains(r json.RawMessage, clientID string) bool {
	if clientID == "" || len(r) == 0 {
		return false
	}
	var one string
	if json.Unmarshal(r, &one) == nil {
		return one == clientID
	}
	var many []string
	if json.Unmarshal(r, &many) != nil {
		return false
	}
	for _, a := range many {
		if a == clientID {
			return true
		}
	}
	return false
}

func isJSONObject(r json.RawMessage) bool {
	b := bytes.TrimLeft(r, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}

func isJSONNull(r json.RawMessage) bool {
	return string(bytes.TrimSpace(r)) == "null"
}

// JTICache remembers the (issuer, jti) pairs of recently accepted logout
// tokens so a replayed token can be ignored. It keeps at most max entries
// (the oldest are forgotten first) each for ttl, stores a hash of the pair
// rather than the pair, and is safe for concurrent use.
//
// ttl should be at least the logout max age plus LogoutClockSkew: a token
// older than that is refused by its iat anyway, so remembering it longer
// is useless, and forgetting it sooner lets it be replayed.
type JTICache struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu    sync.Mutex
	seen  map[[sha256.Size]byte]*list.Element
	order *list.List // of *jtiEntry, oldest first
}

type jtiEntry struct {
	key [sha256.Size]byte
	at  time.Time
}

// NewJTICache returns a cache keeping each pair for ttl (<= 0 means
// DefaultLogoutMaxAge + LogoutClockSkew) and at most max pairs (<= 0 means
// 10000).
func NewJTICache(ttl time.Duration, max int) *JTICache {
	if ttl <= 0 {
		ttl = DefaultLogoutMaxAge + LogoutClockSkew
	}
	if max <= 0 {
		max = 10000
	}
	return &JTICache{
		ttl:   ttl,
		max:   max,
		now:   time.Now,
		seen:  make(map[[sha256.Size]byte]*list.Element),
		order: list.New(),
	}
}

// Record records (issuer, jti) and reports whether it was already recorded
// less than ttl ago. A pair recorded again does not have its time renewed.
// Record a token's jti only once what it asked for is done: a token whose
// logout failed (the store was down) must be accepted when the IdP retries.
func (c *JTICache) Record(issuer, jti string) bool {
	key := jtiKey(issuer, jti)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked()
	if _, ok := c.seen[key]; ok {
		return true
	}
	c.seen[key] = c.order.PushBack(&jtiEntry{key: key, at: c.now()})
	for c.order.Len() > c.max {
		e := c.order.Front()
		c.order.Remove(e)
		delete(c.seen, e.Value.(*jtiEntry).key)
	}
	return false
}

// Used reports whether (issuer, jti) was recorded less than ttl ago,
// without recording it.
func (c *JTICache) Used(issuer, jti string) bool {
	key := jtiKey(issuer, jti)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked()
	_, ok := c.seen[key]
	return ok
}

// expireLocked forgets the pairs older than ttl. Entries are in insertion
// order, hence in expiry order.
func (c *JTICache) expireLocked() {
	now := c.now()
	for e := c.order.Front(); e != nil; e = c.order.Front() {
		ent := e.Value.(*jtiEntry)
		if now.Sub(ent.at) < c.ttl {
			break
		}
		c.order.Remove(e)
		delete(c.seen, ent.key)
	}
}

func jtiKey(issuer, jti string) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(issuer))
	h.Write([]byte{0})
	h.Write([]byte(jti))
	var key [sha256.Size]byte
	h.Sum(key[:0])
	return key
}

// Len returns how many pairs the cache holds (expired ones included until
// the next Record or Used).
func (c *JTICache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
