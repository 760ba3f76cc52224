package oidc

import (
	"encoding/json"
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// ClientJWKS returns the JWKS document (RFC 7517) of the public halves of
// the client's private_key_jwt keys, in order (the signing key first, then
// the keys kept for rotation), for IdPs that fetch the client's keys from
// a jwks_uri (served at <prefix>/jwks.json). Each key has use "sig" and a
// kid: the configured one, else the key's RFC 7638 thumbprint. No private
// material is ever included. The document is public: serve it without
// authentication, cacheable.
func ClientJWKS(keys []*ClientKey) ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for i, k := range keys {
		jwk, err := k.publicJWK()
		if err != nil {
			return nil, fmt.Errorf("client key %d: %w", i+1, err)
		}
		set.Keys = append(set.Keys, jwk)
	}
	return json.Marshal(set)
}
