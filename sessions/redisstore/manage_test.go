package redisstore

import (
	"testing"

	"github.com/oidc-session/oidc_session/internal/testredis"
	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/storetest"
)

// TestManager runs the manager conformance suite on a standalone Redis,
// with a key prefix so the indexes are looked for where the store puts
// them, and on a Cluster, where listing walks every master.
func TestManager(t *testing.T) {
	t.Run("Standalone", func(t *testing.T) {
		srv := testredis.Start(t, testredis.Options{})
		storetest.RunManager(t, func(t *testing.T, env sessions.Env) sessions.Store {
			return newStore(t, &Store{Connection: Connection{URL: srv.URL()}, KeyPrefix: "mgr:"}, env)
		})
	})
	t.Run("Cluster", func(t *testing.T) {
		cl := testredis.StartCluster(t, testredis.ClusterOptions{Masters: 3})
		storetest.RunManager(t, func(t *testing.T, env sessions.Env) sessions.Store {
			return newStore(t, &Store{Connection: Connection{ClusterURLs: cl.Addrs}}, env)
		})
	})
}
