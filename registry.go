package oidcsession

import (
	"sync"

	"github.com/oidc-session/oidc_session/sessions"
)

// registry holds the stores of the handlers of the running config(s), for
// the admin API: admin modules are created apart from the apps and cannot
// reach handlers otherwise. Handlers join in Provision and leave in Cleanup.
var registry = &storeRegistry{entries: map[*Handler]sessions.Store{}}

type storeRegistry struct {
	mu      sync.RWMutex
	entries map[*Handler]sessions.Store
}

func (r *storeRegistry) join(h *Handler, s sessions.Store) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries[h] = s
}

func (r *storeRegistry) leave(h *Handler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.entries, h)
}

// stores returns the registered stores, each once even when several
// handlers share it.
func (r *storeRegistry) stores() []sessions.Store {
	r.mu.RLock()
	defer r.mu.RUnlock()
	seen := map[sessions.Store]bool{}
	var out []sessions.Store
	for _, s := range r.entries {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// managers returns the stores that can list and end sessions, and the
// names of those that cannot.
func (r *storeRegistry) managers() ([]sessions.Manager, []string) {
	var ms []sessions.Manager
	var unmanaged []string
	for _, s := range r.stores() {
		if m, ok := s.(sessions.Manager); ok {
			ms = append(ms, m)
		} else if name := storeName(s); !contains(unmanaged, name) {
			unmanaged = append(unmanaged, name)
		}
	}
	return ms, unmanaged
}

// providerOf names the identity provider of a session of store s, as the
// handlers of s know it; "" when none of them has its issuer. When their
// names for it differ, the least one, whatever the order of the handlers.
func (r *storeRegistry) providerOf(s any, m *sessions.Meta) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	name := ""
	for h, st := range r.entries {
		if any(st) != s {
			continue
		}
		if p := h.idpByIssuer[m.IssuerOf(h.primary().provider.Issuer())]; p != nil && (name == "" || p.name < name) {
			name = p.name
		}
	}
	return name
}
