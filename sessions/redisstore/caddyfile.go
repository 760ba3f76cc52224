package redisstore

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/oidc-session/oidc_session/internal/cfgargs"
)

// UnmarshalCaddyfile sets up the store from Caddyfile tokens:
//
//	store redis {
//		url               redis://host:port[/db] | rediss://...
//		sentinel_master   <name>
//		sentinel_urls     <host:port...>
//		sentinel_password <password>
//		cluster_urls      <host:port...>
//		db                <n>
//		username          <user>
//		password          <password>
//		key_prefix        <prefix>
//		tls {
//			ca <file>
//			cert <file>
//			key <file>
//			server_name <name>
//			insecure_skip_verify
//		}
//		pool_size     <n>
//		dial_timeout  <duration>
//		read_timeout  <duration>
//		write_timeout <duration>
//		lock_ttl      <duration>
//		lock_wait     <duration>
//		recheck_interval <duration> | always
//	}
func (s *Store) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // store name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		var err error
		switch opt {
		case "url":
			err = cfgargs.One(d, &s.URL)
		case "sentinel_master":
			err = cfgargs.One(d, &s.SentinelMaster)
		case "sentinel_urls":
			err = cfgargs.Many(d, &s.SentinelURLs)
		case "sentinel_password":
			err = cfgargs.One(d, &s.SentinelPassword)
		case "cluster_urls":
			err = cfgargs.Many(d, &s.ClusterURLs)
		case "db":
			err = cfgargs.Int(d, &s.DB, 0)
		case "username":
			err = cfgargs.One(d, &s.Username)
		case "password":
			err = cfgargs.One(d, &s.Password)
		case "key_prefix":
			err = cfgargs.One(d, &s.KeyPrefix)
		case "tls":
			err = s.unmarshalTLS(d)
		case "pool_size":
			err = cfgargs.Int(d, &s.PoolSize, 0)
		case "dial_timeout":
			err = cfgargs.Duration(d, &s.DialTimeout)
		case "read_timeout":
			err = cfgargs.Duration(d, &s.ReadTimeout)
		case "write_timeout":
			err = cfgargs.Duration(d, &s.WriteTimeout)
		case "lock_ttl":
			err = cfgargs.Duration(d, &s.LockTTL)
		case "lock_wait":
			err = cfgargs.Duration(d, &s.LockWait)
		case "recheck_interval":
			var v string
			if err = cfgargs.One(d, &v); err == nil {
				if v == "always" {
					s.RecheckInterval = -1
				} else {
					err = cfgargs.ParseDuration(d, v, &s.RecheckInterval)
				}
			}
		default:
			return d.Errf("unknown redis store option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	if err := s.validate(); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

func (s *Store) unmarshalTLS(d *caddyfile.Dispenser) error {
	s.TLS = &TLSConfig{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "ca":
			err = cfgargs.One(d, &s.TLS.CA)
		case "cert":
			err = cfgargs.One(d, &s.TLS.Cert)
		case "key":
			err = cfgargs.One(d, &s.TLS.Key)
		case "server_name":
			err = cfgargs.One(d, &s.TLS.ServerName)
		case "insecure_skip_verify":
			err = cfgargs.Flag(d, &s.TLS.InsecureSkipVerify)
		default:
			return d.Errf("unknown redis tls option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*Store)(nil)
