package oidcsession

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/oidc-session/oidc_session/sessions"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI serves oidc_session's endpoints on Caddy's admin API. It needs
// no configuration: Caddy loads every admin.api module.
//
//	GET /oidc_session/health  whether each session store is reachable
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.oidc_session",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the admin routes.
func (AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{
		Pattern: "/oidc_session/health",
		Handler: caddy.AdminHandlerFunc(serveHealth),
	}}
}

var errMethod = errors.New("method not allowed")

type storeHealth struct {
	Store     string `json:"store"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
}

// serveHealth answers 200 when every store is reachable, 503 otherwise,
// with the detail per store. It is meant for readiness probes.
func serveHealth(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errMethod}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	out := struct {
		Ready  bool          `json:"ready"`
		Stores []storeHealth `json:"stores"`
	}{Ready: true, Stores: []storeHealth{}}
	for _, s := range registry.stores() {
		h := storeHealth{Store: storeName(s), Reachable: true}
		if p, ok := s.(sessions.Pinger); ok {
			if err := p.Ping(ctx); err != nil {
				h.Reachable, h.Error = false, err.Error()
				out.Ready = false
			}
		}
		out.Stores = append(out.Stores, h)
	}
	w.Header().Set("Content-Type", "application/json")
	if !out.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	return json.NewEncoder(w).Encode(out)
}

func storeName(s sessions.Store) string {
	if m, ok := s.(caddy.Module); ok {
		return string(m.CaddyModule().ID.Name())
	}
	return "unknown"
}

// Interface guards
var _ caddy.AdminRouter = AdminAPI{}
