package oauth2proxy

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	// maxCookieNameLen is oauth2-proxy's own limit on --cookie-name.
	maxCookieNameLen = 256
	// maxChunks bounds how many name_N cookies are joined. oauth2-proxy
	// splits at about 4000 bytes and has no limit of its own; 16 chunks
	// are more than any server's default header limit lets through.
	maxChunks = 16
	// maxValueLen bounds the joined signed value, before any work on it.
	maxValueLen = maxChunks * 4096
	// maxFutureSkew is how far in the future oauth2-proxy accepts a
	// cookie's signing time (clocks of several instances differ).
	maxFutureSkew = 5 * time.Minute
)

// CheckCookieName refuses what oauth2-proxy refuses as --cookie-name, as
// New does: for configuration checks before New.
func CheckCookieName(name string) error {
	if name == "" || len(name) > maxCookieNameLen {
		return fmt.Errorf("oauth2proxy: cookie name must be 1 to %d bytes, is %d", maxCookieNameLen, len(name))
	}
	if err := (&http.Cookie{Name: name, Value: "x"}).Valid(); err != nil {
		return fmt.Errorf("oauth2proxy: cookie name %q: %w", name, err)
	}
	return nil
}

// chunkName is the name of chunk i of a value stored under name: name_i,
// with name shortened so the result stays within 256 bytes, as
// oauth2-proxy shortens it.
func chunkName(name string, i int) string {
	suffix := "_" + strconv.Itoa(i)
	if over := len(name) + len(suffix) - maxCookieNameLen; over > 0 {
		name = name[:len(name)-over]
	}
	return name + suffix
}

// isOfName reports whether cookie is name itself or one of its chunks.
func isOfName(cookie, name string) bool {
	if cookie == name {
		return true
	}
	us := strings.LastIndexByte(cookie, '_')
	if us < 0 || us == len(cookie)-1 {
		return false
	}
	digits := cookie[us+1:]
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return false
		}
	}
	i, err := strconv.Atoi(digits)
	return err == nil && strconv.Itoa(i) == digits && chunkName(name, i) == cookie
}

// requestCookies are a request's cookies: the first value of each name (the
// one oauth2-proxy's net/http lookup sees) and every name in order.
type requestCookies struct {
	first map[string]string
	names []string
}

func parseCookies(req *http.Request) requestCookies {
	rc := requestCookies{first: map[string]string{}}
	for _, c := range req.Cookies() {
		if _, seen := rc.first[c.Name]; !seen {
			rc.first[c.Name] = c.Value
			rc.names = append(rc.names, c.Name)
		}
	}
	return rc
}

// value returns the signed value stored under name, joining chunks when
// there is no cookie called name, and the names of all cookies of name.
func (rc requestCookies) value(name string) (string, []string, error) {
	var family []string
	for _, n := range rc.names {
		if isOfName(n, name) {
			family = append(family, n)
		}
	}
	if len(family) == 0 {
		return "", nil, ErrNoCookie
	}
	if v, ok := rc.first[name]; ok {
		if len(v) > maxValueLen {
			return "", nil, fmt.Errorf("%w: cookie %s is %d bytes, more than %d", ErrMalformed, name, len(v), maxValueLen)
		}
		return v, family, nil
	}
	var sb strings.Builder
	for i := 0; ; i++ {
		v, ok := rc.first[chunkName(name, i)]
		if !ok {
			if i == 0 {
				// Only chunks from index 1 on: a set oauth2-proxy
				// itself would not read either.
				return "", nil, fmt.Errorf("%w: chunks of %s without chunk 0", ErrMalformed, name)
			}
			return sb.String(), family, nil
		}
		if i == maxChunks {
			return "", nil, fmt.Errorf("%w: %s in more than %d chunks", ErrMalformed, name, maxChunks)
		}
		if sb.Len()+len(v) > maxValueLen {
			return "", nil, fmt.Errorf("%w: chunks of %s exceed %d bytes", ErrMalformed, name, maxValueLen)
		}
		sb.WriteString(v)
	}
}

// cookieSecret is one --cookie-secret: the string signs, its AES key
// (derived as oauth2-proxy derives it) encrypts cookie sessions.
type cookieSecret struct {
	macKey []byte
	block  cipher.Block
}

// CheckCookieSecret refuses what oauth2-proxy refuses as --cookie-secret
// (not 16, 24 or 32 bytes, raw or base64url-decoded), as New does: for
// configuration checks before New. The error does not contain the secret.
func CheckCookieSecret(secret string) error {
	_, err := newCookieSecret(secret)
	return err
}

func newCookieSecret(secret string) (cookieSecret, error) {
	if secret == "" {
		return cookieSecret{}, errors.New("empty")
	}
	key := aesKey(secret)
	block, err := aes.NewCipher(key)
	if err != nil {
		return cookieSecret{}, fmt.Errorf("must be 16, 24 or 32 bytes, raw or base64url-encoded; is %d bytes", len(key))
	}
	return cookieSecret{macKey: []byte(secret), block: block}, nil
}

// aesKey is oauth2-proxy's reading of a cookie secret as an AES key: the
// base64url decoding (padding optional) when that is a valid key length,
// otherwise the secret's bytes.
func aesKey(secret string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(secret, "="))
	if err == nil && (len(b) == 16 || len(b) == 24 || len(b) == 32) {
		return b
	}
	return []byte(secret)
}

// mac is the signature of a value's payload and time under this secret.
func (s *cookieSecret) mac(name, payload, timestamp string) []byte {
	h := hmac.New(sha256.New, s.macKey)
	h.Write([]byte(name))
	h.Write([]byte(payload))
	h.Write([]byte(timestamp))
	return h.Sum(nil)
}

// verify checks a signed value of the cookie name and returns its decoded
// payload, its signing time and the secret that signed it. The signature
// is checked first and the time next, before the payload is decoded.
func (r *Reader) verify(name, value string) ([]byte, time.Time, *cookieSecret, error) {
	parts := strings.Split(value, "|")
	if len(parts) != 3 {
		return nil, time.Time{}, nil, fmt.Errorf("%w: %d fields instead of value|time|signature", ErrMalformed, len(parts))
	}
	payload, timestamp, signature := parts[0], parts[1], parts[2]
	got, err := base64.URLEncoding.DecodeString(signature)
	if err != nil {
		return nil, time.Time{}, nil, fmt.Errorf("%w: signature is not base64url", ErrSignature)
	}
	var secret *cookieSecret
	for i := range r.secrets {
		if hmac.Equal(got, r.secrets[i].mac(name, payload, timestamp)) {
			secret = &r.secrets[i]
			break
		}
	}
	if secret == nil {
		return nil, time.Time{}, nil, ErrSignature
	}
	unix, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return nil, time.Time{}, nil, fmt.Errorf("%w: signing time %w", ErrMalformed, err)
	}
	signedAt := time.Unix(unix, 0)
	now := r.now()
	if !signedAt.After(now.Add(-r.expire)) {
		return nil, time.Time{}, nil, fmt.Errorf("%w: signed %s ago, lifetime %s", ErrExpired, now.Sub(signedAt).Truncate(time.Second), r.expire)
	}
	if !signedAt.Before(now.Add(maxFutureSkew)) {
		return nil, time.Time{}, nil, fmt.Errorf("%w: signed %s in the future", ErrExpired, signedAt.Sub(now).Truncate(time.Second))
	}
	raw, err := base64.URLEncoding.DecodeString(payload)
	if err != nil {
		return nil, time.Time{}, nil, fmt.Errorf("%w: payload is not base64url", ErrMalformed)
	}
	return raw, signedAt, secret, nil
}
