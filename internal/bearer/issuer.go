package bearer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

const (
	// discoveryRetry is the shortest wait between two failed discovery or
	// JWKS attempts, so a down IdP is not hammered by every request.
	discoveryRetry = 2 * time.Second
	// keyRefetchInterval is the shortest wait between two JWKS fetches
	// made because a token names a key we do not have. Without it anyone
	// could make every request fetch the IdP's JWKS by sending tokens with
	// made-up key ids (go-oidc's remote key set has no such limit, which is
	// why keys are kept here).
	keyRefetchInterval = 10 * time.Second
	// maxMetadataSize bounds what is read from a JWKS.
	maxMetadataSize = 1 << 20
)

// trustedIssuer is one issuer whose tokens are accepted, discovered on
// first use and again after a failure (not more often than
// discoveryRetry).
type trustedIssuer struct {
	url    string
	atJWT  bool // RFC 9068: its JWTs must have typ at+jwt
	client *http.Client

	ready atomic.Pointer[issuerMeta]
	keys  atomic.Pointer[[]jose.JSONWebKey]

	mu        sync.Mutex // serialises discovery and key fetches
	lastTry   time.Time
	lastErr   error
	keysTried time.Time // last JWKS fetch attempt
	keysErr   error     // its error, nil after a success
}

// issuerMeta is what discovery yields.
type issuerMeta struct {
	jwksURI       string
	introspection string // "" when not advertised
	// introspectBasic authenticates at the introspection endpoint with
	// HTTP Basic (client_secret_basic) rather than form fields.
	introspectBasic bool
}

// meta returns the discovered metadata, discovering now if needed.
func (t *trustedIssuer) meta(ctx context.Context) (*issuerMeta, error) {
	if m := t.ready.Load(); m != nil {
		return m, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.metaLocked(ctx)
}

func (t *trustedIssuer) metaLocked(ctx context.Context) (*issuerMeta, error) {
	if m := t.ready.Load(); m != nil {
		return m, nil
	}
	if t.lastErr != nil && time.Since(t.lastTry) < discoveryRetry {
		return nil, t.lastErr
	}
	t.lastTry = time.Now()
	// Not the request's cancellation: a client that hangs up must not
	// make every request fail until the next attempt.
	m, err := t.discover(context.WithoutCancel(ctx))
	if err != nil {
		t.lastErr = fmt.Errorf("%w: discovery of %s: %v", ErrUnavailable, t.url, err)
		return nil, t.lastErr
	}
	t.lastErr = nil
	t.ready.Store(m)
	return m, nil
}

func (t *trustedIssuer) discover(ctx context.Context) (*issuerMeta, error) {
	// go-oidc checks that the document names this very issuer.
	gp, err := gooidc.NewProvider(gooidc.ClientContext(ctx, t.client), t.url)
	if err != nil {
		return nil, err
	}
	var doc struct {
		JWKSURI                  string   `json:"jwks_uri"`
		Introspection            string   `json:"introspection_endpoint"`
		IntrospectionAuthMethods []string `json:"introspection_endpoint_auth_methods_supported"`
		TokenEndpointAuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := gp.Claims(&doc); err != nil {
		return nil, err
	}
	if doc.JWKSURI == "" {
		return nil, errors.New("discovery document has no jwks_uri")
	}
	methods := doc.IntrospectionAuthMethods
	if methods == nil {
		methods = doc.TokenEndpointAuthMethods
	}
	return &issuerMeta{
		jwksURI:         doc.JWKSURI,
		introspection:   doc.Introspection,
		introspectBasic: basicAuth(methods),
	}, nil
}

// basicAuth reports whether to authenticate with HTTP Basic: yes unless
// the IdP advertises client_secret_post and not client_secret_basic
// (RFC 8414 makes client_secret_basic the default).
func basicAuth(methods []string) bool {
	post := false
	for _, m := range methods {
		switch m {
		case "client_secret_basic":
			return true
		case "client_secret_post":
			post = true
		}
	}
	return !post
}

// signingKeys returns the issuer's keys that may have signed a token with
// this kid ("" matches every key) and alg. A kid we do not know makes the
// JWKS be fetched again, at most every keyRefetchInterval. An empty result
// with a nil error means no such key; an error means the keys could not
// be fetched (ErrUnavailable).
func (t *trustedIssuer) signingKeys(ctx context.Context, kid, alg string) ([]jose.JSONWebKey, error) {
	if keys := t.keys.Load(); keys != nil {
		if match := matchKeys(*keys, kid, alg); len(match) > 0 {
			return match, nil
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := t.keys.Load()
	if keys != nil {
		if match := matchKeys(*keys, kid, alg); len(match) > 0 {
			return match, nil // fetched while we waited
		}
	}
	wait := keyRefetchInterval
	if t.keysErr != nil || keys == nil {
		wait = discoveryRetry
	}
	if !t.keysTried.IsZero() && time.Since(t.keysTried) < wait {
		if keys == nil {
			return nil, t.keysErr
		}
		return nil, nil
	}
	m, err := t.metaLocked(ctx)
	if err != nil {
		return nil, err
	}
	t.keysTried = time.Now()
	fetched, err := t.fetchKeys(context.WithoutCancel(ctx), m.jwksURI)
	if err != nil {
		t.keysErr = fmt.Errorf("%w: JWKS of %s: %v", ErrUnavailable, t.url, err)
		return nil, t.keysErr
	}
	t.keysErr = nil
	t.keys.Store(&fetched)
	return matchKeys(fetched, kid, alg), nil
}

// fetchKeys reads the JWKS, keeping the public signature keys. A key that
// does not parse (an unknown kty, say) is skipped rather than failing the
// whole set.
func (t *trustedIssuer) fetchKeys(ctx context.Context, jwksURI string) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwksURI, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", jwksURI, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxMetadataSize {
		return nil, fmt.Errorf("%s: JWKS larger than %d bytes", jwksURI, maxMetadataSize)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("%s: not a JWKS: %v", jwksURI, err)
	}
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if json.Unmarshal(raw, &k) != nil || !k.Valid() || !k.IsPublic() || k.Use == "enc" {
			continue
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func matchKeys(keys []jose.JSONWebKey, kid, alg string) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, k := range keys {
		if (kid == "" || k.KeyID == kid) && (k.Algorithm == "" || k.Algorithm == alg) {
			out = append(out, k)
		}
	}
	return out
}
