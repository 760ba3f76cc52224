package sessions

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// The codec turns a Session into a compact byte string. Tokens dominate a
// session's size and are nearly always JWTs, whose three base64url parts
// carry 33% overhead and compress badly while encoded; the codec stores them
// decoded and, where it pays, deflates the whole record, so the ID token and
// the access token (which repeat most claims) compress against each other.
//
// Layout: version byte, flags byte, then the body (deflated if flagCompressed).
// The body is a sequence of fields in fixed order: uvarint-length-prefixed
// strings, varint times (unix milliseconds, 0 for zero; milliseconds keep
// the order of logins made within one second), and for tokens a form byte
// (raw or JWT) followed by the parts. Version 2 starts the body with the
// issuer; version 1 records (written before sessions said whose they are)
// are still read, with an empty Issuer. A DPoP key, when the session has
// one, ends the body and is announced by flagDPoPKey, so records without
// one are byte for byte as before.

const (
	codecVersion   = 2
	codecV1        = 1
	flagCompressed = 1 << 0
	// flagDPoPKey: the body ends with the session's DPoP key.
	flagDPoPKey = 1 << 1

	tokenRaw = 0
	tokenJWT = 1

	// maxDecoded bounds what an inflated record may grow to, so a small
	// forged value cannot expand into a large allocation. Decryption happens
	// first, so only our own records are inflated, but the bound costs nothing.
	maxDecoded = 1 << 20
	// compressAbove is the size under which deflate rarely pays for itself.
	compressAbove = 256
)

var errCorrupt = errors.New("corrupt session record")

// Encode returns the compact binary form of s.
func Encode(s *Session) []byte {
	body := encodeBody(s)
	var flags byte
	if len(s.DPoPKey) > 0 {
		flags |= flagDPoPKey
		body = putString(body, string(s.DPoPKey))
	}
	if len(body) > compressAbove {
		if z := deflate(body); len(z) < len(body) {
			return append([]byte{codecVersion, flags | flagCompressed}, z...)
		}
	}
	return append([]byte{codecVersion, flags}, body...)
}

// Decode parses a record made by Encode.
func Decode(b []byte) (*Session, error) {
	if len(b) < 2 || (b[0] != codecVersion && b[0] != codecV1) {
		return nil, errCorrupt
	}
	body := b[2:]
	if b[1]&flagCompressed != 0 {
		var err error
		if body, err = inflate(body); err != nil {
			return nil, errCorrupt
		}
	}
	return decodeBody(body, b[0], b[1])
}

func encodeBody(s *Session) []byte {
	w := make([]byte, 0, 256+len(s.IDToken)+len(s.AccessToken)+len(s.RefreshToken))
	w = putString(w, s.Issuer)
	w = putString(w, s.Subject)
	w = putString(w, s.Email)
	w = putBool(w, s.EmailVerified)
	w = putString(w, s.Name)
	w = putStrings(w, s.Groups)
	keys := make([]string, 0, len(s.Claims))
	for k := range s.Claims {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	w = binary.AppendUvarint(w, uint64(len(keys)))
	for _, k := range keys {
		w = putString(w, k)
		w = putStrings(w, s.Claims[k])
	}
	w = putString(w, s.SID)
	w = putToken(w, s.IDToken)
	w = putToken(w, s.AccessToken)
	w = putToken(w, s.RefreshToken)
	for _, t := range [...]time.Time{s.TokenIssued, s.TokenExpiry, s.CreatedAt, s.LastSeen, s.ExpiresAt} {
		w = putTime(w, t)
	}
	return w
}

func decodeBody(b []byte, version, flags byte) (*Session, error) {
	r := reader{b: b}
	s := &Session{}
	if version >= 2 {
		s.Issuer = r.string()
	}
	s.Subject = r.string()
	s.Email = r.string()
	s.EmailVerified = r.bool()
	s.Name = r.string()
	s.Groups = r.strings()
	if n := r.count(); n > 0 {
		s.Claims = make(map[string][]string, n)
		for i := 0; i < n && r.err == nil; i++ {
			k := r.string()
			s.Claims[k] = r.strings()
		}
	}
	s.SID = r.string()
	s.IDToken = r.token()
	s.AccessToken = r.token()
	s.RefreshToken = r.token()
	for _, t := range [...]*time.Time{&s.TokenIssued, &s.TokenExpiry, &s.CreatedAt, &s.LastSeen, &s.ExpiresAt} {
		*t = r.time()
	}
	if flags&flagDPoPKey != 0 {
		key := r.bytes()
		if len(key) == 0 {
			r.err = errCorrupt // Encode never writes an empty one
		}
		s.DPoPKey = bytes.Clone(key)
	}
	if r.err != nil || len(r.b) != 0 {
		return nil, errCorrupt
	}
	return s, nil
}

func putString(w []byte, s string) []byte {
	w = binary.AppendUvarint(w, uint64(len(s)))
	return append(w, s...)
}

func putBool(w []byte, v bool) []byte {
	if v {
		return append(w, 1)
	}
	return append(w, 0)
}

func putStrings(w []byte, list []string) []byte {
	w = binary.AppendUvarint(w, uint64(len(list)))
	for _, s := range list {
		w = putString(w, s)
	}
	return w
}

func putTime(w []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(w, 0)
	}
	return binary.AppendVarint(w, t.UnixMilli())
}

