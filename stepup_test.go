package oidcsession

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/oidc-session/oidc_session/oidc"
	"github.com/oidc-session/oidc_session/sessions"
)

// TestCheckAuthentication: what a step-up login's ID token must show, and
// the answers that are refused (each as errForbidden, a 403, never a new
// login that would loop).
func TestCheckAuthentication(t *testing.T) {
	started := time.Unix(1_800_000_000, 0)
	flow := func(acr []string, maxAge int64) *oidc.Flow {
		return &oidc.Flow{Created: started, RequireACR: acr, MaxAge: maxAge}
	}
	at := func(d time.Duration) float64 { return float64(started.Add(d).Unix()) }
	for _, tc := range []struct {
		name   string
		flow   *oidc.Flow
		claims map[string]any
		ok     bool
	}{
		{"nothing asked", flow(nil, 0), map[string]any{}, true},
		{"acr one of those asked", flow([]string{"silver", "gold"}, 0), map[string]any{"acr": "gold"}, true},
		{"acr outside those asked", flow([]string{"gold"}, 0), map[string]any{"acr": "silver"}, false},
		{"no acr", flow([]string{"gold"}, 0), map[string]any{}, false},
		{"acr of another type", flow([]string{"gold"}, 0), map[string]any{"acr": []any{"gold"}}, false},
		{"max_age and a fresh auth_time", flow(nil, 60), map[string]any{"auth_time": at(-30 * time.Second)}, true},
		{"max_age and no auth_time", flow(nil, 60), map[string]any{}, false},
		{"max_age and an auth_time string", flow(nil, 60), map[string]any{"auth_time": "soon"}, false},
		{"max_age and an old auth_time", flow(nil, 60), map[string]any{"auth_time": at(-time.Hour)}, false},
		{"max_age and an auth_time within the skew", flow(nil, 60), map[string]any{"auth_time": at(-61 * time.Second)}, true},
		{"max_age and a negative auth_time", flow(nil, 60), map[string]any{"auth_time": float64(-5)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkAuthentication(tc.flow, tc.claims)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && !errors.Is(err, errForbidden) {
				t.Fatalf("got %v, want a refusal (403)", err)
			}
		})
	}
}

// TestStepUpNeeds: what a session lacks for require_acr and max_auth_age,
// read from the acr and auth_time a login kept in it.
func TestStepUpNeeds(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	session := func(claims map[string]any) *sessions.Session {
		s := &sessions.Session{}
		keepAuthentication(s, claims)
		return s
	}
	h := &Handler{AccessRules: AccessRules{RequireACR: []string{"gold"}, MaxAuthAge: caddy.Duration(10 * time.Minute)}}
	fresh := float64(now.Add(-time.Minute).Unix())
	if opts := h.stepUp(session(map[string]any{"acr": "gold", "auth_time": fresh}), now); opts != nil {
		t.Errorf("a gold, fresh session needs a step-up: %+v", opts)
	}
	opts := h.stepUp(session(map[string]any{"acr": "silver", "auth_time": fresh}), now)
	if opts == nil || len(opts.requireACR) != 1 || opts.maxAge != 0 {
		t.Errorf("a silver session: %+v, want acr gold and no max_age", opts)
	}
	opts = h.stepUp(session(map[string]any{"acr": "gold", "auth_time": float64(now.Add(-time.Hour).Unix())}), now)
	if opts == nil || opts.maxAge != 10*time.Minute {
		t.Errorf("an old authentication: %+v, want max_age 10m", opts)
	}
	// An OP that judged max_age in whole seconds an instant ago: its
	// answer still counts (no loop back to the OP).
	if opts := h.stepUp(session(map[string]any{"acr": "gold", "auth_time": float64(now.Add(-10*time.Minute - 900*time.Millisecond).Unix())}), now); opts != nil {
		t.Errorf("auth_time max_auth_age old to the second: %+v, want no step-up", opts)
	}
	if opts := h.stepUp(session(map[string]any{"acr": "gold", "auth_time": float64(now.Add(-10*time.Minute - 2*time.Second).Unix())}), now); opts == nil {
		t.Error("auth_time 2s older than max_auth_age: no step-up")
	}
	if opts := h.stepUp(session(map[string]any{"acr": "gold"}), now); opts == nil || opts.maxAge == 0 {
		t.Errorf("no auth_time: %+v, want max_age", opts)
	}
}

// TestAdmittedBefore: a session an earlier handler admitted is taken over
// only by a handler of the same issuer, client and cookie.
func TestAdmittedBefore(t *testing.T) {
	handler := func(issuer, client, cookie string) *Handler {
		h := &Handler{ProviderConfig: ProviderConfig{Issuer: issuer, ClientID: client}, Cookie: CookieConfig{Name: cookie}}
		h.applyDefaults()
		if err := h.provisionProviders(caddy.NewReplacer()); err != nil {
			t.Fatal(err)
		}
		return h
	}
	first := handler("https://idp.example", "app", "s")
	sess := &sessions.Session{Subject: "alice"}
	r := httptest.NewRequest(http.MethodGet, "/admin/", nil)
	r = r.WithContext(context.WithValue(r.Context(), admittedKey{}, admitted{first.sessionOwner(), sess}))
	if got := handler("https://idp.example", "app", "s").admittedBefore(r); got != sess {
		t.Errorf("same owner: %v, want the admitted session", got)
	}
	for _, other := range []*Handler{
		handler("https://other.example", "app", "s"),
		handler("https://idp.example", "other", "s"),
		handler("https://idp.example", "app", "other"),
	} {
		if got := other.admittedBefore(r); got != nil {
			t.Errorf("%s: took over another handler's session", other.sessionOwner())
		}
	}
	if got := first.admittedBefore(httptest.NewRequest(http.MethodGet, "/", nil)); got != nil {
		t.Error("a request nobody admitted has a session")
	}
}
