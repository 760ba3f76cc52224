package bearer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"golang.org/x/sync/singleflight"

	"github.com/oidc-session/oidc_session/oidc"
)

const (
	// maxTokenSize bounds the work done on an Authorization header; real
	// access tokens are well under 8 KiB even with many groups.
	maxTokenSize = 16 << 10
	// maxFormPeek is how much of a form body is read to look for an
	// access_token parameter.
	maxFormPeek = 64 << 10
)

// IdP is what the verifier takes from the handler around it.
type IdP struct {
	// Issuer is the handler's issuer: always trusted, and the one whose
	// introspection endpoint opaque tokens are sent to.
	Issuer string
	// ClientID and ClientSecret authenticate introspection requests.
	ClientID     string
	ClientSecret string
	// HTTPClient makes every call to an IdP (discovery, JWKS,
	// introspection); its timeout bounds them. Default: 10 s timeout.
	HTTPClient *http.Client
}

// Principal is the identity a verified access token carries.
type Principal struct {
	// Issuer is the token's issuer (for an introspected token, the main
	// issuer).
	Issuer string
	// Subject is the token's sub.
	Subject string
	// Claims are the verified claims (the JWT's payload, or the
	// introspection answer), for the handler's claim mapping. Shared with
	// later requests presenting the same token: read, never modify.
	Claims map[string]any
	// Scopes are the token's scopes (scope or scp). Shared: read only.
	Scopes []string
	// Expiry is the token's exp; zero for an introspected token without
	// one.
	Expiry time.Time
	// DPoP reports whether the token is DPoP-bound and this request proved
	// possession of its key.
	DPoP bool
	// Introspected reports whether the token was verified by introspection
	// rather than as a JWT.
	Introspected bool

	// derived is shared by every request presenting the same token while
	// its verdict is cached (see Derived).
	derived *derivation
}

// derivation is what a handler made of a verified token's claims, made
// once.
type derivation struct {
	once  sync.Once
	value any
	err   error
}

// Derived returns what build makes of this principal, running build once
// per verified token and keeping the result with the token's cached
// verdict: a cached token's claims never change, so the handler's claim
// mapping need not run again on each of an API client's calls (it costs
// as much as the rest of a cache hit). build must depend only on the
// principal and the token itself, never on anything else in the request;
// its result is shared between concurrent requests and is read-only.
func (p *Principal) Derived(build func() (any, error)) (any, error) {
	if p.derived == nil {
		return build()
	}
	p.derived.once.Do(func() { p.derived.value, p.derived.err = build() })
	return p.derived.value, p.derived.err
}

// Verifier judges requests by their access token. Make it with
// NewVerifier; it is safe for concurrent use.
type Verifier struct {
	audiences     map[string]bool
	required      []string
	issuers       map[string]*trustedIssuer
	main          *trustedIssuer
	serverList    []string // authorization_servers: main issuer first
	introspection bool
	mode          dpopMode
	resource      string
	clientID      string
	clientSecret  string
	client        *http.Client

	tokens  *tokenCache
	proofs  *oidc.JTICache
	flights singleflight.Group
	now     func() time.Time
}

// NewVerifier makes a verifier for cfg (placeholders such as {env.*} in
// audiences, issuers and resource are replaced). It contacts no IdP: each
// issuer is discovered on first use, and again after a failure, so Caddy
// starts while an IdP is down.
func NewVerifier(cfg Config, idp IdP) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	repl := caddy.NewReplacer()
	resolve := func(in []string) []string {
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = repl.ReplaceKnown(s, "")
		}
		return out
	}
	// Validate again: only now are placeholders resolved.
	resolved := Config{
		Audiences:      resolve(cfg.Audiences),
		Issuers:        resolve(cfg.Issuers),
		ScopesRequired: cfg.ScopesRequired,
		DPoP:           cfg.DPoP,
		ATJWTIssuers:   resolve(cfg.ATJWTIssuers),
		Resource:       repl.ReplaceKnown(cfg.Resource, ""),
	}
	if err := resolved.Validate(); err != nil {
		return nil, err
	}
	if err := checkIssuerURL(idp.Issuer); err != nil || idp.Issuer == "" {
		return nil, fmt.Errorf("bearer: the handler's issuer %q is not an absolute http(s) URL", idp.Issuer)
	}
	if cfg.Introspection && idp.ClientSecret == "" {
		return nil, errors.New("bearer: introspection needs client_secret: the IdP authenticates introspection requests with this client's credentials")
	}
	client := idp.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	mode, _ := parseDPoPMode(cfg.DPoP)
	v := &Verifier{
		audiences:     map[string]bool{},
		required:      cfg.ScopesRequired,
		issuers:       map[string]*trustedIssuer{},
		introspection: cfg.Introspection,
		mode:          mode,
		resource:      resolved.Resource,
		clientID:      idp.ClientID,
		clientSecret:  idp.ClientSecret,
		client:        client,
		tokens:        newTokenCache(cacheEntries, cacheBytes),
		// A proof is accepted within proofWindow either side of its iat,
		// so it must be remembered for twice that.
		proofs: oidc.NewJTICache(2*proofWindow, proofJTIs),
		now:    time.Now,
	}
	for _, a := range resolved.Audiences {
		v.audiences[a] = true
	}
	for _, u := range append([]string{idp.Issuer}, resolved.Issuers...) {
		if v.issuers[u] == nil {
			v.issuers[u] = &trustedIssuer{url: u, client: client}
			v.serverList = append(v.serverList, u)
		}
	}
	v.main = v.issuers[idp.Issuer]
	for _, u := range resolved.ATJWTIssuers {
		t := v.issuers[u]
		if t == nil {
			return nil, fmt.Errorf("bearer: at_jwt_issuers: %s is neither the issuer nor one of issuers", u)
		}
		t.atJWT = true
	}
	return v, nil
}

