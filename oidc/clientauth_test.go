package oidc

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/oidc-session/oidc_session/internal/testidp"
)

func TestPrivateKeyJWTLoginAndRefresh(t *testing.T) {
	redirectURI := rpCallback(t)
	for _, c := range []struct {
		name    string
		signers func() []*ClientKey
		alg     string // what the OP is told to insist on
	}{
		// The EC key signs; the RSA key is published for rotation.
		{"ES256 with a second key", func() []*ClientKey { return clientKeys(t, newECKey(t), newRSAKey(t)) }, "ES256"},
		// RSA: PS256, as the OP advertises it.
		{"PS256", func() []*ClientKey { return clientKeys(t, newRSAKey(t)) }, "PS256"},
	} {
		t.Run(c.name, func(t *testing.T) {
			keys := c.signers()
			op := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{
				RedirectURIs:         []string{redirectURI},
				ClientJWKS:           mustJWKS(t, keys),
				ClientAuthSigningAlg: c.alg,
			})
			p := newTestProvider(op, op.Key, func(cfg *Config) { cfg.ClientKeys = keys })
			l, err := loginVia(t, op, p, redirectURI, false)
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			d, _ := p.Discover(testCtx(t))
			if d.Security.ClientAuth != PrivateKeyJWT {
				t.Errorf("client auth = %q, want private_key_jwt (auto with a key)", d.Security.ClientAuth)
			}
			if l.tokens.Claims["email"] != op.User.Email {
				t.Errorf("claims %v lack the userinfo email", l.tokens.Claims)
			}
			if l.tokens.RefreshToken == "" {
				t.Fatal("no refresh token")
			}
			r, err := p.Refresh(testCtx(t), d, l.tokens.RefreshToken, "")
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if r.AccessToken == "" || r.AccessToken == l.tokens.AccessToken {
				t.Error("refresh gave no new access token")
			}
		})
	}
}

func TestLoadClientKeyFormats(t *testing.T) {
	rsaKey, ecKey := newRSAKey(t), newECKey(t)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, []byte(pemOf(t, ecKey, "sec1")), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		source string
		alg    string
	}{
		"RSA PKCS#8":     {pemOf(t, rsaKey, "pkcs8"), "RS256"},
		"RSA PKCS#1":     {pemOf(t, rsaKey, "pkcs1"), "RS256"},
		"EC PKCS#8":      {pemOf(t, ecKey, "pkcs8"), "ES256"},
		"EC SEC 1":       {pemOf(t, ecKey, "sec1"), "ES256"},
		"EC from a file": {path, "ES256"},
		"Ed25519":        {pemOf(t, edKey, "pkcs8"), "EdDSA"},
	} {
		k, err := LoadClientKey(c.source, "kid-1")
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := k.algorithm(nil, false); string(got) != c.alg {
			t.Errorf("%s: algorithm %s, want %s", name, got, c.alg)
		}
		if k.KeyID() != "kid-1" {
			t.Errorf("%s: kid %q", name, k.KeyID())
		}
	}

	pubDER, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	p224DER, _ := x509.MarshalECPrivateKey(p224)
	block := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	for name, c := range map[string]struct{ source, want string }{
		"not PEM":       {"-----BEGIN nonsense", "no PEM block"},
		"missing file":  {filepath.Join(t.TempDir(), "absent.pem"), "no such file"},
		"public key":    {block("PUBLIC KEY", pubDER), "is not a private key"},
		"certificate":   {block("CERTIFICATE", []byte{1}), "is not a private key"},
		"encrypted":     {block("ENCRYPTED PRIVATE KEY", []byte{1}), "encrypted"},
		"unknown type":  {block("OPENSSH PRIVATE KEY", []byte{1}), "not a supported private key"},
		"corrupt DER":   {block("PRIVATE KEY", []byte{1, 2, 3}), "PRIVATE KEY block"},
		"wrong label":   {block("EC PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), "EC PRIVATE KEY block"},
		"RSA 1024 bits": {pemOf(t, small, "pkcs1"), "at least 2048"},
		"P-224":         {block("EC PRIVATE KEY", p224DER), "P-224 not supported"},
	} {
		_, err := LoadClientKey(c.source, "")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "client_key: ") {
			t.Errorf("%s: err = %v, want a client_key error containing %q", name, err, c.want)
		}
	}
}

