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

// logoutKeys holds the IdP's signing keys for verifying logout tokens.
// Unlike ID tokens, which arrive from the IdP's token endpoint, a logout
// token can be sent by anyone who reaches the back-channel endpoint, and
// go-oidc's key set fetches the JWKS again for every token it cannot verify.
// Here a token is verified with the keys in hand: a known key ID with a bad
// signature is refused outright, and only a key ID not among the keys may
// cause a new fetch, at most once per interval and only when the caller's
// KeyFetch allows it. The IdP's own token signed with a new key then
// verifies after one fetch; a flood of forged key IDs costs the IdP one
// request per interval at most.
type logoutKeys struct {
	url      string
	client   *http.Client
	interval time.Duration

	mu      sync.Mutex // held during a fetch, so fetches never overlap
	set     []jose.JSONWebKey
	tried   time.Time // last fetch attempt
	fetched time.Time // last successful fetch
}

func newLogoutKeys(url string, client *http.Client, interval time.Duration) *logoutKeys {
	if interval <= 0 {
		interval = DefaultKeyRefetchInterval
	}
	return &logoutKeys{url: url, client: client, interval: interval}
}

// verify checks the signature of a compact JWS with one of the IdP's keys
// and returns its payload. algs are the algorithms accepted.
func (k *logoutKeys) verify(ctx context.Context, raw string, algs []jose.SignatureAlgorithm, mayFetch KeyFetch) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, algs)
	if err != nil {
		return nil, refuse("not a JWS with an accepted algorithm: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, refuse("not exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	keys, err := k.keys(ctx, false)
	if err != nil {
		return nil, err
	}
	payload, known := verifyWith(jws, keys, kid)
	switch {
	case payload != nil:
		return payload, nil
	case known:
		return nil, refuse("signature does not verify with the IdP's key %q", safeAlg(kid))
	}
	// A key this instance has not seen. Fetched moments ago, the keys are
	// the IdP's current ones: the token is not the IdP's. Otherwise the IdP
	// may have rotated its keys since.
	if k.fresh() {
		return nil, refuse("signed with a key the IdP does not publish")
	}
	if mayFetch != nil && !mayFetch() {
		return nil, fmt.Errorf("%w: logout token names a key this instance does not have, and this client may not make it fetch the keys again now", ErrUnavailable)
	}
	if keys, err = k.keys(ctx, true); err != nil {
		return nil, err
	}
	if payload, _ := verifyWith(jws, keys, kid); payload != nil {
		return payload, nil
	}
	return nil, refuse("signed with a key the IdP does not publish")
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
// again, anew. A fetch is attempted at most once per interval: within it, a
// failed attempt is reported as unavailable (the caller retries later).
func (k *logoutKeys) keys(ctx context.Context, again bool) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.set != nil && !again {
		return k.set, nil
	}
	if time.Since(k.tried) < k.interval {
		if k.set != nil {
			return k.set, nil
		}
		return nil, fmt.Errorf("%w: the IdP's keys could not be fetched less than %s ago", ErrUnavailable, k.interval)
	}
	k.tried = time.Now()
	set, err := k.fetch(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: fetching the IdP's keys: %w", ErrUnavailable, err)
	}
	k.set, k.fetched = set, k.tried
	return set, nil
}

// fresh reports whether the keys in hand were fetched within the interval.
func (k *logoutKeys) fresh() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.set != nil && time.Since(k.fetched) < k.interval
}

func (k *logoutKeys) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
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