// Verify judges r by its access token alone (the session cookie plays no
// part). It returns:
//
//   - ErrNoToken when r carries no access token: no Authorization header
//     with the Bearer or DPoP scheme and no access_token parameter;
//   - an *Error with the RFC 6750 / RFC 9449 answer (400, 401 or 403 and
//     the WWW-Authenticate values) when the token or the request is
//     refused; a token in the query string, or in a form body of a request
//     without cookies, is always refused (RFC 6750 allows both; they leak
//     into logs and caches);
//   - an error wrapping ErrUnavailable when an IdP cannot be reached;
//   - the Principal otherwise, shared by every request presenting the
//     same token while its verdict is cached: read it, never modify it.
//
// A JWT is verified once and its verdict cached by the token's hash
// until exp (+ Leeway); the DPoP proof and the scope check are done on
// every request.
func (v *Verifier) Verify(ctx context.Context, r *http.Request) (*Principal, error) {
	scheme, raw, err := credentials(r)
	if err != nil {
		if p, ok := err.(*problem); ok {
			return nil, v.answer(r, scheme, p)
		}
		return nil, err
	}
	p, err := v.verify(ctx, r, scheme, raw)
	if err != nil {
		if pr, ok := err.(*problem); ok {
			return nil, v.answer(r, scheme, pr)
		}
		return nil, err
	}
	return p, nil
}

func (v *Verifier) verify(ctx context.Context, r *http.Request, scheme, raw string) (*Principal, error) {
	isDPoP := scheme == schemeDPoP
	switch {
	case isDPoP && v.mode == dpopOff:
		return nil, invalidToken(nil, "the DPoP scheme is not accepted here; send Authorization: Bearer")
	case !isDPoP && v.mode == dpopRequired:
		return nil, dpopBinding("only DPoP-bound tokens are accepted here; send Authorization: DPoP with a proof")
	}
	now := v.now()
	verdict := v.tokens.get(raw, now)
	if verdict == nil {
		// Checked here rather than in credentials: a cached token passed
		// this check when it was first seen, and on every API call the
		// check would cost as much as the rest of a cache hit.
		if !isB64Token(raw) {
			return nil, invalidRequest("malformed Authorization header: want %s <token>, the token without spaces or commas", scheme)
		}
		var err error
		switch {
		case looksLikeJWT(raw):
			verdict, err = v.verifyJWT(ctx, raw, now)
		case v.introspection:
			verdict, err = v.introspect(ctx, raw)
		default:
			err = invalidToken(nil, "not a JWT, and introspection of opaque tokens is off")
		}
		if err != nil {
			return nil, err
		}
		v.tokens.put(raw, verdict)
	}

	switch {
	case verdict.jkt == "" && isDPoP:
		return nil, dpopBinding("token is not DPoP-bound (no cnf.jkt); send it with the Bearer scheme")
	case verdict.jkt == "" && v.mode == dpopRequired:
		return nil, dpopBinding("only DPoP-bound tokens are accepted here")
	case verdict.jkt != "" && v.mode == dpopOff:
		return nil, invalidToken(nil, "token is DPoP-bound (cnf.jkt) and DPoP is off here")
	case verdict.jkt != "" && !isDPoP:
		return nil, dpopBinding("token is DPoP-bound (cnf.jkt): send it with the DPoP scheme and a proof")
	case verdict.jkt != "":
		if err := v.checkProof(r, raw, verdict.jkt, now); err != nil {
			return nil, err
		}
	}
	if verdict.missing != "" {
		return nil, &problem{
			status: http.StatusForbidden,
			code:   CodeInsufficientScope,
			desc:   "token lacks a required scope",
			scope:  strings.Join(v.required, " "),
		}
	}
	return &verdict.principal, nil
}