func TestChooseClientAuth(t *testing.T) {
	key := clientKeys(t, newECKey(t))
	for _, c := range []struct {
		name       string
		cfg        Config
		advertised []string
		want       ClientAuthMethod
	}{
		{"key, IdP lists it", Config{ClientKeys: key, ClientSecret: "s"}, []string{"client_secret_basic", "private_key_jwt"}, PrivateKeyJWT},
		{"key and secret, IdP lists only secrets", Config{ClientKeys: key, ClientSecret: "s"}, []string{"client_secret_post"}, ClientSecretPost},
		{"key only, IdP lists nothing", Config{ClientKeys: key}, nil, PrivateKeyJWT},
		{"secret, basic listed", Config{ClientSecret: "s"}, []string{"client_secret_post", "client_secret_basic"}, ClientSecretBasic},
		{"secret, nothing listed", Config{ClientSecret: "s"}, nil, ClientSecretBasic},
		{"nothing", Config{}, []string{"client_secret_basic"}, ClientAuthNone},
		{"explicit wins", Config{ClientAuth: ClientSecretPost, ClientSecret: "s", ClientKeys: key}, []string{"private_key_jwt"}, ClientSecretPost},
	} {
		if got := chooseClientAuth(&c.cfg, c.advertised, nil).method; got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestConfigCheck(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{ClientID: "c", ClientAuth: PrivateKeyJWT}, "private_key_jwt needs client_key"},
		{Config{ClientID: "c", ClientAuth: ClientSecretBasic}, "client_secret_basic needs client_secret"},
		{Config{ClientID: "c", ClientAuth: ClientAuthNone, ClientSecret: "s"}, "a public client has neither"},
		{Config{ClientID: "c", ClientAuth: "tls_client_auth"}, "want client_secret_basic"},
		{Config{ClientID: "c", PAR: "sometimes"}, "par \"sometimes\""},
		{Config{ClientID: "c", DPoP: "yes"}, "dpop \"yes\""},
		{Config{ClientID: "c", Profile: "fapi1"}, "want fapi2"},
		{Config{}, "client_id is required"},
	} {
		err := c.cfg.Check()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want %q", c.cfg, err, c.want)
		}
	}
	if err := (&Config{ClientID: "c", ClientKeys: clientKeys(t, newECKey(t)), PAR: PAROn, DPoP: DPoPOn}).Check(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

// TestPrivateKeyJWTKeyNotRegistered: an assertion signed with a key the
// IdP does not know is a refusal by the IdP (invalid_client), not an
// unavailable IdP and not a session.
func TestPrivateKeyJWTKeyNotRegistered(t *testing.T) {
	redirectURI := rpCallback(t)
	op := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{
		RedirectURIs: []string{redirectURI},
		ClientJWKS:   mustJWKS(t, clientKeys(t, newECKey(t))),
	})
	p := newTestProvider(op, op.Key, func(cfg *Config) { cfg.ClientKeys = clientKeys(t, newECKey(t)) })
	_, err := loginVia(t, op, p, redirectURI, false)
	if err == nil || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("err = %v, want an invalid_client refusal", err)
	}
}

// TestPrivateKeyJWTJWKSURI: the IdP fetches the client's keys from the
// document ClientJWKS makes; when it cannot fetch them, the token request
// fails with the IdP's refusal, which names client authentication.
func TestPrivateKeyJWTJWKSURI(t *testing.T) {
	redirectURI := rpCallback(t)
	keys := clientKeys(t, newECKey(t))
	doc := mustJWKS(t, keys)
	var fetches atomic.Int32
	broken := atomic.Bool{}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if broken.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(doc)
	}))
	t.Cleanup(jwks.Close)

	op := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{RedirectURIs: []string{redirectURI}, ClientJWKSURI: jwks.URL + "/jwks.json"})
	p := newTestProvider(op, op.Key, func(cfg *Config) { cfg.ClientKeys = keys })
	if _, err := loginVia(t, op, p, redirectURI, false); err != nil {
		t.Fatalf("login with keys from jwks_uri: %v", err)
	}
	if fetches.Load() == 0 {
		t.Fatal("the IdP never fetched the jwks_uri")
	}

	// A new IdP (no cached keys) whose fetch fails.
	broken.Store(true)
	op2 := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{RedirectURIs: []string{redirectURI}, ClientJWKSURI: jwks.URL + "/jwks.json"})
	p2 := newTestProvider(op2, op2.Key, func(cfg *Config) { cfg.ClientKeys = keys })
	_, err := loginVia(t, op2, p2, redirectURI, false)
	if err == nil || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("err = %v, want the IdP's invalid_client", err)
	}
	t.Logf("IdP that cannot fetch the jwks_uri: %v", err)
}
