package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// adminTimeout bounds one call of the admin API. Listing a large Redis
// store streams for a while, so this is generous.
const adminTimeout = 5 * time.Minute

// adminClient calls Caddy's admin API at a listen address as Caddy's own
// commands accept it: host:port, or unix/<path> for a unix socket (with
// or without |<permission bits>). It does what caddycmd.AdminAPIRequest
// does, but keeps the status code and the answer, so that "no such
// session" (404) and "unreachable" get their own exit codes.
type adminClient struct {
	addr   string // as given, for messages
	origin string // scheme://host of the requests (and their Origin header)
	unix   bool
	client *http.Client
}

func newAdminClient(addr string) (*adminClient, error) {
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil {
		return nil, fmt.Errorf("admin address %q: %w", addr, err)
	}
	if na.PortRangeSize() > 1 {
		return nil, fmt.Errorf("admin address %q: a port range is not an address", addr)
	}
	if na.IsFdNetwork() {
		return nil, fmt.Errorf("admin address %q: a file descriptor of another process cannot be dialed; use the socket's path or a TCP address", addr)
	}
	network, dialAddr := na.Network, na.JoinHostPort(0)
	a := &adminClient{addr: addr, origin: "http://" + dialAddr, unix: na.IsUnixNetwork()}
	if a.unix {
		// Caddy accepts 127.0.0.1 as the Host of requests on its socket.
		dialAddr, _, _ = strings.Cut(na.Host, "|")
		a.origin = "http://127.0.0.1"
	}
	a.client = &http.Client{
		Timeout: adminTimeout,
		// A redirect would turn a DELETE into a GET elsewhere: never follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, dialAddr)
			},
		},
	}
	return a, nil
}

// adminError is an admin API call that failed: Status 0 when Caddy could
// not be reached.
type adminError struct {
	Status  int
	Message string
}

func (e *adminError) Error() string { return e.Message }

// do sends a request and returns the response for a 2xx status, or an
// adminError with Caddy's error message.
func (a *adminClient) do(ctx context.Context, method, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.origin+path, nil)
	if err != nil {
		return nil, err
	}
	if !a.unix {
		req.Header.Set("Origin", a.origin)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, &adminError{Message: fmt.Sprintf("Caddy's admin API at %s cannot be reached (is Caddy running, and is --admin its admin address?): %v", a.addr, networkError(err, adminTimeout))}
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	var apiErr struct {
		Error string `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &apiErr) == nil && apiErr.Error != "" {
		msg = apiErr.Error
	}
	if resp.StatusCode == http.StatusNotFound && msg != noSuchSession {
		msg = fmt.Sprintf("Caddy at %s has no oidc_session admin API: is it built with the plugin? (%s)", a.addr, msg)
	}
	return nil, &adminError{Status: resp.StatusCode, Message: printable(msg)}
}

// noSuchSession is the plugin's answer (404) to ending an unknown session
// ID, told apart from the 404 of a Caddy without the plugin.
const noSuchSession = "no such session"

// adminExit maps an admin API failure to an exit code: 3 for "no such
// session", 2 for the rest.
func adminExit(err error) int {
	var ae *adminError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound && ae.Message == noSuchSession {
		return exitRefused
	}
	return exitUnreachable
}
