package oidc

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/oidc-session/oidc_session/internal/testidp"
)

// introspect asks the IdP about an access token as op-basic.
func introspect(t *testing.T, op *testidp.OIDCProvider, token string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, op.Issuer+"/token/introspection", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(op.Basic.ID, op.Basic.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// userinfoStatus GETs the userinfo endpoint with authz as the
// Authorization header and the given DPoP header ("" for none).
func userinfoStatus(t *testing.T, op *testidp.OIDCProvider, authz, proof string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, op.Issuer+"/me", nil)
	req.Header.Set("Authorization", authz)
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestDPoPBoundTokens: with dpop on, the code exchange, userinfo and
// refresh carry proofs of the flow's key; the IdP binds the tokens to it
// (token_type DPoP, cnf.jkt the key's thumbprint), so the access token is
// refused as a Bearer token or with another key's proof.
func TestDPoPBoundTokens(t *testing.T) {
	redirectURI := rpCallback(t)
	op := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{RedirectURIs: []string{redirectURI}, Introspection: true, RequireDPoP: true})
	for _, par := range []PARMode{PAROn, PAROff} {
		p := newTestProvider(op, op.Basic, func(cfg *Config) { cfg.DPoP, cfg.PAR = DPoPOn, par })
		l, err := loginVia(t, op, p, redirectURI, true)
		if err != nil {
			t.Fatalf("par %s: %v", par, err)
		}
		key := l.flow.DPoP
		if l.tokens.TokenType != "DPoP" {
			t.Errorf("par %s: token type %q, want DPoP", par, l.tokens.TokenType)
		}
		if l.tokens.Claims["email"] != op.User.Email {
			t.Errorf("par %s: no email from userinfo (called with a DPoP proof): %v", par, l.tokens.Claims)
		}
		info := introspect(t, op, l.tokens.AccessToken)
		cnf, _ := info["cnf"].(map[string]any)
		if info["active"] != true || info["token_type"] != "DPoP" || cnf["jkt"] != key.Thumbprint() {
			t.Errorf("par %s: introspection %v, want an active DPoP token with cnf.jkt %s", par, info, key.Thumbprint())
		}

		// The access token alone is of no use.
		if s := userinfoStatus(t, op, "Bearer "+l.tokens.AccessToken, ""); s != http.StatusUnauthorized {
			t.Errorf("par %s: DPoP-bound token as Bearer: status %d", par, s)
		}
		other, _ := NewDPoPKey()
		proof, _ := other.Proof(http.MethodGet, op.Issuer+"/me", l.tokens.AccessToken, "")
		if s := userinfoStatus(t, op, "DPoP "+l.tokens.AccessToken, proof); s != http.StatusUnauthorized {
			t.Errorf("par %s: proof of another key: status %d", par, s)
		}
		// Proof exported for upstream calls: with the session's key it works.
		proof, _ = key.Proof(http.MethodGet, op.Issuer+"/me?x=1", l.tokens.AccessToken, "")
		if s := userinfoStatus(t, op, "DPoP "+l.tokens.AccessToken, proof); s != http.StatusOK {
			t.Errorf("par %s: proof of the session's key: status %d", par, s)
		}

		d, _ := p.Discover(testCtx(t))
		r, err := p.Refresh(WithDPoPKey(testCtx(t), key), d, l.tokens.RefreshToken, "")
		if err != nil {
			t.Fatalf("par %s: refresh: %v", par, err)
		}
		if r.TokenType != "DPoP" || introspect(t, op, r.AccessToken)["cnf"].(map[string]any)["jkt"] != key.Thumbprint() {
			t.Errorf("par %s: refreshed token not bound to the session's key", par)
		}
		// With dpop on, a call without the key is not even made.
		if _, err := p.Refresh(testCtx(t), d, r.RefreshToken, ""); !errors.Is(err, ErrNoDPoPKey) {
			t.Errorf("par %s: refresh without the key under dpop on: %v, want ErrNoDPoPKey", par, err)
		}
		// The IdP requires DPoP for this client: a refresh without a proof fails.
		plain := newTestProvider(op, op.Basic, nil)
		pd, _ := plain.Discover(testCtx(t))
		if _, err := plain.Refresh(testCtx(t), pd, r.RefreshToken, ""); err == nil {
			t.Errorf("par %s: refresh without a proof succeeded for a dpop_bound_access_tokens client", par)
		}
	}
}

// TestDPoPNonce: an IdP that demands its nonce (use_dpop_nonce) gets it on
// the one retry, at the PAR and token endpoints (400 with a JSON error)
// and at userinfo (401 with WWW-Authenticate), and the nonce is kept for
// later calls.
func TestDPoPNonce(t *testing.T) {
	redirectURI := rpCallback(t)
	op := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{RedirectURIs: []string{redirectURI}, DPoPNonce: true})
	for _, c := range []struct {
		par  PARMode
		want string // the IdP calls of a login, discovery and JWKS left out
	}{
		{PAROn, "POST /request Bad Request, POST /request Created, POST /token OK, GET /me OK"},
		{PAROff, "POST /token Bad Request, POST /token OK, GET /me OK"},
	} {
		rec := &recorder{}
		p := newTestProvider(op, op.Basic, func(cfg *Config) {
			cfg.DPoP, cfg.PAR = DPoPOn, c.par
			cfg.HTTPClient = &http.Client{Transport: rec}
		})
		l, err := loginVia(t, op, p, redirectURI, true)
		if err != nil {
			t.Fatalf("par %s: login: %v (calls: %s)", c.par, err, rec.calls())
		}
		if l.tokens.TokenType != "DPoP" || l.tokens.Claims["email"] != op.User.Email {
			t.Fatalf("par %s: tokens %q, claims %v", c.par, l.tokens.TokenType, l.tokens.Claims)
		}
		if got := rec.calls(); got != c.want {
			t.Errorf("par %s: IdP calls %s; want %s", c.par, got, c.want)
		}

		// userinfo without a nonce at hand: refused once, then served.
		p.cfg.HTTPClient.Transport.(*idpTransport).nonces = dpopNonces{}
		rec.reset()
		d, _ := p.Discover(testCtx(t))
		tok := &oauth2.Token{AccessToken: l.tokens.AccessToken, TokenType: l.tokens.TokenType}
		if err := p.mergeUserInfo(WithDPoPKey(p.clientContext(testCtx(t)), l.flow.DPoP), d, tok, map[string]any{"sub": op.User.Subject}); err != nil {
			t.Fatalf("par %s: userinfo: %v", c.par, err)
		}
		if got, want := rec.calls(), "GET /me Unauthorized, GET /me OK"; got != want {
			t.Errorf("par %s: userinfo calls %s; want %s", c.par, got, want)
		}
		if _, err := p.Refresh(WithDPoPKey(testCtx(t), l.flow.DPoP), d, l.tokens.RefreshToken, ""); err != nil {
			t.Fatalf("par %s: refresh: %v", c.par, err)
		}
	}
}

