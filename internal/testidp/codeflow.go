package testidp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// A whole authorization code flow as an OAuth client (a CLI tool, an API
// client) does it, for tests that need a real IdP's access token rather
// than a relying party's session.

// CallbackServer starts a redirect_uri that only answers (the login
// drivers read the code from its URL) and returns its URL; it is closed
// at test cleanup.
func CallbackServer(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("callback"))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/callback"
}

// LoginFunc is a login driver: LoginDex, LoginZitadel.
type LoginFunc func(client *http.Client, authURL, user, password string) (*http.Response, error)

// CodeLogin logs user in with login at conf's authorization endpoint and
// redeems the code at its token endpoint, returning the token response
// (its AccessToken is what an API client would send). The test fails on
// any error.
func CodeLogin(t testing.TB, conf *oauth2.Config, login LoginFunc, user, password string, opts ...oauth2.AuthCodeOption) *oauth2.Token {
	t.Helper()
	resp, err := login(NewBrowserClient(), conf.AuthCodeURL("state-1", opts...), user, password)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	resp.Body.Close()
	code, state, err := CodeFromResponse(resp)
	if err != nil || state != "state-1" {
		t.Fatalf("callback: %v (state %q)", err, state)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := conf.Exchange(ctx, code)
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	return tok
}
