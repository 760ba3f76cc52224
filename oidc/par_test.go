package oidc

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/oidc-session/oidc_session/internal/testidp"
)

// frontChannel returns the parameter names of the URL the browser is sent
// to.
func frontChannel(t *testing.T, authURL string) []string {
	t.Helper()
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for k := range u.Query() {
		names = append(names, k)
	}
	return names
}

func pushed(t *testing.T, authURL string) bool {
	t.Helper()
	q, _ := url.Parse(authURL)
	names := frontChannel(t, authURL)
	return len(names) == 2 && q.Query().Get("client_id") != "" && strings.HasPrefix(q.Query().Get("request_uri"), "urn:ietf:params:oauth:request_uri:")
}

func TestPARModes(t *testing.T) {
	redirectURI := rpCallback(t)
	keys := clientKeys(t, newECKey(t))
	offered := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{RedirectURIs: []string{redirectURI}, ClientJWKS: mustJWKS(t, keys)})
	required := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{RedirectURIs: []string{redirectURI}, RequirePAR: true})
	absent := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{RedirectURIs: []string{redirectURI}, DisablePAR: true})

	// auto pushes when offered, with every kind of client authentication.
	// (oidc-provider takes either secret method from a secret client;
	// the IdP advertises both, so auto picks basic and post is explicit.)
	for _, c := range []struct {
		client testidp.OPClient
		keys   []*ClientKey
		method ClientAuthMethod
		want   ClientAuthMethod
	}{
		{offered.Basic, nil, ClientAuthAuto, ClientSecretBasic},
		{offered.Post, nil, ClientSecretPost, ClientSecretPost},
		{offered.Public, nil, ClientAuthAuto, ClientAuthNone},
		{offered.Key, keys, ClientAuthAuto, PrivateKeyJWT},
	} {
		p := newTestProvider(offered, c.client, func(cfg *Config) { cfg.ClientKeys, cfg.ClientAuth = c.keys, c.method })
		l, err := loginVia(t, offered, p, redirectURI, false)
		if err != nil {
			t.Fatalf("%s: %v", c.client.ID, err)
		}
		if !pushed(t, l.authURL) {
			t.Errorf("%s: browser sent to %s, want only client_id and request_uri", c.client.ID, l.authURL)
		}
		if d, _ := p.Discover(testCtx(t)); d.Security.ClientAuth != c.want {
			t.Errorf("%s: client auth %q, want %q", c.client.ID, d.Security.ClientAuth, c.want)
		}
	}

	// auto and on follow an IdP that requires PAR.
	for _, mode := range []PARMode{PARAuto, PAROn} {
		l, err := loginVia(t, required, newTestProvider(required, required.Basic, func(cfg *Config) { cfg.PAR = mode }), redirectURI, false)
		if err != nil || !pushed(t, l.authURL) {
			t.Fatalf("par %q, IdP requires PAR: err %v", mode, err)
		}
	}
	// The IdP really requires it: a front-channel request is refused.
	off := newTestProvider(required, required.Basic, nil)
	d, err := off.Discover(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := testidp.NewBrowserClient().Get(d.AuthCodeURL(NewFlow("/", true), redirectURI, nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc, _ := resp.Location(); loc == nil || loc.Query().Get("error") != "invalid_request" {
		t.Fatalf("front-channel request to a PAR-only IdP: status %d location %v", resp.StatusCode, loc)
	}

	// off with an IdP that requires PAR, and on with an IdP without it,
	// are configuration errors, not an unavailable IdP.
	for _, c := range []struct {
		op   *testidp.OIDCProvider
		mode PARMode
		want string
	}{
		{required, PAROff, "requires pushed authorization requests"},
		{absent, PAROn, "advertises no pushed_authorization_request_endpoint"},
	} {
		_, err := loginVia(t, c.op, newTestProvider(c.op, c.op.Basic, func(cfg *Config) { cfg.PAR = c.mode }), redirectURI, false)
		if err == nil || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("par %q: err = %v, want %q", c.mode, err, c.want)
		}
	}

	// auto without an endpoint, and off, keep the front channel.
	for _, c := range []struct {
		op   *testidp.OIDCProvider
		mode PARMode
	}{{absent, PARAuto}, {offered, PAROff}} {
		l, err := loginVia(t, c.op, newTestProvider(c.op, c.op.Basic, func(cfg *Config) { cfg.PAR = c.mode }), redirectURI, false)
		if err != nil {
			t.Fatalf("par %q: %v", c.mode, err)
		}
		if pushed(t, l.authURL) || !strings.Contains(l.authURL, "code_challenge=") {
			t.Errorf("par %q: browser sent to %s, want the full request", c.mode, l.authURL)
		}
	}
}

// fakePARIdP serves a discovery document whose PAR endpoint answers with
// status, and that endpoint.
func fakePARIdP(t *testing.T, status int, body string) *Provider {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]any{
				"issuer":                                srv.URL,
				"authorization_endpoint":                srv.URL + "/auth",
				"token_endpoint":                        srv.URL + "/token",
				"jwks_uri":                              srv.URL + "/jwks",
				"pushed_authorization_request_endpoint": srv.URL + "/par",
			})
		case "/par":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			w.Write([]byte(body))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return NewProvider(Config{Issuer: srv.URL, ClientID: "c", ClientSecret: "s"})
}

// TestPAREndpointDown: a PAR endpoint that is down or failing is
// ErrUnavailable (the handler answers 503 instead of redirecting the
// browser into a loop); one that refuses is a plain error with the IdP's
// reason.
func TestPAREndpointDown(t *testing.T) {
	redirectURI := rpCallback(t)
	for _, c := range []struct {
		name        string
		p           func() *Provider
		unavailable bool
		want        string
	}{
		{"5xx", func() *Provider { return fakePARIdP(t, http.StatusServiceUnavailable, `{}`) }, true, "status 503"},
		{"refused", func() *Provider {
			return fakePARIdP(t, http.StatusBadRequest, `{"error":"invalid_request","error_description":"bad scope"}`)
		}, false, "invalid_request bad scope"},
		{"no request_uri", func() *Provider { return fakePARIdP(t, http.StatusCreated, `{}`) }, false, "no request_uri"},
		{"stopped", func() *Provider {
			op := testidp.StartOIDCProvider(t, testidp.OIDCProviderOptions{RedirectURIs: []string{redirectURI}})
			p := newTestProvider(op, op.Basic, nil)
			if _, err := p.Discover(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			op.Stop()
			return p
		}, true, "connection refused"},
	} {
		p := c.p()
		d, err := p.Discover(testCtx(t))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		u, err := p.LoginURL(testCtx(t), d, NewFlow("/", true), redirectURI, nil)
		if err == nil || errors.Is(err, ErrUnavailable) != c.unavailable || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: LoginURL = %q, %v; want an error with %q (unavailable %v)", c.name, u, err, c.want, c.unavailable)
		}
	}
}
