package testidp

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// rpCallback starts a stand-in for a relying party's callback (and
// post-logout page) and returns its URL.
func rpCallback(t *testing.T, path string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("relying party reached"))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + path
}

func discoveryDoc(t *testing.T, issuer string) map[string]any {
	t.Helper()
	resp, err := http.Get(issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestOIDCProviderDiscoveryFollowsOptions(t *testing.T) {
	full := StartOIDCProvider(t, OIDCProviderOptions{
		RequirePAR:           true,
		DPoPNonce:            true,
		Revocation:           true,
		Introspection:        true,
		BackchannelLogoutURI: rpCallback(t, "/backchannel"),
		ACRValues:            []string{"urn:example:silver", "urn:example:gold"},
		ClaimsParameter:      true,
	})
	doc := discoveryDoc(t, full.Issuer)
	for _, key := range []string{"pushed_authorization_request_endpoint", "revocation_endpoint", "introspection_endpoint", "end_session_endpoint", "userinfo_endpoint"} {
		if s, _ := doc[key].(string); !strings.HasPrefix(s, full.Issuer+"/") {
			t.Errorf("%s = %v, want an endpoint of %s", key, doc[key], full.Issuer)
		}
	}
	for _, key := range []string{"require_pushed_authorization_requests", "backchannel_logout_supported", "backchannel_logout_session_supported", "authorization_response_iss_parameter_supported", "claims_parameter_supported"} {
		if doc[key] != true {
			t.Errorf("%s = %v, want true", key, doc[key])
		}
	}
	if algs, _ := doc["dpop_signing_alg_values_supported"].([]any); !slices.Contains(algs, any("ES256")) {
		t.Errorf("dpop_signing_alg_values_supported = %v, want ES256 among them", algs)
	}
	if acr, _ := doc["acr_values_supported"].([]any); len(acr) != 2 {
		t.Errorf("acr_values_supported = %v", acr)
	}
	if doc["issuer"] != full.Issuer {
		t.Errorf("issuer = %v, want %s", doc["issuer"], full.Issuer)
	}

	bare := StartOIDCProvider(t, OIDCProviderOptions{DisablePAR: true, DisableDPoP: true, DisableRPLogout: true})
	doc = discoveryDoc(t, bare.Issuer)
	for _, key := range []string{"pushed_authorization_request_endpoint", "require_pushed_authorization_requests", "dpop_signing_alg_values_supported", "revocation_endpoint", "introspection_endpoint", "backchannel_logout_supported", "end_session_endpoint"} {
		if v, ok := doc[key]; ok {
			t.Errorf("%s = %v, want it absent", key, v)
		}
	}
	if doc["authorization_response_iss_parameter_supported"] != true {
		t.Error("the iss response parameter is always on in oidc-provider")
	}
}

// opLoginCode logs the user in through the Go driver and returns the
// callback's code after checking state and the RFC 9207 iss parameter.
func opLoginCode(t *testing.T, op *OIDCProvider, authURL, state string) string {
	t.Helper()
	resp, err := op.Login(NewBrowserClient(), authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	code, gotState, err := CodeFromResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	if gotState != state {
		t.Fatalf("state = %q, want %q", gotState, state)
	}
	if iss := resp.Request.URL.Query().Get("iss"); iss != op.Issuer {
		t.Fatalf("authorization response iss = %q, want %s (RFC 9207)", iss, op.Issuer)
	}
	return code
}

func opOAuth(op *OIDCProvider, client OPClient, style oauth2.AuthStyle, redirectURI string, scopes ...string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     client.ID,
		ClientSecret: client.Secret,
		RedirectURL:  redirectURI,
		Endpoint:     oauth2.Endpoint{AuthURL: op.Issuer + "/auth", TokenURL: op.Issuer + "/token", AuthStyle: style},
		Scopes:       scopes,
	}
}

func TestOIDCProviderPublicClientPKCE(t *testing.T) {
	redirectURI := rpCallback(t, "/callback")
	op := StartOIDCProvider(t, OIDCProviderOptions{RedirectURIs: []string{redirectURI}})
	conf := opOAuth(op, op.Public, oauth2.AuthStyleInParams, redirectURI, "openid", "email", "profile", "groups", "offline_access")
	verifier := oauth2.GenerateVerifier()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// A public client must use PKCE: the OP refuses the request without it.
	resp, err := NewBrowserClient().Get(conf.AuthCodeURL("st1", gooidc.Nonce("n1")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc, _ := resp.Location(); loc == nil || loc.Query().Get("error") != "invalid_request" || !strings.Contains(loc.Query().Get("error_description"), "PKCE") {
		t.Fatalf("authorization without PKCE: status %d, location %v; want an invalid_request about PKCE", resp.StatusCode, loc)
	}

	code := opLoginCode(t, op, conf.AuthCodeURL("st1", gooidc.Nonce("n1"), oauth2.S256ChallengeOption(verifier)), "st1")
	if _, err := conf.Exchange(ctx, code, oauth2.VerifierOption("wrong-"+verifier)); err == nil {
		t.Fatal("exchange with a wrong PKCE verifier succeeded")
	}
	code = opLoginCode(t, op, conf.AuthCodeURL("st2", gooidc.Nonce("n2"), oauth2.S256ChallengeOption(verifier)), "st2")
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if tok.RefreshToken != "" {
		t.Error("refresh token issued for offline_access without prompt=consent (OIDC Core 11 says the OP ignores it)")
	}

	// The ID token verifies and, in the code flow, carries no email or
	// profile claims (OIDC Core 5.4): those come from userinfo.
	gp, err := gooidc.NewProvider(ctx, op.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := gp.Verifier(&gooidc.Config{ClientID: op.Public.ID}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	var idClaims map[string]any
	if err := idt.Claims(&idClaims); err != nil {
		t.Fatal(err)
	}
	if idt.Subject != op.User.Subject || idt.Nonce != "n2" {
		t.Errorf("ID token sub %q nonce %q", idt.Subject, idt.Nonce)
	}
	for _, c := range []string{"email", "name", "groups"} {
		if _, ok := idClaims[c]; ok {
			t.Errorf("ID token has %q; oidc-provider keeps it for userinfo in the code flow", c)
		}
	}

	ui, err := gp.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	var uiClaims struct {
		Sub, Email, Name string
		Groups           []string
	}
	if err := ui.Claims(&uiClaims); err != nil {
		t.Fatal(err)
	}
	if uiClaims.Sub != op.User.Subject || uiClaims.Email != op.User.Email || uiClaims.Name != op.User.Name || !slices.Equal(uiClaims.Groups, op.User.Groups) {
		t.Errorf("userinfo = %+v, want the user's email, name and groups", uiClaims)
	}
}

func TestOIDCProviderRefreshNeedsPromptConsent(t *testing.T) {
	redirectURI := rpCallback(t, "/callback")
	op := StartOIDCProvider(t, OIDCProviderOptions{RedirectURIs: []string{redirectURI}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, c := range []struct {
		client OPClient
		style  oauth2.AuthStyle
	}{{op.Basic, oauth2.AuthStyleInHeader}, {op.Post, oauth2.AuthStyleInParams}} {
		conf := opOAuth(op, c.client, c.style, redirectURI, "openid", "offline_access")
		code := opLoginCode(t, op, conf.AuthCodeURL("s", oauth2.SetAuthURLParam("prompt", "consent")), "s")
		tok, err := conf.Exchange(ctx, code)
		if err != nil {
			t.Fatalf("%s: exchange: %v", c.client.ID, err)
		}
		if tok.RefreshToken == "" {
			t.Fatalf("%s: no refresh token with offline_access and prompt=consent", c.client.ID)
		}
		next, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		if err != nil {
			t.Fatalf("%s: refresh: %v", c.client.ID, err)
		}
		if next.AccessToken == "" || next.AccessToken == tok.AccessToken {
			t.Errorf("%s: refresh gave no new access token", c.client.ID)
		}
	}
}

func TestOIDCProviderWrongPassword(t *testing.T) {
	redirectURI := rpCallback(t, "/callback")
	op := StartOIDCProvider(t, OIDCProviderOptions{RedirectURIs: []string{redirectURI}})
	conf := opOAuth(op, op.Basic, oauth2.AuthStyleInHeader, redirectURI, "openid")
	_, err := LoginOIDCProvider(NewBrowserClient(), conf.AuthCodeURL("s"), op.User.Login, "not-the-password")
	if err == nil || !strings.Contains(err.Error(), "rejected") {
		t.Fatalf("err = %v, want a rejected login", err)
	}
}

// TestOIDCProviderLogout: RP-initiated logout through the confirmation
// page ends at the post_logout_redirect_uri, and the back-channel logout
// token reaches a loopback endpoint (the test OP has no SSRF guard).
func TestOIDCProviderLogout(t *testing.T) {
	redirectURI := rpCallback(t, "/callback")
	postLogout := rpCallback(t, "/signed-out")
	tokens := make(chan string, 4)
	bc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		tokens <- r.PostForm.Get("logout_token")
	}))
	t.Cleanup(bc.Close)
	op := StartOIDCProvider(t, OIDCProviderOptions{
		RedirectURIs:           []string{redirectURI},
		PostLogoutRedirectURIs: []string{postLogout},
		BackchannelLogoutURI:   bc.URL + "/backchannel",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conf := opOAuth(op, op.Basic, oauth2.AuthStyleInHeader, redirectURI, "openid")
	browser := NewBrowserClient()
	resp, err := op.Login(browser, conf.AuthCodeURL("s"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	code, _, err := CodeFromResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := conf.Exchange(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	idToken, _ := tok.Extra("id_token").(string)
	var idClaims struct {
		Sub string `json:"sub"`
		SID string `json:"sid"`
	}
	unsafeClaims(t, idToken, &idClaims)

	q := url.Values{"id_token_hint": {idToken}, "post_logout_redirect_uri": {postLogout}, "state": {"bye"}}
	resp, err = LogoutOIDCProvider(browser, op.Issuer+"/session/end?"+q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Request.URL; !strings.HasPrefix(got.String(), postLogout+"?") || got.Query().Get("state") != "bye" {
		t.Fatalf("logout ended at %s, want %s?state=bye", got, postLogout)
	}

	select {
	case raw := <-tokens:
		var lt struct {
			Iss    string         `json:"iss"`
			Aud    any            `json:"aud"`
			Sub    string         `json:"sub"`
			SID    string         `json:"sid"`
			Events map[string]any `json:"events"`
		}
		unsafeClaims(t, raw, &lt)
		if lt.Iss != op.Issuer || lt.Aud != op.Basic.ID || lt.Sub != idClaims.Sub || lt.SID != idClaims.SID || lt.SID == "" {
			t.Errorf("logout token %+v does not name the session of the ID token (sub %q sid %q)", lt, idClaims.Sub, idClaims.SID)
		}
		if _, ok := lt.Events["http://schemas.openid.net/event/backchannel-logout"]; !ok {
			t.Errorf("logout token events = %v", lt.Events)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no back-channel logout token reached the loopback endpoint")
	}

	// The OP session is gone: a new authorization shows the login form.
	resp, err = navigate(browser, conf.AuthCodeURL("again"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc, _ := resp.Location(); loc == nil || !strings.Contains(loc.Path, "/interaction/") {
		t.Fatalf("after logout the authorization request went to %v, want the login interaction", loc)
	}

	// Without a post_logout_redirect_uri the OP shows its own page.
	resp, err = op.Login(browser, conf.AuthCodeURL("s2"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = LogoutOIDCProvider(browser, op.Issuer+"/session/end?client_id="+op.Basic.ID)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `id="op-logout-done"`) {
		t.Errorf("logout without redirect ended at %s: %s", resp.Request.URL, snippet(string(body)))
	}
}

// unsafeClaims decodes a JWT's claims without checking its signature: the
// tests above check what the OP put in it.
func unsafeClaims(t *testing.T, raw string, out any) {
	t.Helper()
	tok, err := josejwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.EdDSA})
	if err != nil {
		t.Fatalf("parse JWT: %v", err)
	}
	if err := tok.UnsafeClaimsWithoutVerification(out); err != nil {
		t.Fatal(err)
	}
}

func TestOIDCProviderClientCredentials(t *testing.T) {
	op := StartOIDCProvider(t, OIDCProviderOptions{ClientCredentials: true})
	conf := clientcredentials.Config{ClientID: op.Service.ID, ClientSecret: op.Service.Secret, TokenURL: op.Issuer + "/token", AuthStyle: oauth2.AuthStyleInHeader}
	tok, err := conf.Token(context.Background())
	if err != nil {
		t.Fatalf("client_credentials: %v", err)
	}
	if tok.AccessToken == "" || tok.RefreshToken != "" {
		t.Errorf("client_credentials token %+v", tok)
	}
	conf.ClientSecret = "wrong"
	if _, err := conf.Token(context.Background()); err == nil {
		t.Error("client_credentials with a wrong secret succeeded")
	}
}
