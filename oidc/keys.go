package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// KeyFetch says whether a logout token may make the IdP's keys be fetched
// again (the handler limits this per client address). nil allows it.
type KeyFetch func() bool

// DefaultKeyRefetchInterval is the shortest time between two fetches of
// the IdP's keys for logout tokens, whoever asks.
const DefaultKeyRefetchInterval = 5 * time.Second

// maxJWKSSize bounds a JWKS document read from the IdP.
const maxJWKSSize = 1 << 20

// keyCache holds the IdP's signing keys, for ID tokens and logout tokens.
// A token is verified with the keys in hand: a known key ID with a bad
// signature is refused outright, and only a key ID not among them makes
// the keys be fetched again, at most once per interval and, for logout
// tokens (which anyone can send to the back-channel endpoint), only when
// the caller's KeyFetch allows it. A token the keys cannot be checked for
// now (the interval not over, the fetch refused or failed) is put off with
// ErrUnavailable, never refused: the IdP's retry, or the user's next try,
// works once the keys are in. The IdP's own token signed with a new key
// verifies after one fetch; a flood of forged key IDs costs the IdP one
// request per interval at most. (go-oidc's key set fetches again for every
// token it cannot verify, and its errors do not say when a fetch failed.)
type keyCache struct {
	url      string
	client   *http.Client
	interval time.Duration

	mu    sync.Mutex // held during a fetch, so fetches never overlap
	set   []jose.JSONWebKey
	tried time.Time // last fetch attempt
}

func newKeyCache(url string, client *http.Client, interval time.Duration) *keyCache {
	if interval <= 0 {
		interval = DefaultKeyRefetchInterval
	}
	return &keyCache{url: url, client: client, interval: interval}
}

// verify checks the signature of a compact JWS with one of the IdP's keys
// and returns its payload. algs are the algorithms accepted.
//
// fromIdP marks a token that came from the IdP's token endpoint (an ID
// token), not from whoever reached one of the plugin's endpoints: an
// unknown key there is the IdP's new key, fetched whatever the interval.
func (k *keyCache) verify(ctx context.Context, raw string, algs []jose.SignatureAlgorithm, mayFetch KeyFetch, fromIdP bool) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, algs)
	if err != nil {
		return nil, keyRefusal("not a JWS with an accepted algorithm: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, keyRefusal("not exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	keys, fetchedNow, err := k.keys(ctx, false, fromIdP)
	if err != nil {
		return nil, err
	}
	payload, known := verifyWith(jws, keys, kid)
	switch {
	case payload != nil:
		return payload, nil
	case known:
		return nil, keyRefusal("signature does not verify with the IdP's key %q", safeAlg(kid))
	case fetchedNow:
		return nil, keyRefusal("signed with a key the IdP does not publish")
	}
	// A key this instance has not seen: the IdP may have rotated its keys.
	if mayFetch != nil && !mayFetch() {
		return nil, fmt.Errorf("%w: the token names a key this instance does not have, and this client may not make it fetch the keys again now", ErrUnavailable)
	}
	if keys, _, err = k.keys(ctx, true, fromIdP); err != nil {
		return nil, err
	}
	if payload, _ := verifyWith(jws, keys, kid); payload != nil {
		return payload, nil
	}
	return nil, keyRefusal("signed with a key the IdP does not publish")
}

// verifyWith tries the keys of kid (every signing key when kid is empty).
// known reports whether the key set has a key of that ID at all.
func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid string) (payload []byte, known bool) {
	for i := range keys {
		key := &keys[i]
		if key.Use == "enc" || (kid != "" && key.KeyID != kid) {
			continue
		}
		known = kid != ""
		if p, err := jws.Verify(key); err == nil {
			return p, true
		}
	}
	return nil, known
}

// keys returns the key set, fetching it when there is none yet or, with
// again, anew; fetchedNow says this call fetched it. A fetch is attempted
// at most once per interval: asked again within it, keys answers
// unavailable (the caller retries later), for the keys in hand may be the
// ones the IdP has just replaced.
func (k *keyCache) keys(ctx context.Context, again, anyway bool) (keys []jose.JSONWebKey, fetchedNow bool, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.set != nil && !again {
		return k.set, false, nil
	}
	if !anyway && time.Since(k.tried) < k.interval {
		return nil, false, fmt.Errorf("%w: the IdP's keys were fetched (or tried) less than %s ago; retry", ErrUnavailable, k.interval)
	}
	k.tried = time.Now()
	set, err := k.fetch(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("%w: fetching the IdP's keys: %w", ErrUnavailable, err)
	}
	k.set = set
	return set, true, nil
}

func (k *keyCache) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	if k.url == "" {
		return nil, errors.New("the discovery document has no jwks_uri")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks_uri answered %s", resp.Status)
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJWKSSize)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("jwks_uri: %w", err)
	}
	// Keys of types go-jose does not know (or that do not parse) are left
	// out rather than failing the whole set, as go-oidc does for ID tokens.
	keys := []jose.JSONWebKey{}
	for _, raw := range doc.Keys {
		var key jose.JSONWebKey
		if json.Unmarshal(raw, &key) == nil && key.Valid() {
			keys = append(keys, key)
		}
	}
	return keys, nil
}

// idTokenKeys verifies ID token signatures for go-oidc's verifier with the
// key cache, and notes a failure to fetch the keys in the context (see
// withKeyFailure): go-oidc keeps only the message of the key set's error.
type idTokenKeys struct {
	cache *keyCache
	algs  []jose.SignatureAlgorithm
	// fromIdP: the tokens come from the IdP's token endpoint (see verify).
	fromIdP bool
}

func (s idTokenKeys) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, err := s.cache.verify(ctx, jwt, s.algs, nil, s.fromIdP)
	if errors.Is(err, ErrUnavailable) {
		if failure, ok := ctx.Value(keyFailureKey{}).(*error); ok {
			*failure = err
		}
	}
	return payload, err
}

type keyFailureKey struct{}

// withKeyFailure returns a context in which idTokenKeys records why the
// keys could not be had.
func withKeyFailure(ctx context.Context) (context.Context, *error) {
	failure := new(error)
	return context.WithValue(ctx, keyFailureKey{}, failure), failure
}

// errSignature wraps the key cache's refusals: the token's signature is not
// the IdP's.
var errSignature = errors.New("signature not the IdP's")

func keyRefusal(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errSignature, fmt.Sprintf(format, args...))
}
