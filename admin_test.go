package oidcsession

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
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
