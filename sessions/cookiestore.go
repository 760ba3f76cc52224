package sessions

import (
	"context"
	"encoding/base64"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func init() {
	caddy.RegisterModule(CookieStore{})
}

// CookieStore keeps the whole session, encrypted and authenticated, in the
// browser's cookie: nothing is stored on the server, so any number of Caddy
// instances sharing the cookie secret serve the same users. It is the
// default store.
//
// What it cannot do, by design: end a session before it expires (logging
// out clears the cookie in that browser, but a copy of the cookie stays
// valid until its expiry), list sessions, or cap sessions per user. Use a
// server-side store for those.
type CookieStore struct {
	// DropTokens keeps only the identity (subject, email, name, groups,
	// claims) in the cookie and discards the ID, access and refresh tokens,
	// making the cookie a few hundred bytes. The price: no refresh (the
	// session lives until its lifetime ends), no access token for upstream
	// headers, and no id_token_hint at logout. Default: false.
	DropTokens bool `json:"drop_tokens,omitempty"`

	env Env
}

// CaddyModule returns the Caddy module information.
func (CookieStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oidc_session.stores.cookie",
		New: func() caddy.Module { return new(CookieStore) },
	}
}

// Bind implements Store.
func (s *CookieStore) Bind(env Env) error {
	s.env = env
	return nil
}

// Load implements Store.
func (s *CookieStore) Load(ctx context.Context, value string) (*Session, error) {
	return withTokens(s.LoadLazy(ctx, value))
}

// LoadLazy implements LazyLoader.
func (s *CookieStore) LoadLazy(_ context.Context, value string) (*Session, error) {
	// Strict: a value whose last character differs only in padding bits
	// must not be accepted as another spelling of the same session.
	sealed, err := base64.RawURLEncoding.Strict().DecodeString(value)
	if err != nil {
		return nil, ErrNoSession
	}
	plain, err := s.env.Keys.Open(sealed, s.env.Binding)
	if err != nil {
		return nil, ErrNoSession
	}
	sess, err := DecodeLazy(plain)
	if err != nil {
		return nil, ErrNoSession
	}
	return sess, nil
}

// Save implements Store. Every value is sealed under a fresh nonce, so
// a new login never reuses an earlier cookie value.
func (s *CookieStore) Save(_ context.Context, _ string, sess *Session) (string, error) {
	if s.DropTokens {
		sess = sess.WithoutTokens()
	}
	return base64.RawURLEncoding.EncodeToString(s.env.Keys.Seal(Encode(sess), s.env.Binding)), nil
}

// DropsTokens implements TokenDropper: with drop_tokens, the cookie keeps
// the identity only.
func (s *CookieStore) DropsTokens() bool { return s.DropTokens }

// Delete implements Store. The session lives only in the cookie, which the
// handler clears.
func (s *CookieStore) Delete(context.Context, string) error { return nil }

// UnmarshalCaddyfile sets up the store from Caddyfile tokens:
//
//	store cookie {
//		drop_tokens
//	}
func (s *CookieStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // store name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "drop_tokens":
			if d.NextArg() {
				return d.ArgErr()
			}
			s.DropTokens = true
		default:
			return d.Errf("unknown cookie store option %q (known: drop_tokens)", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ Store                 = (*CookieStore)(nil)
	_ LazyLoader            = (*CookieStore)(nil)
	_ caddyfile.Unmarshaler = (*CookieStore)(nil)
)
