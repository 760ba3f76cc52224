package bearer

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/oidc-session/oidc_session/oidc"
)

// Error codes of RFC 6750 section 3.1 and RFC 9449 section 7.1.
const (
	// CodeInvalidRequest: the request is malformed (400): two Authorization
	// headers, a token in the query string or form body, a header that is
	// not "Bearer <token>".
	CodeInvalidRequest = "invalid_request"
	// CodeInvalidToken: the token is expired, revoked, malformed, for
	// another audience or otherwise not accepted (401).
	CodeInvalidToken = "invalid_token"
	// CodeInsufficientScope: the token is valid but lacks a required scope
	// (403).
	CodeInsufficientScope = "insufficient_scope"
	// CodeInvalidDPoPProof: the DPoP proof is missing, malformed, replayed,
	// for another request or signed by another key than the token is bound
	// to (401).
	CodeInvalidDPoPProof = "invalid_dpop_proof"
)

// ErrNoToken is returned by Verify for a request that carries no access
// token at all (no Authorization header with the Bearer or DPoP scheme, no
// access_token parameter): the request is not the verifier's to judge, and
// the handler goes on with its session.
var ErrNoToken = errors.New("bearer: no access token in the request")

// ErrUnavailable is oidc.ErrUnavailable: Verify wraps it (never in an
// *Error) when the token cannot be judged because an IdP cannot be reached
// (discovery, JWKS, introspection) or refuses this client's credentials.
// The handler answers its unavailable_status, never 401: the token may
// well be good.
var ErrUnavailable = oidc.ErrUnavailable

// Error is a refusal of a request's access token, carrying the answer
// RFC 6750 (and RFC 9449 for DPoP) prescribe. It never contains the token.
type Error struct {
	// Status is 400 (invalid_request), 401 (invalid_token,
	// invalid_dpop_proof, no credentials) or 403 (insufficient_scope).
	Status int
	// Code is one of the Code* constants, or "" for the no-credentials
	// challenge (see Verifier.Challenge).
	Code string
	// Description says what is wrong, for the client's developer; safe to
	// show (no token, no secret).
	Description string
	// Challenges are the WWW-Authenticate values to send, each one header
	// line, e.g. `Bearer realm="api.example.com", error="invalid_token",
	// error_description="token expired (exp)"`.
	Challenges []string

	cause error
}

// Error describes the refusal for logs: code, description and cause.
func (e *Error) Error() string {
	msg := "bearer: " + e.Description
	if e.Code != "" {
		msg = "bearer: " + e.Code + ": " + e.Description
	}
	if e.cause != nil {
		msg += ": " + e.cause.Error()
	}
	return msg
}

// Unwrap returns the cause (a go-jose or JSON error, say), if any.
func (e *Error) Unwrap() error { return e.cause }

// WriteResponse answers the request with the refusal: the WWW-Authenticate
// challenges, Cache-Control: no-store, the status and a small JSON body
// {"error": ..., "error_description": ...} as in RFC 6749 section 5.2.
func (e *Error) WriteResponse(w http.ResponseWriter) {
	h := w.Header()
	for _, c := range e.Challenges {
		h.Add("WWW-Authenticate", c)
	}
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Status)
	body := map[string]string{}
	if e.Code != "" {
		body["error"] = e.Code
		body["error_description"] = e.Description
	}
	_ = json.NewEncoder(w).Encode(body)
}

// problem is a refusal found while checking a token or proof, before the
// request's realm and scheme turn it into an *Error.
type problem struct {
	status int
	code   string
	desc   string
	scope  string // for insufficient_scope: the scopes required
	// dpop answers with the DPoP challenge (the failure concerns DPoP)
	// even when the request used the Bearer scheme.
	dpop  bool
	cause error
}

func (p *problem) Error() string {
	if p.cause != nil {
		return p.code + ": " + p.desc + ": " + p.cause.Error()
	}
	return p.code + ": " + p.desc
}

func (p *problem) Unwrap() error { return p.cause }

// invalidToken refuses the token (401).
func invalidToken(cause error, format string, args ...any) *problem {
	return &problem{status: http.StatusUnauthorized, code: CodeInvalidToken, desc: fmt.Sprintf(format, args...), cause: cause}
}

// invalidRequest refuses the request's form (400).
func invalidRequest(format string, args ...any) *problem {
	return &problem{status: http.StatusBadRequest, code: CodeInvalidRequest, desc: fmt.Sprintf(format, args...)}
}

// invalidProof refuses the DPoP proof (401, DPoP challenge).
func invalidProof(cause error, format string, args ...any) *problem {
	return &problem{status: http.StatusUnauthorized, code: CodeInvalidDPoPProof, desc: fmt.Sprintf(format, args...), dpop: true, cause: cause}
}

// dpopBinding refuses a token for how it is (or is not) bound to a DPoP
// key (401 invalid_token with the DPoP challenge).
func dpopBinding(format string, args ...any) *problem {
	p := invalidToken(nil, format, args...)
	p.dpop = true
	return p
}

// quote makes s an RFC 9110 quoted-string. Bytes outside printable ASCII
// are dropped: descriptions and realms are ASCII, and a Host header is not
// trusted to be.
func quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// challenge builds one WWW-Authenticate value: the scheme and its
// parameters (name, value pairs; empty values are left out).
func challenge(scheme string, params ...string) string {
	var b strings.Builder
	b.WriteString(scheme)
	sep := " "
	for i := 0; i+1 < len(params); i += 2 {
		if params[i+1] == "" {
			continue
		}
		b.WriteString(sep)
		b.WriteString(params[i])
		b.WriteByte('=')
		b.WriteString(quote(params[i+1]))
		sep = ", "
	}
	return b.String()
}
