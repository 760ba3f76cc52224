package bearer

import (
	"errors"
	"math"
	"strings"
	"time"
)

// Leeway is the clock difference tolerated between us and an issuer: a
// token is accepted until Leeway after its exp, and from Leeway before its
// nbf. RFC 9068 leaves it to us; the issue caps it at 60 s.
const Leeway = 60 * time.Second

// judge checks the claims that JWT access tokens and introspection answers
// share, and makes the verdict (valid until exp + Leeway, or untilMax when
// sooner). aud is the token's audience (a string or a list); needExp
// refuses a token without exp (RFC 9068 requires it; RFC 7662 does not).
func (v *Verifier) judge(c map[string]any, aud any, iss string, now time.Time, needExp bool, untilMax time.Time) (*verified, error) {
	if !audienceMatches(aud, v.audiences) {
		return nil, invalidToken(nil, "aud does not name this API")
	}
	exp, hasExp, err := timeClaim(c, "exp")
	switch {
	case err != nil:
		return nil, invalidToken(nil, "exp is not a valid date")
	case !hasExp && needExp:
		return nil, invalidToken(nil, "exp missing")
	case hasExp && !now.Before(exp.Add(Leeway)):
		return nil, invalidToken(nil, "token expired (exp)")
	}
	nbf, ok, err := timeClaim(c, "nbf")
	switch {
	case err != nil:
		return nil, invalidToken(nil, "nbf is not a valid date")
	case ok && now.Add(Leeway).Before(nbf):
		return nil, invalidToken(nil, "token not valid yet (nbf)")
	}
	iat, ok, err := timeClaim(c, "iat")
	switch {
	case err != nil:
		return nil, invalidToken(nil, "iat is not a valid date")
	case ok && now.Add(Leeway).Before(iat):
		return nil, invalidToken(nil, "token issued in the future (iat)")
	}
	sub, _, err := stringClaim(c, "sub")
	if err != nil || sub == "" {
		return nil, invalidToken(nil, "sub missing or not a string")
	}
	scopes, err := scopeClaim(c)
	if err != nil {
		return nil, invalidToken(err, "scope or scp is malformed")
	}
	jkt, err := confirmation(c)
	if err != nil {
		return nil, invalidToken(nil, "%v", err)
	}

	until := untilMax
	if hasExp && (until.IsZero() || exp.Add(Leeway).Before(until)) {
		until = exp.Add(Leeway)
	}
	// DPoP: a bound token passes Verify only with a valid proof.
	p := Principal{Issuer: iss, Subject: sub, Claims: c, Scopes: scopes, DPoP: jkt != "", derived: &derivation{}}
	if hasExp {
		p.Expiry = exp
	}
	return &verified{
		principal: p,
		jkt:       jkt,
		missing:   strings.Join(missingScopes(scopes, v.required), " "),
		until:     until,
	}, nil
}

// stringClaim returns a string claim; ok is false when it is absent or
// null, err is set when it is something else than a string.
func stringClaim(c map[string]any, name string) (s string, ok bool, err error) {
	switch x := c[name].(type) {
	case nil:
		return "", false, nil
	case string:
		return x, true, nil
	}
	return "", false, errors.New(name + " is not a string")
}

// timeClaim returns a NumericDate claim (seconds since the epoch, possibly
// fractional); ok is false when it is absent or null.
func timeClaim(c map[string]any, name string) (t time.Time, ok bool, err error) {
	switch x := c[name].(type) {
	case nil:
		return time.Time{}, false, nil
	case float64:
		// Far beyond any real date, and beyond what int64 nanoseconds hold.
		if math.IsNaN(x) || x < 0 || x > 1e11 {
			return time.Time{}, false, errors.New(name + " out of range")
		}
		sec, frac := math.Modf(x)
		return time.Unix(int64(sec), int64(frac*1e9)), true, nil
	}
	return time.Time{}, false, errors.New(name + " is not a number")
}

// audienceMatches reports whether aud (a string or a list of strings)
// names one of the accepted audiences.
func audienceMatches(aud any, accepted map[string]bool) bool {
	switch x := aud.(type) {
	case string:
		return accepted[x]
	case []any:
		for _, a := range x {
			if s, ok := a.(string); ok && accepted[s] {
				return true
			}
		}
	}
	return false
}

// scopeClaim returns the token's scopes: scope (RFC 9068, RFC 7662: a
// space-separated string) or, when the token has no scope, scp (a list of
// strings, or a space-separated string as some IdPs send).
func scopeClaim(c map[string]any) ([]string, error) {
	if s, ok := c["scope"]; ok && s != nil {
		str, ok := s.(string)
		if !ok {
			return nil, errors.New("scope is not a string")
		}
		return strings.Fields(str), nil
	}
	switch x := c["scp"].(type) {
	case nil:
		return nil, nil
	case string:
		return strings.Fields(x), nil
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, errors.New("scp has a member that is not a string")
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, errors.New("scp is neither a string nor a list")
}

// confirmation returns cnf.jkt (RFC 9449 section 6), or "" for a token
// without cnf. A token bound by another confirmation method only (the
// x5t#S256 of RFC 8705 mutual TLS, say) is refused: it would be stolen
// goods presented as a bearer token.
func confirmation(c map[string]any) (string, error) {
	raw, ok := c["cnf"]
	if !ok || raw == nil {
		return "", nil
	}
	cnf, ok := raw.(map[string]any)
	if !ok {
		return "", errors.New("cnf is not a JSON object")
	}
	switch jkt := cnf["jkt"].(type) {
	case string:
		if jkt == "" {
			return "", errors.New("cnf.jkt is empty")
		}
		return jkt, nil
	case nil:
		return "", errors.New("token is bound by a confirmation method (cnf) this server cannot check")
	}
	return "", errors.New("cnf.jkt is not a string")
}

// missingScopes returns the members of required that have is lacks.
func missingScopes(have, required []string) []string {
	var missing []string
	for _, r := range required {
		found := false
		for _, h := range have {
			if h == r {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, r)
		}
	}
	return missing
}
