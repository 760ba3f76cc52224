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
		if known, err := s.Connection.UnmarshalOption(d); known {
			if err != nil {
				return err
			}
			continue
		}
		var err error
		switch opt {
		case "key_prefix":
			err = cfgargs.One(d, &s.KeyPrefix)
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
					err = cfgargs.ParseDuration(d, "recheck_interval", v, &s.RecheckInterval)
				}
			}
		default:
			return d.Errf("unknown redis store option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	if err := s.Check(); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

// UnmarshalOption reads the connection option the dispenser is at (url,
// sentinel_master, sentinel_urls, sentinel_password, cluster_urls, db,
// username, password, tls { ... }, pool_size, dial_timeout, read_timeout,
// write_timeout), for any block that takes Redis settings. known is false
// for any other option, which is left to the caller.
func (c *Connection) UnmarshalOption(d *caddyfile.Dispenser) (known bool, err error) {
	switch d.Val() {
	case "url":
		err = cfgargs.One(d, &c.URL)
	case "sentinel_master":
		err = cfgargs.One(d, &c.SentinelMaster)
	case "sentinel_urls":
		err = cfgargs.Many(d, &c.SentinelURLs)
	case "sentinel_password":
		err = cfgargs.One(d, &c.SentinelPassword)
	case "cluster_urls":
		err = cfgargs.Many(d, &c.ClusterURLs)
	case "db":
		err = cfgargs.Int(d, &c.DB, 0)
	case "username":
		err = cfgargs.One(d, &c.Username)
	case "password":
		err = cfgargs.One(d, &c.Password)
	case "tls":
		err = c.unmarshalTLS(d)
	case "pool_size":
		err = cfgargs.Int(d, &c.PoolSize, 0)
	case "dial_timeout":
		err = cfgargs.Duration(d, &c.DialTimeout)
	case "read_timeout":
		err = cfgargs.Duration(d, &c.ReadTimeout)
	case "write_timeout":
		err = cfgargs.Duration(d, &c.WriteTimeout)
	default:
		return false, nil
	}
	return true, err
}

func (c *Connection) unmarshalTLS(d *caddyfile.Dispenser) error {
	c.TLS = &TLSConfig{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "ca":
			err = cfgargs.One(d, &c.TLS.CA)
		case "cert":
			err = cfgargs.One(d, &c.TLS.Cert)
		case "key":
			err = cfgargs.One(d, &c.TLS.Key)
		case "server_name":
			err = cfgargs.One(d, &c.TLS.ServerName)
		case "insecure_skip_verify":
			err = cfgargs.Flag(d, &c.TLS.InsecureSkipVerify)
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
