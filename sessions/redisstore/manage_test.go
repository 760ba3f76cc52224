package redisstore

import (
	"testing"

	"github.com/oidc-session/oidc_session/internal/testredis"
	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/storetest"
)

// TestManager runs the manager conformance suite on Redis, with a key
// prefix so the indexes are looked for where the store puts them.
func TestManager(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	storetest.RunManager(t, func(t *testing.T, env sessions.Env) sessions.Store {
		return newStore(t, &Store{URL: srv.URL(), KeyPrefix: "mgr:"}, env)
	})
}
