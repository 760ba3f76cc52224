package testidp

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/oidc-session/oidc_session/internal/testenv"
)

func TestDexLoginAndCodeExchange(t *testing.T) {
	// The relying party's callback: a tiny local server.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	callbackHits := make(chan string, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case callbackHits <- r.URL.RequestURI():
		default:
		}
		w.Write([]byte("callback reached"))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	redirectURI := "http://" + l.Addr().String() + "/callback"

	dex := StartDex(t, DexOptions{RedirectURIs: []string{redirectURI}, IDTokenTTL: 5 * time.Minute})

	q := url.Values{
		"response_type": {"code"},
		"client_id":     {dex.ClientID},
		"redirect_uri":  {redirectURI},
		"scope":         {"openid email profile offline_access"},
		"state":         {"xyz"},
	}
	authURL := dex.Issuer + "/auth?" + q.Encode()

	resp, err := LoginDex(NewBrowserClient(), authURL, dex.Email, dex.Password)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := resp.Request.URL
	if !strings.HasPrefix(got.String(), redirectURI+"?") {
		t.Fatalf("LoginDex ended at %s, want the redirect URI %s", got, redirectURI)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("callback status %d", resp.StatusCode)
	}
	select {
	case uri := <-callbackHits:
		if !strings.Contains(uri, "code=") || !strings.Contains(uri, "state=xyz") {
			t.Fatalf("callback request %q lacks code/state", uri)
		}
	default:
		t.Fatal("callback server was not reached")
	}
	code, state, err := CodeFromResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	if state != "xyz" {
		t.Fatalf("state = %q, want xyz", state)
	}

	conf := &oauth2.Config{
		ClientID:     dex.ClientID,
		ClientSecret: dex.ClientSecret,
		RedirectURL:  redirectURI,
		Endpoint: oauth2.Endpoint{
			AuthURL:  dex.Issuer + "/auth",
			TokenURL: dex.Issuer + "/token",
		},
		Scopes: []string{"openid", "email", "profile", "offline_access"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := conf.Exchange(ctx, code)
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	idToken, _ := tok.Extra("id_token").(string)
	if idToken == "" {
		t.Error("no id_token in token response")
	}
	if tok.RefreshToken == "" {
		t.Error("no refresh_token in token response")
	}
	if tok.AccessToken == "" {
		t.Error("no access_token in token response")
	}
	// Access tokens follow expiry.idTokens (5m here).
	if left := time.Until(tok.Expiry); left <= 0 || left > 5*time.Minute+5*time.Second {
		t.Errorf("access token expires in %s, want about 5m", left)
	}

	// The refresh token works.
	refreshed, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if refreshed.AccessToken == "" {
		t.Error("refresh returned no access token")
	}
}

func TestDexWrongPassword(t *testing.T) {
	redirectURI := "http://" + testenv.FreeAddr(t) + "/callback"
	dex := StartDex(t, DexOptions{RedirectURIs: []string{redirectURI}})
	q := url.Values{
		"response_type": {"code"},
		"client_id":     {dex.ClientID},
		"redirect_uri":  {redirectURI},
		"scope":         {"openid email"},
		"state":         {"s"},
	}
	_, err := LoginDex(NewBrowserClient(), dex.Issuer+"/auth?"+q.Encode(), dex.Email, "wrong")
	if err == nil || !strings.Contains(err.Error(), "rejected") {
		t.Fatalf("err = %v, want a rejected login", err)
	}
}

func TestDexStop(t *testing.T) {
	dex := StartDex(t, DexOptions{})
	dex.Stop()
	resp, err := http.Get(dex.Issuer + "/.well-known/openid-configuration")
	if err == nil {
		resp.Body.Close()
		t.Fatal("dex still answers after Stop")
	}
	dex.Stop() // idempotent
}
