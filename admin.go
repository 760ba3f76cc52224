package oidcsession

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
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
//	GET    /oidc_session/health             whether each session store is reachable
//	GET    /oidc_session/sessions[?sub=S][&provider=P]  live sessions of the server-side stores (streamed)
//	DELETE /oidc_session/sessions/<id>                  end one session
//	DELETE /oidc_session/sessions?sub=S[&provider=P]    end a user's sessions
//	DELETE /oidc_session/sessions?provider=P            end the sessions of one identity provider
//	DELETE /oidc_session/sessions                       end all sessions
//
// Each session object names its identity provider ("provider": the
// provider block's name, "default" for a site with one IdP). A subject is
// unique per provider only: give provider with sub on a site with several.
//
// Sessions in the cookie store live only in browsers: they cannot be
// listed or ended here (responses name such stores under "unmanaged").
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
	return []caddy.AdminRoute{
		{Pattern: "/oidc_session/health", Handler: caddy.AdminHandlerFunc(serveHealth)},
		{Pattern: "/oidc_session/sessions", Handler: caddy.AdminHandlerFunc(serveSessions)},
		{Pattern: "/oidc_session/sessions/", Handler: caddy.AdminHandlerFunc(serveSessions)},
	}
}

type storeHealth struct {
	Store     string `json:"store"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	Report    string `json:"report,omitempty"`
}

// serveHealth answers 200 when every store is reachable, 503 otherwise,
// with the detail per store. It is meant for readiness probes.
func serveHealth(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return methodNotAllowed()
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
		if rep, ok := s.(sessions.Reporter); ok {
			h.Report = rep.Report()
		}
		out.Stores = append(out.Stores, h)
	}
	w.Header().Set("Content-Type", "application/json")
	if !out.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	return json.NewEncoder(w).Encode(out)
}

func serveSessions(w http.ResponseWriter, r *http.Request) error {
	id, hasID := strings.CutPrefix(r.URL.Path, "/oidc_session/sessions/")
	managers, unmanaged := registry.managers()
	switch {
	case r.Method == http.MethodGet && !hasID:
		return listSessions(w, r, managers, unmanaged)
	case r.Method == http.MethodDelete:
		return endSessions(w, r, managers, unmanaged, id, hasID)
	}
	return methodNotAllowed()
}

// listSessions streams the sessions as they are read, so a store with
// 100k sessions never sits in memory at once. An error after the first
// byte ends the array and is reported in an "error" member.
func listSessions(w http.ResponseWriter, r *http.Request, managers []sessions.Manager, unmanaged []string) error {
	sub, provider, err := sessionFilters(r)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	fmt.Fprint(w, `{"sessions":[`)
	n := 0
	var walkErr error
	for _, m := range managers {
		walkErr = m.Sessions(r.Context(), sub, func(meta sessions.Meta) error {
			name := registry.providerOf(m, &meta)
			if provider != "" && name != provider {
				return nil
			}
			if n > 0 {
				fmt.Fprint(w, ",")
			}
			n++
			return enc.Encode(adminSession{meta, name})
		})
		if walkErr != nil {
			break
		}
	}
	fmt.Fprintf(w, `],"count":%d`, n)
	if len(unmanaged) > 0 {
		b, _ := json.Marshal(unmanaged)
		fmt.Fprintf(w, `,"unmanaged":%s`, b)
	}
	if walkErr != nil {
		b, _ := json.Marshal(walkErr.Error())
		fmt.Fprintf(w, `,"error":%s`, b)
	}
	fmt.Fprint(w, "}\n")
	return nil
}

func endSessions(w http.ResponseWriter, r *http.Request, managers []sessions.Manager, unmanaged []string, id string, hasID bool) error {
	ctx := r.Context()
	sub, provider, err := sessionFilters(r)
	if err != nil {
		return err
	}
	ended := 0
	for _, m := range managers {
		var n int
		var err error
		switch {
		case hasID:
			var ok bool
			if ok, err = m.EndID(ctx, id); ok {
				n = 1
			}
		case provider != "":
			n, err = endOfProvider(ctx, m, sub, provider)
		case sub != "":
			n, err = m.EndSubject(ctx, "", sub)
		default:
			n, err = m.EndAll(ctx)
		}
		ended += n
		for i := 0; i < n; i++ {
			metricLogout(nil, logoutAdmin)
		}
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
		}
	}
	if hasID && ended == 0 {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("no such session")}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(struct {
		Ended     int      `json:"ended"`
		Unmanaged []string `json:"unmanaged,omitempty"`
	}{ended, unmanaged})
}

// sessionFilters are the sub and provider parameters of a request for
// sessions. One given empty is a 400: `DELETE ...?provider=` must not end
// every session, as a request without it does.
func sessionFilters(r *http.Request) (sub, provider string, err error) {
	q := r.URL.Query()
	for _, name := range []string{"sub", "provider"} {
		if q.Has(name) && q.Get(name) == "" {
			return "", "", caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("parameter %s is empty: give a value, or leave it out", name)}
		}
	}
	return q.Get("sub"), q.Get("provider"), nil
}

// adminSession is a session as the admin API lists it.
type adminSession struct {
	sessions.Meta
	Provider string `json:"provider,omitempty"`
}

// endOfProvider ends the sessions of one provider in m (of one subject,
// when sub is not empty).
func endOfProvider(ctx context.Context, m sessions.Manager, sub, provider string) (int, error) {
	var ids []string
	err := m.Sessions(ctx, sub, func(meta sessions.Meta) error {
		if registry.providerOf(m, &meta) == provider {
			ids = append(ids, meta.ID)
		}
		return nil
	})
	n := 0
	for _, id := range ids {
		if err != nil {
			break
		}
		var ok bool
		if ok, err = m.EndID(ctx, id); ok {
			n++
		}
	}
	return n, err
}

func methodNotAllowed() error {
	return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed")}
}

func storeName(s sessions.Store) string {
	if m, ok := s.(caddy.Module); ok {
		return string(m.CaddyModule().ID.Name())
	}
	return "unknown"
}

// Interface guards
var _ caddy.AdminRouter = AdminAPI{}
