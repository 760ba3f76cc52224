package storetest

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/sessions"
)

// Binding is the binding NewEnv uses: an issuer and a client ID, joined the
// way the handler joins them.
const Binding = "https://dex.example.com/dex\x00oidc-session"

// NewEnv returns an Env with a fresh random 32-byte secret, so every call
// makes keys no other call shares.
func NewEnv(t testing.TB) sessions.Env {
	t.Helper()
	return NewEnvWith(t, Binding, NewSecret())
}

// NewEnvWith returns an Env with the given binding and secrets (newest
// first).
func NewEnvWith(t testing.TB, binding string, secrets ...string) sessions.Env {
	t.Helper()
	kr, err := sessions.NewKeyring("session", secrets...)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return sessions.Env{CookieName: "_oauth2_proxy", Keys: kr, Binding: []byte(binding)}
}

// NewSecret returns a random secret like `openssl rand -base64 32` makes.
func NewSecret() string { return base64.StdEncoding.EncodeToString(randomBytes(32)) }

// Now returns the current time truncated to seconds, which is the precision
// stores keep.
func Now() time.Time { return time.Unix(time.Now().Unix(), 0) }

func secondsDuration(n int) time.Duration { return time.Duration(n) * time.Second }

// FullSession returns a session with every field set: several groups,
// multi-valued and non-ASCII claims, JWT-shaped ID and access tokens, an
// opaque refresh token, all times (whole seconds) and a DPoP key.
func FullSession() *sessions.Session {
	g := newGen(1)
	now := Now()
	sub := "CiQwOGE4Njg0Yi1kYjg4LTRiNzMtOTBhOS0zY2QxNjYxZjU0NjYSBWxvY2Fs"
	groups := []string{"engineering", "platform-team", "oncall", "Ünïcødé group", "cn=admins,ou=groups,dc=example,dc=com"}
	claims := g.claims(now, sub, groups)
	claims["sid"] = "a1b2c3d4-e5f6-7890-abcd-ef0123456789"
	access := maps.Clone(claims)
	delete(access, "nonce")
	delete(access, "at_hash")
	return &sessions.Session{
		Issuer:        "https://idp.example.com/realms/main",
		Subject:       sub,
		Email:         "jane.doe@example.com",
		EmailVerified: true,
		Name:          "Jane Q. Doe-Søndergaard",
		Groups:        groups,
		Claims: map[string][]string{
			"department":         {"research"},
			"roles":              {"viewer", "editor", "billing:read"},
			"preferred_username": {"jane"},
			"locale":             {"da-DK"},
			"empty-value":        {""},
		},
		SID:          "a1b2c3d4-e5f6-7890-abcd-ef0123456789",
		IDToken:      g.jwt(claims),
		AccessToken:  g.jwt(access),
		RefreshToken: g.str(40),
		TokenIssued:  now,
		TokenExpiry:  now.Add(time.Hour),
		CreatedAt:    now.Add(-time.Minute),
		LastSeen:     now,
		ExpiresAt:    now.Add(24 * time.Hour),
		DPoPKey:      append([]byte{1}, g.bytes(32)...),
	}
}

// DexSession returns the session a login through Dex typically yields: an
// RS256-signed ID token of about 900 bytes (iss, sub, aud, exp, iat, nonce,
// at_hash, email, email_verified, name, groups), an access token of the same
// shape, a 40-character opaque refresh token and the matching identity.
// Without tokens it is the same identity with the three tokens empty.
func DexSession(withTokens bool) *sessions.Session {
	now := Now()
	sub := "CiQwOGE4Njg0Yi1kYjg4LTRiNzMtOTBhOS0zY2QxNjYxZjU0NjYSBWxvY2Fs"
	groups := []string{"engineering", "platform-team", "oncall"}
	s := &sessions.Session{
		Subject:       sub,
		Email:         "jane.doe@example.com",
		EmailVerified: true,
		Name:          "Jane Doe",
		Groups:        groups,
		TokenIssued:   now,
		TokenExpiry:   now.Add(24 * time.Hour),
		CreatedAt:     now,
		LastSeen:      now,
		ExpiresAt:     now.Add(24 * time.Hour),
	}
	if withTokens {
		g := newGen(2)
		claims := g.claims(now, sub, groups)
		s.IDToken = g.jwt(claims)
		access := maps.Clone(claims)
		access["nonce"] = g.str(43)
		delete(access, "at_hash")
		s.AccessToken = g.jwt(access)
		s.RefreshToken = g.alnum(40)
	}
	return s
}

