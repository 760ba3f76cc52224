package testcaddy

import (
	"strings"
	"testing"

	"github.com/oidc-session/oidc_session/internal/testredis"
)

// StoreCase is one session store of the matrix that store-parametrised
// tests run against. A new store is one more entry in Stores.
type StoreCase struct {
	// Name is the store module's name: cookie, memory, redis.
	Name string
	// ServerSide stores can list and end sessions without the cookie.
	ServerSide bool
	// Config returns the store subdirective for an oidc_session block with
	// the given options, starting what the store needs for the test (a
	// redis-server); "" for the default cookie store without options.
	Config func(t testing.TB, options ...string) string
}

// Stores is the matrix: every store of the plugin.
var Stores = []StoreCase{
	{Name: "cookie", Config: func(_ testing.TB, options ...string) string {
		if len(options) == 0 {
			return ""
		}
		return StoreBlock("cookie", options...)
	}},
	{Name: "memory", ServerSide: true, Config: func(_ testing.TB, options ...string) string {
		return StoreBlock("memory", options...)
	}},
	{Name: "redis", ServerSide: true, Config: func(t testing.TB, options ...string) string {
		srv := testredis.Start(t, testredis.Options{})
		return StoreBlock("redis", append([]string{"url " + srv.URL()}, options...)...)
	}},
}

// ServerSideStores is the part of Stores that can list and end sessions.
func ServerSideStores() []StoreCase {
	var out []StoreCase
	for _, s := range Stores {
		if s.ServerSide {
			out = append(out, s)
		}
	}
	return out
}

// StoreBlock is a store subdirective of an oidc_session block in a site
// (as SiteConfig indents it): store <name> { <option> ... }.
func StoreBlock(name string, options ...string) string {
	if len(options) == 0 {
		return "store " + name
	}
	return "store " + name + " {\n\t\t\t" + strings.Join(options, "\n\t\t\t") + "\n\t\t}"
}
