package bearer

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/go-jose/go-jose/v4"
)

const (
	// proofWindow is how far a DPoP proof's iat may be from our clock, in
	// either direction (RFC 9449 section 11.1 leaves it to us).
	proofWindow = 60 * time.Second
	// proofJTIs bounds the replay cache: past this many proofs within
	// 2*proofWindow the oldest are forgotten (each costs about 150 bytes).
	proofJTIs = 100000
	// maxProofSize bounds the work done on a DPoP header; real proofs are
	// well under 1 KiB.
	maxProofSize = 8 << 10
	// maxJTISize bounds the jti of a proof.
	maxJTISize = 256
)

// checkProof checks the request's DPoP proof for a token bound to the key
// with thumbprint jkt, as RFC 9449 sections 4.3 and 7.1 say: one DPoP
// header; a compact JWS of typ dpop+jwt with an asymmetric alg, signed by
// the public key in its jwk header; htm the request's method; htu the
// request's URL without query and fragment (both normalised); iat within
// proofWindow of now; ath the hash of this token; the key's thumbprint
// jkt; and a jti not seen in the window for this key. The jti is recorded
// only when everything else passed, so a proof cannot be spent by a
// request that fails.
func (v *Verifier) checkProof(r *http.Request, token, jkt string, now time.Time) error {
	values := r.Header.Values("DPoP")
	switch {
	case len(values) == 0:
		return invalidProof(nil, "DPoP proof missing (the token is DPoP-bound)")
	case len(values) > 1:
		return invalidProof(nil, "more than one DPoP header")
	case len(values[0]) > maxProofSize:
		return invalidProof(nil, "DPoP proof too large")
	}
	proof := values[0]
	refuse := func(f string, a ...any) *problem { return invalidProof(nil, f, a...) }
	h, _, err := splitJWS(proof, "DPoP proof", refuse)
	if err != nil {
		return err
	}
	if !strings.EqualFold(h.Typ, "dpop+jwt") {
		return refuse("DPoP proof typ is not dpop+jwt")
	}
	if h.JWK == nil {
		return refuse("DPoP proof has no jwk header")
	}
	jws, err := jose.ParseSignedCompact(proof, asymmetricAlgs)
	if err != nil {
		// go-jose refuses a jwk header holding a private or symmetric key.
		return invalidProof(err, "DPoP proof does not parse (its jwk must be a public key)")
	}
	key := jws.Signatures[0].Protected.JSONWebKey
	if key == nil || !key.IsPublic() {
		return refuse("DPoP proof jwk is not a public key")
	}
	signed, err := jws.Verify(key)
	if err != nil {
		return invalidProof(err, "DPoP proof signature does not verify with its jwk")
	}
	var c map[string]any
	if err := json.Unmarshal(signed, &c); err != nil || c == nil {
		return refuse("DPoP proof claims are not a JSON object")
	}
	if htm, _, _ := stringClaim(c, "htm"); htm != r.Method {
		return refuse("DPoP proof htm is not this request's method")
	}
	htu, _, _ := stringClaim(c, "htu")
	want, err := requestHTU(r)
	if err != nil {
		return refuse("this request's URL cannot be compared with htu")
	}
	if got, err := normalizeHTU(htu); err != nil || got != want {
		return refuse("DPoP proof htu is not this request's URL")
	}
	iat, ok, err := timeClaim(c, "iat")
	switch {
	case err != nil || !ok:
		return refuse("DPoP proof iat missing or not a date")
	case iat.Before(now.Add(-proofWindow)):
		return refuse("DPoP proof too old (iat)")
	case iat.After(now.Add(proofWindow)):
		return refuse("DPoP proof issued in the future (iat)")
	}
	if ath, _, _ := stringClaim(c, "ath"); ath != tokenHash(token) {
		return refuse("DPoP proof ath is not the hash of this token")
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return invalidProof(err, "DPoP proof jwk has no thumbprint")
	}
	if base64.RawURLEncoding.EncodeToString(tp) != jkt {
		return dpopBinding("DPoP proof is signed by another key than the token is bound to (cnf.jkt)")
	}
	jti, _, err := stringClaim(c, "jti")
	if err != nil || jti == "" || len(jti) > maxJTISize {
		return refuse("DPoP proof jti missing, not a string or too long")
	}
	if v.proofs.Record(jkt, jti) {
		return refuse("DPoP proof replayed (jti seen before)")
	}
	return nil
}

// tokenHash is the ath of a proof for token: base64url(SHA-256(token)).
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// requestHTU is the request's URL as the client sent it (before any
// rewrite by earlier handlers), normalised like htu.
func requestHTU(r *http.Request) (string, error) {
	u := r.URL
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		u = orig.URL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return normalizeHTU(scheme + "://" + r.Host + u.EscapedPath())
}

// normalizeHTU normalises an http(s) URL for comparison as RFC 9449
// section 4.3 asks (RFC 3986 sections 6.2.2 and 6.2.3): scheme and host in
// lower case, the default port dropped, percent-encodings of unreserved
// characters decoded and the others in upper case, dot segments removed,
// an empty path made "/"; query and fragment are not compared.
func normalizeHTU(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "http" && scheme != "https") || u.Host == "" || u.User != nil || u.Opaque != "" {
		return "", errors.New("not an absolute http(s) URL")
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // IPv6
	}
	if port := u.Port(); port != "" && !(scheme == "http" && port == "80" || scheme == "https" && port == "443") {
		host += ":" + port
	}
	path, err := normalizePercent(u.EscapedPath())
	if err != nil {
		return "", err
	}
	path = removeDotSegments(path)
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, nil
}

// normalizePercent decodes the percent-encodings of unreserved characters
// and writes the others' hex digits in upper case.
func normalizePercent(p string) (string, error) {
	if !strings.Contains(p, "%") {
		return p, nil
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			b.WriteByte(p[i])
			continue
		}
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			return "", errors.New("bad percent-encoding")
		}
		c := unhex(p[i+1])<<4 | unhex(p[i+2])
		if isUnreserved(c) {
			b.WriteByte(c)
		} else {
			b.WriteString("%" + strings.ToUpper(p[i+1:i+3]))
		}
		i += 2
	}
	return b.String(), nil
}

// removeDotSegments is RFC 3986 section 5.2.4.
func removeDotSegments(in string) string {
	var out []string // segments, each with its leading "/"
	for in != "" {
		switch {
		case strings.HasPrefix(in, "../"):
			in = in[3:]
		case strings.HasPrefix(in, "./"):
			in = in[2:]
		case strings.HasPrefix(in, "/./"):
			in = in[2:]
		case in == "/.":
			in = "/"
		case strings.HasPrefix(in, "/../"):
			in = in[3:]
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case in == "/..":
			in = "/"
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case in == "." || in == "..":
			in = ""
		default:
			// The first segment, with its leading "/" if any, up to the next "/".
			end := strings.IndexByte(in[1:], '/')
			if end < 0 {
				out = append(out, in)
				in = ""
			} else {
				out = append(out, in[:end+1])
				in = in[end+1:]
			}
		}
	}
	return strings.Join(out, "")
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func isUnreserved(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}
