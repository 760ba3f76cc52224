package oidcsession

import (
	"errors"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/internal/bearer"
)

// The request path of access tokens runs through a real Caddy in
// integration/bearer_test.go; these are the pieces around it.

// The bearer block adapts to the handler's Bearer field, every option.
func TestCaddyfileBearer(t *testing.T) {
	h, _ := adaptedHandler(t, "testdata/adapt/bearer.caddyfile")
	want := &bearer.Config{
		Audiences:      []string{"https://api.example.com", "app"},
		Issuers:        []string{"https://other-idp.example.com"},
		ScopesRequired: []string{"mcp:tools", "read"},
		Introspection:  true,
		DPoP:           bearer.DPoPRequired,
		ATJWTIssuers:   []string{"https://other-idp.example.com"},
		Resource:       "/mcp",
	}
	if !reflect.DeepEqual(h.Bearer, want) {
		t.Errorf("bearer = %+v; want %+v", h.Bearer, want)
	}
}

// A JSON config is checked by the same validate: the bearer block's own
// rules, and introspection's need of the client's credentials.
func TestValidateBearer(t *testing.T) {
	base := func(b *bearer.Config) *Handler {
		h := &Handler{
			ProviderConfig: ProviderConfig{Issuer: "https://idp.example.com", ClientID: "app"},
			Cookie:         CookieConfig{Secrets: []string{testSecret}},
			Bearer:         b,
		}
		h.applyDefaults()
		return h
	}
	for _, tc := range []struct {
		name   string
		bearer *bearer.Config
		secret string
		want   string // "" for valid
	}{
		{"valid", &bearer.Config{Audiences: []string{"https://api.example.com"}}, "", ""},
		{"no audiences", &bearer.Config{}, "", "audiences is required"},
		{"introspection without client_secret", &bearer.Config{Audiences: []string{"app"}, Introspection: true}, "", "introspection needs client_secret"},
		{"introspection with client_secret", &bearer.Config{Audiences: []string{"app"}, Introspection: true}, "{env.SECRET}", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := base(tc.bearer)
			h.ClientSecret = tc.secret
			err := h.validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			var ce *configError
			if !errors.As(err, &ce) || ce.field != "bearer" || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate: %v; want a bearer error with %q", err, tc.want)
			}
		})
	}
}

// A token's claims become a session as an ID token's do: an unverified
// email is dropped, groups and kept claims are read, the presented token
// is the session's access token; a token without the user_id_claim, or
// user_id_claim email without a verified email, is refused.
func TestTokenSession(t *testing.T) {
	h := &Handler{IdentityConfig: IdentityConfig{Claims: []string{"tenant", "email"}}}
	h.applyDefaults()
	exp := time.Now().Add(time.Minute).Truncate(time.Second)
	p := &bearer.Principal{
		Issuer:  "https://idp.example.com",
		Subject: "u1",
		Expiry:  exp,
		Claims: map[string]any{
			"sub": "u1", "email": "u1@example.com", "email_verified": false,
			"groups": []any{"staff", "ops"}, "tenant": "acme", "name": "User One",
		},
	}
	r := httptest.NewRequest("GET", "http://api.example.com/", nil)
	r.Header.Set("Authorization", "Bearer  tok.en.value")
	s, err := h.tokenSession(r, p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Subject != "u1" || s.Email != "" || s.Claims["email"] != nil || s.Name != "User One" ||
		!reflect.DeepEqual(s.Groups, []string{"staff", "ops"}) || !reflect.DeepEqual(s.Claims["tenant"], []string{"acme"}) {
		t.Errorf("session %+v", s)
	}
	if s.AccessToken != "tok.en.value" || s.Issuer != p.Issuer || !s.TokenExpiry.Equal(exp) || !s.ExpiresAt.Equal(exp) {
		t.Errorf("token fields: access %q issuer %q expiry %v / %v", s.AccessToken, s.Issuer, s.TokenExpiry, s.ExpiresAt)
	}
	if h.userID(s) != "u1" {
		t.Errorf("user id %q", h.userID(s))
	}

	h.UserIDClaim = "email"
	if _, err := h.tokenSession(r, p); !errors.Is(err, errForbidden) {
		t.Errorf("user_id_claim email, email not verified: %v; want errForbidden", err)
	}
	h.UserIDClaim = "employee_id"
	if _, err := h.tokenSession(r, p); err == nil || !strings.Contains(err.Error(), "employee_id") {
		t.Errorf("token without the user_id_claim: %v", err)
	}
}
