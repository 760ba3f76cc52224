package oidc

// Helpers for the tests against a real oidc-provider (internal/testidp).

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/internal/testidp"
)

// rpCallback is a stand-in for the relying party's callback.
func rpCallback(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("callback"))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/callback"
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// pemOf encodes key in the given PEM form: "pkcs8", "pkcs1" (RSA) or
// "sec1" (EC).
func pemOf(t *testing.T, key crypto.Signer, form string) string {
	t.Helper()
	var der []byte
	var typ string
	var err error
	switch form {
	case "pkcs8":
		der, err = x509.MarshalPKCS8PrivateKey(key)
		typ = "PRIVATE KEY"
	case "pkcs1":
		der, typ = x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey)), "RSA PRIVATE KEY"
	case "sec1":
		der, err = x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
		typ = "EC PRIVATE KEY"
	default:
		t.Fatalf("unknown PEM form %q", form)
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func newECKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// clientKeys loads each signer through LoadClientKey (PKCS#8 PEM).
func clientKeys(t *testing.T, signers ...crypto.Signer) []*ClientKey {
	t.Helper()
	var keys []*ClientKey
	for _, s := range signers {
		k, err := LoadClientKey(pemOf(t, s, "pkcs8"), "")
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	return keys
}

func mustJWKS(t *testing.T, keys []*ClientKey) []byte {
	t.Helper()
	b, err := ClientJWKS(keys)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rpLogin is one login through the library against op: LoginURL (with
// prompt=consent so offline_access yields a refresh token), the Go login
// driver, the iss check and Exchange with userinfo. With dpop the flow
// gets a fresh DPoP key, which it returns.
type rpLogin struct {
	tokens *Tokens
	flow   *Flow
	// authURL is where the browser was sent.
	authURL string
}

func loginVia(t *testing.T, op *testidp.OIDCProvider, p *Provider, redirectURI string, dpop bool) (*rpLogin, error) {
	t.Helper()
	ctx := testCtx(t)
	d, err := p.Discover(ctx)
	if err != nil {
		return nil, err
	}
	f := NewFlow("/", true)
	if dpop {
		if f.DPoP, err = NewDPoPKey(); err != nil {
			t.Fatal(err)
		}
	}
	authURL, err := p.PushAuthorization(WithDPoPKey(ctx, f.DPoP), d, d.AuthCodeURL(f, redirectURI, url.Values{"prompt": {"consent"}}))
	if err != nil {
		return nil, err
	}
	resp, err := op.Login(testidp.NewBrowserClient(), authURL)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	code, state, err := testidp.CodeFromResponse(resp)
	if err != nil {
		return nil, err
	}
	if !f.Matches(state) {
		t.Fatalf("state %q is not the flow's", state)
	}
	q := resp.Request.URL.Query()
	if err := d.CheckIssuer(q.Get("iss"), q.Has("iss")); err != nil {
		t.Fatalf("CheckIssuer on the OP's own response: %v", err)
	}
	tokens, err := p.Exchange(WithDPoPKey(ctx, f.DPoP), d, f, code, redirectURI)
	if err != nil {
		return nil, err
	}
	return &rpLogin{tokens: tokens, flow: f, authURL: authURL}, nil
}

// scopes for every test login: offline_access for refresh tokens, email
// for a claim only userinfo has.
var testScopes = []string{"openid", "email", "profile", "offline_access"}

func newTestProvider(op *testidp.OIDCProvider, client testidp.OPClient, edit func(*Config)) *Provider {
	cfg := Config{Issuer: op.Issuer, ClientID: client.ID, ClientSecret: client.Secret, Scopes: testScopes}
	if edit != nil {
		edit(&cfg)
	}
	return NewProvider(cfg)
}

// recorder is a transport that notes every IdP response (method, path,
// status), under the IdP transport.
type recorder struct {
	mu   sync.Mutex
	hits []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil {
		r.mu.Lock()
		r.hits = append(r.hits, req.Method+" "+req.URL.Path+" "+http.StatusText(resp.StatusCode))
		r.mu.Unlock()
	}
	return resp, err
}

// calls lists the recorded calls but discovery and JWKS fetches.
func (r *recorder) calls() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, h := range r.hits {
		if !strings.Contains(h, "/.well-known/") && !strings.Contains(h, " /jwks ") {
			out = append(out, h)
		}
	}
	return strings.Join(out, ", ")
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hits = nil
}