// Authorization schemes Verify judges (RFC 9110: compared
// case-insensitively, so "bearer" is "Bearer").
const (
	schemeBearer = "Bearer"
	schemeDPoP   = "DPoP"
)

// credentials reads the access token from r: the Authorization header,
// exactly one, "Bearer <token>" or "DPoP <token>" (one or more spaces,
// then the token, whose b64token syntax verify checks). A token in the query string, or in
// the form body of a request without cookies, is refused with
// invalid_request.
func credentials(r *http.Request) (scheme, token string, err error) {
	if inQuery(r) {
		return "", "", invalidRequest("access tokens in the query string are refused (RFC 6750 allows it; they end up in logs): send Authorization: Bearer <token>")
	}
	if inForm(r) {
		return "", "", invalidRequest("access tokens in the form body are refused: send Authorization: Bearer <token>")
	}
	values := r.Header.Values("Authorization")
	for _, val := range values {
		if s := schemeOf(val); s != "" {
			scheme = s
			break
		}
	}
	switch {
	case scheme == "":
		return "", "", ErrNoToken // none, or Basic, say: not ours
	case len(values) > 1:
		return scheme, "", invalidRequest("more than one Authorization header")
	}
	_, rest, _ := strings.Cut(values[0], " ")
	token = strings.TrimLeft(rest, " ")
	switch {
	case token == "":
		return scheme, "", invalidRequest("no token after the %s scheme", scheme)
	case len(token) > maxTokenSize:
		return scheme, "", invalidToken(nil, "token too large")
	}
	return scheme, token, nil // its syntax is checked on a cache miss: see verify
}

// schemeOf returns the Bearer or DPoP scheme of an Authorization value,
// or "" for another scheme.
func schemeOf(value string) string {
	name, _, _ := strings.Cut(value, " ")
	switch {
	case strings.EqualFold(name, schemeBearer):
		return schemeBearer
	case strings.EqualFold(name, schemeDPoP):
		return schemeDPoP
	}
	return ""
}

// isB64Token reports whether s is a b64token (RFC 6750 section 2.1):
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		if !b64tokenChar[body[i]] {
			return false
		}
	}
	return true
}

// b64tokenChar is the b64token alphabet as a table.
var b64tokenChar = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
	}
	return t
}()

func inQuery(r *http.Request) bool {
	if !strings.Contains(r.URL.RawQuery, "access_token") {
		return false // the common case, without parsing
	}
	q, _ := url.ParseQuery(r.URL.RawQuery)
	return q.Has("access_token")
}

// inForm looks for an access_token parameter in an
// application/x-www-form-urlencoded body (its first maxFormPeek bytes,
// which are put back for the handlers after). Requests with cookies are
// not looked at: a browser's form may have a field of that name, and its
// request is judged by its session.
func inForm(r *http.Request) bool {
	switch r.Method { // first: it costs nothing, and most API calls are GETs
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	if r.Body == nil || r.Body == http.NoBody || r.Header.Get("Cookie") != "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return false
	}
	peek, err := io.ReadAll(io.LimitReader(r.Body, maxFormPeek))
	r.Body = readCloser{io.MultiReader(bytes.NewReader(peek), r.Body), r.Body}
	if err != nil || !bytes.Contains(peek, []byte("access_token")) {
		return false
	}
	q, _ := url.ParseQuery(string(peek))
	return q.Has("access_token")
}

type readCloser struct {
	io.Reader
	io.Closer
}

// answer turns a problem into the *Error for r: the DPoP challenge when
// the request used the DPoP scheme, the problem concerns DPoP or only DPoP
// is accepted; the Bearer challenge otherwise.
func (v *Verifier) answer(r *http.Request, scheme string, p *problem) *Error {
	e := &Error{Status: p.status, Code: p.code, Description: p.desc, cause: p.cause}
	if v.mode != dpopOff && (p.dpop || scheme == schemeDPoP || v.mode == dpopRequired) {
		e.Challenges = []string{challenge(schemeDPoP,
			"error", p.code, "error_description", p.desc, "scope", p.scope, "algs", strings.Join(algsParam, " "))}
	} else {
		e.Challenges = []string{challenge(schemeBearer,
			"realm", r.Host, "error", p.code, "error_description", p.desc, "scope", p.scope)}
	}
	return e
}
