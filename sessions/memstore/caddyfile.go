package memstore

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
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
			if !d.AllArgs(&s.StateFile) || s.StateFile == "" {
				return d.ArgErr()
			}
		case "max_sessions":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return d.Errf("max_sessions: %q is not a number >= 0", v)
			}
			s.MaxSessions = n
		default:
			return d.Errf("unknown memory store option %q", opt)
		}
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*Store)(nil)
