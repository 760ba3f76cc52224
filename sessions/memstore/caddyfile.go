package memstore

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/oidc-session/oidc_session/internal/cfgargs"
)

// UnmarshalCaddyfile sets up the store from Caddyfile tokens:
//
//	store memory {
//		state_file   <path>
//		max_sessions <n>
//	}
//
// The block is optional.
func (s *Store) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // store name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "state_file":
			if err := cfgargs.One(d, &s.StateFile); err != nil {
				return err
			}
		case "max_sessions":
			if err := cfgargs.Int(d, &s.MaxSessions, 0); err != nil {
				return err
			}
		default:
			return d.Errf("unknown memory store option %q", opt)
		}
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*Store)(nil)
