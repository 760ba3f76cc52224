package sessions

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// A ticket is the cookie value of a server-side session, in the format
// oauth2-proxy documents: {CookieName}-{ticketID}.{secret}. The ticket ID is
// 128 random bits in lowercase hex; the secret is 128 random bits in
// base64url without padding, different for every session. The handle
// {CookieName}-{ticketID} names the stored record; the secret never leaves
// the cookie and is needed to decrypt the record, so the store alone
// reveals no token, email or subject.
const (
	ticketIDLen     = 16
	ticketSecretLen = 16
)

// Ticket is a parsed server-side session cookie value.
type Ticket struct {
	// Handle is {CookieName}-{ticketID}, the record's name in the store.
	Handle string
	secret []byte
}

// NewTicket mints a ticket with a fresh ID and secret.
func NewTicket(cookieName string) *Ticket {
	id := make([]byte, ticketIDLen)
	secret := make([]byte, ticketSecretLen)
	rand.Read(id)
	rand.Read(secret)
	return &Ticket{Handle: cookieName + "-" + hex.EncodeToString(id), secret: secret}
}

// ParseTicket reads a ticket made for cookieName. The cookie name may itself
// contain dots and dashes: the secret is what follows the last dot (base64url
// has none), and the ticket ID the 32 hex digits before it.
func ParseTicket(cookieName, value string) (*Ticket, bool) {
	handle, enc, ok := splitTicket(cookieName, value)
	if !ok {
		return nil, false
	}
	secret, err := base64.RawURLEncoding.Strict().DecodeString(enc)
	if err != nil || len(secret) != ticketSecretLen {
		return nil, false
	}
	return &Ticket{Handle: handle, secret: secret}, true
}

// splitTicket cuts a ticket into its handle and its encoded secret,
// checking the handle's form but not decoding the secret.
func splitTicket(cookieName, value string) (handle, secret string, ok bool) {
	dot := strings.LastIndexByte(value, '.')
	if dot < 0 {
		return "", "", false
	}
	handle, secret = value[:dot], value[dot+1:]
	id, ok := strings.CutPrefix(handle, cookieName)
	if !ok || len(id) != 1+2*ticketIDLen || id[0] != '-' || !isLowerHex(id[1:]) {
		return "", "", false
	}
	return handle, secret, true
}

// Value is the cookie value.
func (t *Ticket) Value() string {
	return t.Handle + "." + base64.RawURLEncoding.EncodeToString(t.secret)
}

// Seal encrypts a session under this ticket's own key (derived from the
// ticket's secret and the server's current key). The handle and the
// deployment's binding are authenticated, so a record cannot be moved to
// another handle or read by another issuer/client.
func (t *Ticket) Seal(s *Session, env Env) ([]byte, error) {
	return env.Keys.SealSession(t.secret, Encode(s), t.aad(env.Binding))
}

// Open decrypts a record sealed by Seal.
func (t *Ticket) Open(sealed []byte, env Env) (*Session, error) {
	return withTokens(t.OpenLazy(sealed, env))
}

// OpenLazy is Open leaving the tokens encoded (see LazyLoader).
func (t *Ticket) OpenLazy(sealed []byte, env Env) (*Session, error) {
	plain, err := env.Keys.OpenSession(t.secret, sealed, t.aad(env.Binding))
	if err != nil {
		return nil, ErrNoSession
	}
	s, err := DecodeLazy(plain)
	if err != nil {
		return nil, ErrNoSession
	}
	return s, nil
}

func (t *Ticket) aad(binding []byte) []byte {
	return append(append([]byte(t.Handle), 0), binding...)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
