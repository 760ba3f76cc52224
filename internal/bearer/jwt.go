package bearer

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// asymmetricAlgs are the JWS algorithms tokens and DPoP proofs may be
// signed with: public-key ones only. "none" and the HMAC algorithms (which
// an IdP would key with a client secret, known to every instance of every
// client) are refused before any key is looked at.
// ES256 comes first: it is what DPoP clients are expected to use, and the
// order is the one advertised.
var asymmetricAlgs = []jose.SignatureAlgorithm{
	jose.ES256, jose.ES384, jose.ES512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.RS256, jose.RS384, jose.RS512,
	jose.EdDSA,
}

// algsParam is asymmetricAlgs for the algs parameter of the DPoP challenge
// and the metadata's dpop_signing_alg_values_supported.
var algsParam = func() []string {
	out := make([]string, len(asymmetricAlgs))
	for i, a := range asymmetricAlgs {
		out[i] = string(a)
	}
	return out
}()

func allowedAlg(alg string) bool {
	for _, a := range asymmetricAlgs {
		if string(a) == alg {
			return true
		}
	}
	return false
}

// jwsHeader is what is read of a JOSE header before any key is used.
type jwsHeader struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit"`
	JWK  json.RawMessage `json:"jwk"`
}

// looksLikeJWT reports whether token has the form of a compact JWS (three
// parts, the first a JSON object): such a token is verified as a JWT and
// never sent to introspection.
func looksLikeJWT(token string) bool {
	if strings.Count(token, ".") != 2 {
		return false
	}
	head, _, _ := strings.Cut(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(head)
	return err == nil && len(b) > 0 && b[0] == '{'
}

// splitJWS decodes the header and payload of a compact JWS, checking the
// header's alg (asymmetric only) and that it has no crit (no extension we
// would have to understand). what names the object in messages.
func splitJWS(raw, what string, refuse func(string, ...any) *problem) (h jwsHeader, payload []byte, err error) {
	parts := strings.Split(raw, ".")
	switch len(parts) {
	case 3:
	case 5:
		return h, nil, refuse("encrypted %s (JWE) not supported", what)
	default:
		return h, nil, refuse("%s is not a compact JWS", what)
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return h, nil, refuse("%s header is not base64url", what)
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return h, nil, refuse("%s header is not a JSON object", what)
	}
	switch {
	case h.Alg == "":
		return h, nil, refuse("%s header has no alg", what)
	case strings.EqualFold(h.Alg, "none"):
		return h, nil, refuse("unsigned %s (alg none)", what)
	case strings.HasPrefix(strings.ToUpper(h.Alg), "HS"):
		return h, nil, refuse("symmetric signature (%s) not allowed", safeValue(h.Alg))
	case !allowedAlg(h.Alg):
		return h, nil, refuse("unsupported signature algorithm %s", safeValue(h.Alg))
	case h.Crit != nil:
		return h, nil, refuse("%s header has crit", what)
	}
	payload, err = base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return h, nil, refuse("%s payload is not base64url", what)
	}
	return h, payload, nil
}

// verifyJWT verifies a JWT access token (RFC 9068 profile): header and
// claims first, from the unverified token, so junk is refused without a
// key lookup; then the signature with the keys of the issuer the token
// names, and only that issuer's.
func (v *Verifier) verifyJWT(ctx context.Context, raw string, now time.Time) (*verified, error) {
	refuse := func(f string, a ...any) *problem { return invalidToken(nil, f, a...) }
	h, payload, err := splitJWS(raw, "token", refuse)
	if err != nil {
		return nil, err
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil || c == nil {
		return nil, refuse("claims are not a JSON object")
	}
	iss, _, err := stringClaim(c, "iss")
	if err != nil || iss == "" {
		return nil, refuse("iss missing or not a string")
	}
	issuer := v.issuers[iss]
	if issuer == nil {
		return nil, refuse("iss is not a trusted issuer")
	}
	if err := checkAccessTokenType(h.Typ, issuer.atJWT); err != nil {
		return nil, err
	}
	verdict, err := v.judge(c, c["aud"], iss, now, true, time.Time{})
	if err != nil {
		return nil, err
	}

	keys, err := issuer.signingKeys(ctx, h.Kid, h.Alg)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, refuse("no key of the issuer's JWKS matches the token's kid and alg")
	}
	jws, err := jose.ParseSignedCompact(raw, asymmetricAlgs)
	if err != nil {
		return nil, invalidToken(err, "token does not parse as a JWS")
	}
	for i := range keys {
		signed, err := jws.Verify(&keys[i])
		if err != nil {
			continue
		}
		// The claims checked above are the ones signed.
		if !bytes.Equal(signed, payload) {
			return nil, refuse("signed payload differs from the token's")
		}
		verdict.size = entryOverhead + 3*len(payload)
		return verdict, nil
	}
	return nil, refuse("signature does not verify with the issuer's keys")
}

// checkAccessTokenType checks the JOSE typ of a JWT access token: at+jwt
// (RFC 9068) is always accepted; JWT or none only when the issuer is not
// known to use RFC 9068; any other type (dpop+jwt, logout+jwt, ...) names
// another kind of JWT and is refused.
func checkAccessTokenType(typ string, atJWT bool) error {
	t := strings.TrimPrefix(strings.ToLower(typ), "application/")
	switch {
	case t == "at+jwt":
		return nil
	case atJWT:
		return invalidToken(nil, "typ is not at+jwt (this issuer issues RFC 9068 access tokens)")
	case t == "" || t == "jwt":
		return nil
	}
	return invalidToken(nil, "typ %s is not an access token type", safeValue(typ))
}

// safeValue returns v for an error message if it is short and plain.
func safeValue(v string) string {
	if len(v) > 32 {
		return "(long value)"
	}
	for _, r := range v {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '+' || r == '_' || r == '/' || r == '.') {
			return "(unprintable value)"
		}
	}
	return v
}