// TestDPoPRefreshWithAnotherKey: a public client's refresh token is bound
// to the session's key (RFC 9449 5); presented with another key the IdP
// refuses it as invalid_grant, which ends the session cleanly.
// (Confidential clients' refresh tokens are bound by client
// authentication instead, as the RFC says.)
func TestDPoPRefreshWithAnotherKey(t *testing.T) {
	redirectURI := rpCallback(t)
	op := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{RedirectURIs: []string{redirectURI}})
	p := newTestProvider(op, op.Public, func(cfg *Config) { cfg.DPoP = DPoPOn })
	l, err := loginVia(t, op, p, redirectURI, true)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := p.Discover(testCtx(t))
	other, _ := NewDPoPKey()
	_, err = p.Refresh(WithDPoPKey(testCtx(t), other), d, l.tokens.RefreshToken, "")
	if !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("refresh with another key: %v, want ErrInvalidGrant", err)
	}
	plain := newTestProvider(op, op.Public, nil)
	pd, _ := plain.Discover(testCtx(t))
	_, err = plain.Refresh(testCtx(t), pd, l.tokens.RefreshToken, "")
	if !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("refresh without a proof: %v, want ErrInvalidGrant", err)
	}
	if _, err := p.Refresh(WithDPoPKey(testCtx(t), l.flow.DPoP), d, l.tokens.RefreshToken, ""); err != nil {
		t.Fatalf("refresh with the session's key: %v", err)
	}
}

// TestDPoPNotBound: with dpop on, an IdP that ignores the proof and issues
// a Bearer token fails the login instead of leaving it unbound.
func TestDPoPNotBound(t *testing.T) {
	redirectURI := rpCallback(t)
	op := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{RedirectURIs: []string{redirectURI}, DisableDPoP: true})
	p := newTestProvider(op, op.Basic, func(cfg *Config) { cfg.DPoP = DPoPOn })
	_, err := loginVia(t, op, p, redirectURI, true)
	if !errors.Is(err, ErrNotDPoPBound) {
		t.Fatalf("err = %v, want ErrNotDPoPBound", err)
	}
}

func TestLoginURLNeedsDPoPKey(t *testing.T) {
	p := fakePARIdP(t, http.StatusCreated, `{"request_uri":"urn:x"}`)
	p.cfg.DPoP = DPoPOn
	d, err := p.Discover(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.LoginURL(testCtx(t), d, NewFlow("/", true), "https://rp.example/cb", nil); !errors.Is(err, ErrNoDPoPKey) {
		t.Fatalf("flow without a key under dpop on: %v", err)
	}
	f := NewFlow("/", true)
	f.DPoP, _ = NewDPoPKey()
	if _, err := p.LoginURL(testCtx(t), d, f, "https://rp.example/cb", nil); err != nil {
		t.Fatalf("flow with a key: %v", err)
	}
}

func TestDPoPKeyEncoding(t *testing.T) {
	k, err := NewDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.MarshalBinary()
	if err != nil || len(b) != 33 {
		t.Fatalf("MarshalBinary: %d bytes, %v", len(b), err)
	}
	back, err := UnmarshalDPoPKey(b)
	if err != nil || back.Thumbprint() != k.Thumbprint() {
		t.Fatalf("round trip: %v", err)
	}
	// In the flow cookie's JSON.
	f := NewFlow("/", true)
	f.DPoP = k
	g, err := UnmarshalFlow(f.Marshal())
	if err != nil || g.DPoP == nil || g.DPoP.Thumbprint() != k.Thumbprint() {
		t.Fatalf("flow round trip: %v", err)
	}
	if g, _ := UnmarshalFlow(NewFlow("/", true).Marshal()); g.DPoP != nil {
		t.Error("a flow without DPoP came back with a key")
	}
	for name, bad := range map[string][]byte{
		"empty":       nil,
		"short":       b[:20],
		"version":     append([]byte{9}, b[1:]...),
		"zero scalar": append([]byte{1}, bytes.Repeat([]byte{0}, 32)...),
		"too big":     append([]byte{1}, bytes.Repeat([]byte{0xff}, 32)...),
	} {
		if _, err := UnmarshalDPoPKey(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := UnmarshalFlow([]byte(`{"s":"x","n":"y","k":"!!"}`)); err == nil {
		t.Error("flow with a malformed key accepted")
	}
}
