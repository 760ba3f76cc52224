package redisstore

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
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
			err = one(d, &s.URL)
		case "sentinel_master":
			err = one(d, &s.SentinelMaster)
		case "sentinel_urls":
			err = many(d, &s.SentinelURLs)
		case "sentinel_password":
			err = one(d, &s.SentinelPassword)
		case "cluster_urls":
			err = many(d, &s.ClusterURLs)
		case "db":
			err = number(d, &s.DB)
		case "username":
			err = one(d, &s.Username)
		case "password":
			err = one(d, &s.Password)
		case "key_prefix":
			err = one(d, &s.KeyPrefix)
		case "tls":
			err = s.unmarshalTLS(d)
		case "pool_size":
			err = number(d, &s.PoolSize)
		case "dial_timeout":
			err = duration(d, &s.DialTimeout)
		case "read_timeout":
			err = duration(d, &s.ReadTimeout)
		case "write_timeout":
			err = duration(d, &s.WriteTimeout)
		case "lock_ttl":
			err = duration(d, &s.LockTTL)
		case "lock_wait":
			err = duration(d, &s.LockWait)
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
			err = one(d, &s.TLS.CA)
		case "cert":
			err = one(d, &s.TLS.Cert)
		case "key":
			err = one(d, &s.TLS.Key)
		case "server_name":
			err = one(d, &s.TLS.ServerName)
		case "insecure_skip_verify":
			if d.NextArg() {
				return d.ArgErr()
			}
			s.TLS.InsecureSkipVerify = true
		default:
			return d.Errf("unknown redis tls option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func one(d *caddyfile.Dispenser, dst *string) error {
	if !d.AllArgs(dst) {
		return d.ArgErr()
	}
	return nil
}

func many(d *caddyfile.Dispenser, dst *[]string) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	*dst = append(*dst, args...)
	return nil
}

func number(d *caddyfile.Dispenser, dst *int) error {
	var v string
	if err := one(d, &v); err != nil {
		return err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return d.Errf("%q is not a number >= 0", v)
	}
	*dst = n
	return nil
}

func duration(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	var v string
	if err := one(d, &v); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur <= 0 {
		return d.Errf("%q is not a positive duration", v)
	}
	*dst = caddy.Duration(dur)
	return nil
}

var _ caddyfile.Unmarshaler = (*Store)(nil)
