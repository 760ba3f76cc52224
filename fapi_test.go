package oidcsession

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oidc-session/oidc_session/internal/lifecycle"
	"github.com/oidc-session/oidc_session/oidc"
	"github.com/oidc-session/oidc_session/sessions"
)

// TestCaddyfileHighSecurity: the subdirectives of issue 17 adapt to their
// JSON fields, a key given as PEM text included.
func TestCaddyfileHighSecurity(t *testing.T) {
	h, _ := adaptedHandler(t, "testdata/adapt/fapi.caddyfile")
	if h.Profile != "fapi2" || strings.Join(h.ClientKeys, ",") != "testdata/keys/ec.pem,testdata/keys/rsa.pem" ||
		strings.Join(h.ClientKeyIDs, ",") != "ec-2026,rsa-2025" {
		t.Errorf("fapi.caddyfile adapted to %+v", h.ProviderConfig)
	}
	h, _ = adaptedHandler(t, "testdata/adapt/high_security.caddyfile")
	if h.ClientAuth != "private_key_jwt" || h.PAR != "on" || h.DPoP != "on" || len(h.ClientKeys) != 1 ||
		!strings.Contains(h.ClientKeys[0], "-----BEGIN PRIVATE KEY-----") {
		t.Errorf("high_security.caddyfile adapted to %+v", h.ProviderConfig)
	}
}

func fapiHandler(keys ...string) *Handler {
	return &Handler{
		ProviderConfig: ProviderConfig{Issuer: "http://127.0.0.1:1", ClientID: "app", ClientKeys: keys},
		Cookie:         CookieConfig{Secrets: []string{testSecret}},
	}
}

// TestProvisionFAPI2: profile fapi2 turns DPoP on and publishes every
// client key, the signing key first, each under its key id.
func TestProvisionFAPI2(t *testing.T) {
	h := fapiHandler("testdata/keys/ec.pem", "testdata/keys/rsa.pem")
	h.ClientKeyIDs = []string{"ec-2026"}
	h.Profile = "fapi2"
	if err := provisioned(t, h); err != nil {
		t.Fatal(err)
	}
	if !h.primary().dpop {
		t.Error("profile fapi2 left DPoP off")
	}
	rec := httptest.NewRecorder()
	if err := h.serveJWKS(rec, httptest.NewRequest(http.MethodGet, "/oauth2/jwks.json", nil)); err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 || set.Keys[0]["kid"] != "ec-2026" || set.Keys[0]["kty"] != "EC" || set.Keys[1]["kty"] != "RSA" {
		t.Errorf("jwks.json: %s", rec.Body)
	}
	if _, private := set.Keys[0]["d"]; private {
		t.Error("jwks.json publishes a private key")
	}
	if ct, cc := rec.Header().Get("Content-Type"), rec.Header().Get("Cache-Control"); ct != "application/jwk-set+json" || !strings.HasPrefix(cc, "public, max-age=") {
		t.Errorf("jwks.json headers: Content-Type %q, Cache-Control %q", ct, cc)
	}
	if err := h.serveJWKS(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/oauth2/jwks.json", nil)); statusOf(err) != http.StatusMethodNotAllowed {
		t.Errorf("POST jwks.json: %v", err)
	}
	if _, ok := h.endpoints["/oauth2/jwks.json"]; !ok {
		t.Error("no /oauth2/jwks.json endpoint")
	}

	// Without client keys there is nothing to publish.
	plain := fapiHandler()
	plain.ClientSecret = "s"
	if err := provisioned(t, plain); err != nil {
		t.Fatal(err)
	}
	if err := plain.serveJWKS(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/oauth2/jwks.json", nil)); statusOf(err) != http.StatusNotFound {
		t.Errorf("jwks.json without client keys: %v, want 404", err)
	}
	if plain.primary().dpop {
		t.Error("DPoP on by default")
	}
}

