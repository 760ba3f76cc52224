package oidcsession

import (
	"net"
	"net/http"
	"net/netip"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"golang.org/x/time/rate"
)

// sourceLimiter lets each client address do something expensive a few
// times per interval, so one client cannot spend what the others need: a
// flood of forged logout tokens from one address leaves the IdP's own
// logout requests untouched. It remembers at most max addresses.
type sourceLimiter struct {
	limit rate.Limit
	burst int
	max   int

	mu      sync.Mutex
	sources map[string]*rate.Limiter
}

func newSourceLimiter(limit rate.Limit, burst, max int) *sourceLimiter {
	return &sourceLimiter{limit: limit, burst: burst, max: max, sources: map[string]*rate.Limiter{}}
}

func (l *sourceLimiter) allow(source string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.sources[source]
	if !ok {
		if len(l.sources) >= l.max {
			for k := range l.sources { // any one: map order is random
				delete(l.sources, k)
				break
			}
		}
		lim = rate.NewLimiter(l.limit, l.burst)
		l.sources[source] = lim
	}
	return lim.Allow()
}

// clientAddress names the client of r for rate limits: the address Caddy
// determined (the real client behind trusted_proxies), an IPv6 address by
// its /64, which one host usually holds whole.
func clientAddress(r *http.Request) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if ip == "" {
		ip, _, _ = net.SplitHostPort(r.RemoteAddr)
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.Unmap()
	if addr.Is6() {
		if p, err := addr.Prefix(64); err == nil {
			return p.String()
		}
	}
	return addr.String()
}