// putToken stores a JWT as its three decoded parts when decoding and
// re-encoding gives back exactly the same string; anything else verbatim.
func putToken(w []byte, tok string) []byte {
	if parts, ok := splitJWT(tok); ok {
		w = append(w, tokenJWT)
		for _, p := range parts {
			w = putString(w, p)
		}
		return w
	}
	w = append(w, tokenRaw)
	return putString(w, tok)
}

func splitJWT(tok string) ([3]string, bool) {
	var out [3]string
	segs := strings.Split(tok, ".")
	if len(segs) != 3 {
		return out, false
	}
	for i, seg := range segs {
		raw, err := base64.RawURLEncoding.DecodeString(seg)
		// Non-canonical encodings (stray bits in the last character) would
		// not survive the round trip and would break the token's signature.
		if err != nil || base64.RawURLEncoding.EncodeToString(raw) != seg {
			return out, false
		}
		out[i] = string(raw)
	}
	return out, true
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a length and checks it against what is left, so a corrupt
// length cannot trigger a huge allocation.
func (r *reader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.err = errCorrupt
		return 0
	}
	return int(n)
}

func (r *reader) bytes() []byte {
	n := r.count()
	if r.err != nil {
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string { return string(r.bytes()) }

func (r *reader) bool() bool {
	if r.err != nil || len(r.b) == 0 {
		r.err = errCorrupt
		return false
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v == 1
}

func (r *reader) strings() []string {
	n := r.count()
	if n == 0 || r.err != nil {
		return nil
	}
	out := make([]string, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		out = append(out, r.string())
	}
	return out
}

func (r *reader) time() time.Time {
	if r.err != nil {
		return time.Time{}
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return time.Time{}
	}
	r.b = r.b[n:]
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

func (r *reader) token() string {
	if r.err != nil || len(r.b) == 0 {
		r.err = errCorrupt
		return ""
	}
	form := r.b[0]
	r.b = r.b[1:]
	switch form {
	case tokenRaw:
		return r.string()
	case tokenJWT:
		var out []byte
		for i := 0; i < 3; i++ {
			if i > 0 {
				out = append(out, '.')
			}
			out = base64.RawURLEncoding.AppendEncode(out, r.bytes())
		}
		return string(out)
	default:
		r.err = errCorrupt
		return ""
	}
}

// Deflate writers are large; pool them. Readers are pooled too since they
// are reset per record.
var (
	writers = sync.Pool{New: func() any {
		w, _ := flate.NewWriter(nil, flate.BestCompression)
		return w
	}}
	readers = sync.Pool{New: func() any { return flate.NewReader(nil) }}
)

func deflate(b []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(b))
	w := writers.Get().(*flate.Writer)
	w.Reset(&buf)
	_, _ = w.Write(b)
	_ = w.Close()
	writers.Put(w)
	return buf.Bytes()
}

func inflate(b []byte) ([]byte, error) {
	fr := readers.Get().(io.ReadCloser)
	defer readers.Put(fr)
	if err := fr.(flate.Resetter).Reset(bytes.NewReader(b), nil); err != nil {
		return nil, err
	}
	out := bytes.NewBuffer(make([]byte, 0, 4*len(b)))
	n, err := io.Copy(out, io.LimitReader(fr, maxDecoded+1))
	if err != nil {
		return nil, err
	}
	if n > maxDecoded {
		return nil, errCorrupt
	}
	return out.Bytes(), nil
}
