package oauth2proxy

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

const (
	// ticketIDHex is the length of the random part of a ticket's key:
	// oauth2-proxy's 16 random bytes in hex.
	ticketIDHex = 32
	// maxRecordLen bounds a Redis record before it is decrypted.
	maxRecordLen = maxStateLen + 64
)

// ticket is a parsed Redis session ticket: the record's key and the
// secret that decrypts it.
type ticket struct {
	key    string
	secret []byte
}

// parseTicket reads a verified payload as a ticket. ok is false when the
// payload does not have a ticket's shape (printable, with one or two dots),
// which is how a cookie-store payload (binary ciphertext, printable by
// chance with a probability below 10^-19 even for an empty session) is told
// apart; err is set when it has the shape but is not a valid ticket.
func parseTicket(payload []byte) (t ticket, ok bool, err error) {
	for _, c := range payload {
		if c <= ' ' || c > '~' {
			return ticket{}, false, nil
		}
	}
	parts := strings.Split(string(payload), ".")
	var key, secret string
	switch {
	case len(parts) == 3 && parts[0] == "v2":
		// The current form: v2.base64url(key).base64url(secret).
		k, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			return ticket{}, true, fmt.Errorf("%w: ticket key is not base64url", ErrMalformed)
		}
		key, secret = string(k), parts[2]
	case len(parts) == 2:
		// The older form, still read by oauth2-proxy v7: key.base64url(secret).
		key, secret = parts[0], parts[1]
	case len(parts) == 3:
		return ticket{}, true, fmt.Errorf("%w: unknown ticket version", ErrMalformed)
	default:
		return ticket{}, false, nil
	}
	if !validTicketKey(key) {
		return ticket{}, true, fmt.Errorf("%w: ticket key is not {cookie name}-{32 hex digits}", ErrMalformed)
	}
	sec, err := base64.RawURLEncoding.DecodeString(secret)
	if err != nil {
		return ticket{}, true, fmt.Errorf("%w: ticket secret is not base64url", ErrMalformed)
	}
	if n := len(sec); n != 16 && n != 24 && n != 32 {
		return ticket{}, true, fmt.Errorf("%w: ticket secret of %d bytes", ErrMalformed, n)
	}
	return ticket{key: key, secret: sec}, true, nil
}

// validTicketKey reports whether key is {cookie name}-{32 hex digits}, the
// only keys oauth2-proxy makes.
func validTicketKey(key string) bool {
	dash := strings.LastIndexByte(key, '-')
	if dash < 1 || dash > maxCookieNameLen {
		return false
	}
	id := key[dash+1:]
	if len(id) != ticketIDHex {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// loadTicket fetches and opens a ticket's record.
func (r *Reader) loadTicket(ctx context.Context, t ticket) (*state, error) {
	if r.redis == nil {
		return nil, fmt.Errorf("%w: a Redis session ticket, but no Redis is configured", ErrDecrypt)
	}
	record, err := r.redis.Get(ctx, r.prefix+t.key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if len(record) > maxRecordLen {
		return nil, fmt.Errorf("%w: record of %d bytes", ErrDecrypt, len(record))
	}
	return openRecord(t.secret, record)
}