func jwtHeader() map[string]any {
	return map[string]any{"alg": "RS256", "kid": hex.EncodeToString(randomBytes(20))}
}

// gen makes the fixtures' random-looking parts (signatures, nonces, key
// ids) from a fixed seed, so sizes and benchmarks are the same every run.
type gen struct{ r *rand.ChaCha8 }

func newGen(seed byte) gen { return gen{rand.NewChaCha8([32]byte{seed})} }

func (g gen) bytes(n int) []byte {
	b := make([]byte, n)
	_, _ = g.r.Read(b)
	return b
}

// str returns n base64url characters.
func (g gen) str(n int) string {
	b := g.bytes(n)
	for i := range b {
		b[i] = b64url[b[i]%64]
	}
	return string(b)
}

func (g gen) alnum(n int) string {
	const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := g.bytes(n)
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)]
	}
	return string(b)
}

func (g gen) jwt(payload map[string]any) string {
	header := map[string]any{"alg": "RS256", "kid": hex.EncodeToString(g.bytes(20))}
	return jwtWithSignature(header, payload, g.bytes(256))
}

func (g gen) claims(now time.Time, sub string, groups []string) map[string]any {
	return map[string]any{
		"iss":            "https://dex.example.com/dex",
		"sub":            sub,
		"aud":            "oidc-session",
		"exp":            now.Add(24 * time.Hour).Unix(),
		"iat":            now.Unix(),
		"nonce":          g.str(43),
		"at_hash":        g.str(22),
		"email":          "jane.doe@example.com",
		"email_verified": true,
		"name":           "Jane Doe",
		"groups":         groups,
	}
}

// FakeJWT returns a JWT-shaped token: base64url JSON header and payload and
// a 256-byte random signature, the size RS256 with a 2048-bit key makes.
// Nothing verifies it; it has the size and compressibility of a real one.
func FakeJWT(header, payload map[string]any) string {
	return jwtWithSignature(header, payload, randomBytes(256))
}

func jwtWithSignature(header, payload map[string]any, sig []byte) string {
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(header) + "." + enc(payload) + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// Clone returns a deep copy of s.
func Clone(s *sessions.Session) *sessions.Session {
	c := *s
	c.Groups = slices.Clone(s.Groups)
	c.DPoPKey = slices.Clone(s.DPoPKey)
	if s.Claims != nil {
		c.Claims = make(map[string][]string, len(s.Claims))
		for k, v := range s.Claims {
			c.Claims[k] = slices.Clone(v)
		}
	}
	return &c
}

// Diff describes how got differs from want, field by field, or returns "".
// Times are compared as instants (location and monotonic reading ignored),
// and a nil slice or map equals an empty one: what stores must preserve is
// the content.
func Diff(want, got *sessions.Session) string {
	if want == nil || got == nil {
		if want == got {
			return ""
		}
		return fmt.Sprintf("want %v, got %v", want, got)
	}
	var diffs []string
	wv, gv := reflect.ValueOf(want).Elem(), reflect.ValueOf(got).Elem()
	for i := range wv.NumField() {
		f := wv.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		a, b := wv.Field(i).Interface(), gv.Field(i).Interface()
		if !equalField(a, b) {
			diffs = append(diffs, fmt.Sprintf("  %s: want %s, got %s", f.Name, short(a), short(b)))
		}
	}
	return strings.Join(diffs, "\n")
}

func equalField(a, b any) bool {
	switch a := a.(type) {
	case time.Time:
		return a.Equal(b.(time.Time))
	case []string:
		return slices.Equal(a, b.([]string))
	case []byte:
		return slices.Equal(a, b.([]byte))
	case map[string][]string:
		b := b.(map[string][]string)
		if len(a) != len(b) {
			return false
		}
		for k, v := range a {
			w, ok := b[k]
			if !ok || !slices.Equal(v, w) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(a, b)
	}
}

func short(v any) string {
	if t, ok := v.(time.Time); ok {
		if t.IsZero() {
			return "zero time"
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	s := fmt.Sprintf("%#v", v)
	if len(s) > 120 {
		s = s[:60] + "…" + s[len(s)-40:] + fmt.Sprintf(" (%d chars)", len(s))
	}
	return s
}
