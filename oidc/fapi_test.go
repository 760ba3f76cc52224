package oidc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/oidc-session/oidc_session/internal/testidp"
)

func TestApplyFAPI2(t *testing.T) {
	keys := clientKeys(t, newECKey(t))
	cfg := Config{ClientID: "c", ClientKeys: keys}
	if err := ApplyFAPI2(&cfg, true, true); err != nil {
		t.Fatal(err)
	}
	if cfg.Profile != ProfileFAPI2 || cfg.ClientAuth != PrivateKeyJWT || cfg.PAR != PAROn || cfg.DPoP != DPoPOn {
		t.Errorf("after ApplyFAPI2: %+v", cfg)
	}
	if err := cfg.Check(); err != nil {
		t.Errorf("Check after ApplyFAPI2: %v", err)
	}

	bad := Config{ClientID: "c", ClientSecret: "s", ClientAuth: ClientSecretBasic, PAR: PAROff, DPoP: DPoPOff}
	err := ApplyFAPI2(&bad, false, false)
	for _, want := range []string{"client_auth client_secret_basic", "no client_key", "client_secret is set", "par off", "dpop off", "disable_pkce", "iss check"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ApplyFAPI2 error %v lacks %q", err, want)
		}
	}
	if bad.Profile != ProfileNone || bad.PAR != PAROff {
		t.Error("a refused config was changed")
	}

	// A P-384 key would sign ES384, which FAPI 2.0 does not allow.
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	strong := Config{ClientID: "c", ClientKeys: clientKeys(t, p384)}
	if err := ApplyFAPI2(&strong, true, true); err == nil || !strings.Contains(err.Error(), "signs ES384") {
		t.Errorf("P-384 client key under fapi2: %v", err)
	}
}

// TestFAPI2AgainstOIDCProvider: under profile fapi2 a login and refresh
// work against oidc-provider in its FAPI 2.0 mode, which itself insists on
// PAR, PKCE, private_key_jwt with aud = issuer, sender-constrained tokens
// and the iss parameter; ID tokens signed PS256 or ES256 are accepted.
func TestFAPI2AgainstOIDCProvider(t *testing.T) {
	redirectURI := rpCallback(t)
	for _, alg := range []string{"PS256", "ES256"} {
		keys := clientKeys(t, newRSAKey(t))
		op := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{
			RedirectURIs: []string{redirectURI}, ClientJWKS: mustJWKS(t, keys), FAPI2: true, IDTokenSigningAlg: alg,
		})
		p := newTestProvider(op, op.Key, func(cfg *Config) {
			cfg.ClientKeys = keys
			if err := ApplyFAPI2(cfg, true, true); err != nil {
				t.Fatal(err)
			}
		})
		l, err := loginVia(t, op, p, redirectURI, true)
		if err != nil {
			t.Fatalf("%s: login: %v", alg, err)
		}
		if !pushed(t, l.authURL) || l.tokens.TokenType != "DPoP" {
			t.Errorf("%s: pushed %v, token type %q", alg, pushed(t, l.authURL), l.tokens.TokenType)
		}
		d, _ := p.Discover(testCtx(t))
		if _, err := p.Refresh(WithDPoPKey(testCtx(t), l.flow.DPoP), d, l.tokens.RefreshToken, ""); err != nil {
			t.Fatalf("%s: refresh: %v", alg, err)
		}
	}
}

// TestFAPI2RefusesWeakIdPs: ID tokens signed RS256 are refused under the
// profile even though the IdP also lists stronger algorithms; an IdP
// without PAR fails discovery with a message naming it.
func TestFAPI2RefusesWeakIdPs(t *testing.T) {
	redirectURI := rpCallback(t)
	keys := clientKeys(t, newECKey(t))
	fapi := func(cfg *Config) {
		cfg.ClientKeys = keys
		if err := ApplyFAPI2(cfg, true, true); err != nil {
			t.Fatal(err)
		}
	}
	rs256 := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{RedirectURIs: []string{redirectURI}, ClientJWKS: mustJWKS(t, keys)})
	_, err := loginVia(t, rs256, newTestProvider(rs256, rs256.Key, fapi), redirectURI, true)
	if err == nil || !strings.Contains(err.Error(), "ID token rejected") || !strings.Contains(err.Error(), "RS256") {
		t.Errorf("RS256 ID token under fapi2: %v", err)
	}

	noPAR := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{RedirectURIs: []string{redirectURI}, ClientJWKS: mustJWKS(t, keys), DisablePAR: true, DisableDPoP: true})
	_, err = newTestProvider(noPAR, noPAR.Key, fapi).Discover(testCtx(t))
	for _, want := range []string{"profile fapi2", "pushed_authorization_request_endpoint", "dpop_signing_alg_values_supported"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("discovery of an IdP without PAR and DPoP under fapi2: %v; want %q", err, want)
		}
	}
}

func TestCheckIssuer(t *testing.T) {
	redirectURI := rpCallback(t)
	op := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{RedirectURIs: []string{redirectURI}})
	d, err := newTestProvider(op, op.Basic, nil).Discover(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.CheckIssuer(op.Issuer, true); err != nil {
		t.Errorf("own issuer: %v", err)
	}
	for name, c := range map[string]struct {
		iss     string
		present bool
	}{
		"other issuer":   {"https://evil.example", true},
		"trailing slash": {op.Issuer + "/", true},
		"empty":          {"", true},
		"missing":        {"", false}, // the IdP advertises RFC 9207
	} {
		if err := d.CheckIssuer(c.iss, c.present); !errors.Is(err, ErrIssuerMismatch) {
			t.Errorf("%s: %v, want ErrIssuerMismatch", name, err)
		}
	}
	// An IdP without RFC 9207 may omit it.
	p := fakePARIdP(t, 201, `{}`)
	d, err = p.Discover(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.CheckIssuer("", false); err != nil {
		t.Errorf("missing iss from an IdP without RFC 9207: %v", err)
	}
}

func TestClientJWKS(t *testing.T) {
	ec, rsa := newECKey(t), newRSAKey(t)
	named, err := LoadClientKey(pemOf(t, ec, "sec1"), "key-2026")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := ClientJWKS(append([]*ClientKey{named}, clientKeys(t, rsa)...))
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 || set.Keys[0]["kid"] != "key-2026" || set.Keys[0]["kty"] != "EC" || set.Keys[1]["kty"] != "RSA" {
		t.Fatalf("JWKS %s", doc)
	}
	if kid, _ := set.Keys[1]["kid"].(string); len(kid) != 43 {
		t.Errorf("unnamed key's kid %q, want its SHA-256 thumbprint", kid)
	}
	for _, k := range set.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if _, ok := k[private]; ok {
				t.Errorf("JWKS leaks private member %q", private)
			}
		}
		if k["use"] != "sig" {
			t.Errorf("use = %v", k["use"])
		}
	}
	if doc, _ := ClientJWKS(nil); string(doc) != `{"keys":[]}` {
		t.Errorf("empty JWKS %s", doc)
	}
}