// TestProvisionClientKeyPlaceholder: a key behind a placeholder is loaded
// once replaced, at Provision, and refused there if it is not one.
func TestProvisionClientKeyPlaceholder(t *testing.T) {
	h := fapiHandler("{file.testdata/keys/ec.pem}")
	h.ClientAuth = "private_key_jwt"
	h.applyDefaults()
	if err := h.validate(); err != nil {
		t.Fatalf("validate with a placeholder key: %v", err)
	}
	if err := provisioned(t, h); err != nil || h.jwks == nil {
		t.Fatalf("Provision with {file.*}: %v", err)
	}
	bad := fapiHandler("{file.testdata/keys/public.pem}")
	if err := provisioned(t, bad); err == nil || !strings.Contains(err.Error(), "is not a private key") {
		t.Fatalf("Provision with a public key behind a placeholder: %v", err)
	}
}

// TestSessionDPoPKey: a login's key goes into its session, comes back out
// for refreshes only with dpop on, and a broken one is refused.
func TestSessionDPoPKey(t *testing.T) {
	h := &idp{dpop: true}
	key, err := h.newDPoPKey()
	if err != nil || key == nil {
		t.Fatalf("newDPoPKey with dpop on: %v, %v", key, err)
	}
	s := &sessions.Session{}
	if err := keepDPoPKey(s, key); err != nil || len(s.DPoPKey) != 33 {
		t.Fatalf("keepDPoPKey: %v, %d bytes", err, len(s.DPoPKey))
	}
	if s, err = sessions.Decode(sessions.Encode(s)); err != nil {
		t.Fatal(err)
	}
	if back, err := oidc.UnmarshalDPoPKey(s.DPoPKey); err != nil || back.Thumbprint() != key.Thumbprint() {
		t.Fatalf("the stored key: %v", err)
	}
	base := t.Context()
	if ctx, err := h.withSessionDPoPKey(base, s); err != nil || ctx == base {
		t.Fatalf("withSessionDPoPKey: %v; the key not added", err)
	}
	if ctx, _ := (&idp{}).withSessionDPoPKey(base, s); ctx != base {
		t.Error("dpop off: the session's key still used")
	}
	if k, _ := (&idp{}).newDPoPKey(); k != nil {
		t.Error("dpop off: a login got a key")
	}
	s.DPoPKey = s.DPoPKey[:20]
	if _, err := h.withSessionDPoPKey(t.Context(), s); err == nil {
		t.Error("a malformed session key was used")
	}
}

// statusOf is the status of a caddyhttp.Error (0 for nil or another error).
func statusOf(err error) int {
	var he caddyhttp.HandlerError
	if errors.As(err, &he) {
		return he.StatusCode
	}
	return 0
}

// TestRefreshNeedsDPoPKey: with dpop on, a session without a key (made
// before dpop was turned on) is not refreshed without one, which would
// get unbound tokens: its refresh is refused, so it ends and the user
// logs in again, with a key. The token endpoint is never called.
func TestRefreshNeedsDPoPKey(t *testing.T) {
	var tokenCalls int
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{
				"issuer": srv.URL, "authorization_endpoint": srv.URL + "/auth",
				"token_endpoint": srv.URL + "/token", "jwks_uri": srv.URL + "/jwks",
			})
		case "/token":
			tokenCalls++
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	h := fapiHandler()
	h.Issuer, h.ClientSecret, h.DPoP = srv.URL, "s", "on"
	if err := provisioned(t, h); err != nil {
		t.Fatal(err)
	}
	_, err := refresher{h}.Refresh(t.Context(), &sessions.Session{Subject: "u", RefreshToken: "r"})
	if !errors.Is(err, lifecycle.ErrRefused) || !errors.Is(err, oidc.ErrNoDPoPKey) || tokenCalls != 0 {
		t.Fatalf("refresh of a session without a DPoP key: %v (%d token calls), want refused with ErrNoDPoPKey and no call", err, tokenCalls)
	}
}
