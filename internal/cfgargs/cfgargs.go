// Package cfgargs reads the arguments of Caddyfile subdirectives for the
// plugin and its store modules, with error messages that name the
// subdirective and say what is expected.
package cfgargs

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// One reads exactly one argument of the current subdirective.
func One(d *caddyfile.Dispenser, dst *string) error {
	name := d.Val()
	if !d.NextArg() {
		return d.Errf("%s needs a value", name)
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.Errf("%s takes one value", name)
	}
	return nil
}

// Many reads one or more arguments, appending them to dst.
func Many(d *caddyfile.Dispenser, dst *[]string) error {
	name := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.Errf("%s needs at least one value", name)
	}
	*dst = append(*dst, args...)
	return nil
}

// Flag reads a subdirective that takes no argument and sets dst.
func Flag(d *caddyfile.Dispenser, dst *bool) error {
	name := d.Val()
	if d.NextArg() {
		return d.Errf("%s takes no value", name)
	}
	*dst = true
	return nil
}

// OnOff reads on/off (or true/false).
func OnOff(d *caddyfile.Dispenser, dst *bool) error {
	var v string
	if err := One(d, &v); err != nil {
		return err
	}
	switch v {
	case "on", "true":
		*dst = true
	case "off", "false":
		*dst = false
	default:
		return d.Errf("expected on or off, not %q", v)
	}
	return nil
}

// Int reads a whole number of at least min.
func Int(d *caddyfile.Dispenser, dst *int, min int) error {
	name := d.Val()
	var v string
	if err := One(d, &v); err != nil {
		return err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min {
		return d.Errf("%s must be a number of at least %d, not %q", name, min, v)
	}
	*dst = n
	return nil
}

// Duration reads a positive duration (Caddy's syntax: 30s, 12h, 7d).
func Duration(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	name := d.Val()
	var v string
	if err := One(d, &v); err != nil {
		return err
	}
	return ParseDuration(d, name, v, dst)
}

// ParseDuration parses v, the value of subdirective name, as a positive
// duration.
func ParseDuration(d *caddyfile.Dispenser, name, v string, dst *caddy.Duration) error {
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur <= 0 {
		return d.Errf("%s: %q is not a positive duration (e.g. 30m, 12h)", name, v)
	}
	*dst = caddy.Duration(dur)
	return nil
}
