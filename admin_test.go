package oidcsession

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/oidc-session/oidc_session/sessions"
)

// TestAdminEmptyFilter: a sub or provider parameter given empty is a 400,
// never "every session" (as a request without it is).
func TestAdminEmptyFilter(t *testing.T) {
	for _, target := range []string{"/oidc_session/sessions?provider=", "/oidc_session/sessions?sub=", "/oidc_session/sessions?sub=u&provider="} {
		for _, method := range []string{http.MethodDelete, http.MethodGet} {
			err := serveSessions(httptest.NewRecorder(), httptest.NewRequest(method, target, nil))
			var api caddy.APIError
			if !errors.As(err, &api) || api.HTTPStatus != http.StatusBadRequest {
				t.Errorf("%s %s: %v; want 400", method, target, err)
			}
		}
	}
}

// TestProviderOfDeterministic: handlers of one store that name an issuer
// differently give the admin API one name, whatever the map order.
func TestProviderOfDeterministic(t *testing.T) {
	a := twoProviders(t, nil)
	b := twoProviders(t, func(h *Handler) { h.Providers[1].Name = "extern" })
	r := &storeRegistry{entries: map[*Handler]sessions.Store{a: a.store, b: a.store}}
	meta := &sessions.Meta{Issuer: "http://127.0.0.1:1/partners"}
	for i := 0; i < 20; i++ {
		if got := r.providerOf(a.store, meta); got != "extern" {
			t.Fatalf("providerOf: %q, want extern (the least name)", got)
		}
	}
}
