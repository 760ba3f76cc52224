// Command caddy is Caddy with its standard modules and oidc_session, for the
// demo and the tests. Production builds can use xcaddy instead:
//
//	xcaddy build --with github.com/oidc-session/oidc_session
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/oidc-session/oidc_session"
)

func main() {
	caddycmd.Main()
}
