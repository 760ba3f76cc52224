package testidp

// oauth2-proxy v7.8.1, the relying party whose sessions oidc_session takes
// over (migrate_oauth2_proxy): tests log in through it to get the cookies
// and Redis records it really writes. Pinned in tools/bench and built by
// scripts/install-deps.sh into <repo root>/.bin/oauth2-proxy.

import (
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// OAuth2ProxyDefaultCookie is oauth2-proxy's default --cookie-name.
const OAuth2ProxyDefaultCookie = "_oauth2_proxy"

// OAuth2ProxyOptions is how one oauth2-proxy is run.
type OAuth2ProxyOptions struct {
	// Addr is host:port to listen on; its CallbackURL must be registered
	// at the IdP before the proxy starts, so the caller picks it.
	Addr string
	// Issuer, ClientID and ClientSecret are the OIDC provider and client.
	Issuer, ClientID, ClientSecret string
	// CookieSecret is --cookie-secret.
	CookieSecret string
	// CookieName is --cookie-name; "" for OAuth2ProxyDefaultCookie.
	CookieName string
	// RedisURL selects the Redis session store; "" for the cookie store.
	RedisURL string
	// Scopes is --scope; "" for openid email profile groups offline_access.
	Scopes string
	// Args are more flags.
	Args []string
}

// CallbackURL is the proxy's redirect URL, to register at the IdP.
func (o OAuth2ProxyOptions) CallbackURL() string { return "http://" + o.Addr + "/oauth2/callback" }

// OAuth2Proxy is a running oauth2-proxy in front of a static 200 upstream.
type OAuth2Proxy struct {
	URL     string // http://Addr
	Options OAuth2ProxyOptions
	LogPath string

	proc process
}

// OAuth2ProxyBinary returns the path of the oauth2-proxy binary:
// $OIDC_SESSION_OAUTH2_PROXY when set, else <repo root>/.bin/oauth2-proxy.
// When it is missing the test fails if CI=true and is skipped otherwise.
func OAuth2ProxyBinary(t testing.TB) string {
	t.Helper()
	return locateBinary(t, "OIDC_SESSION_OAUTH2_PROXY", "oauth2-proxy", "oauth2-proxy")
}

// StartOAuth2Proxy runs oauth2-proxy with o until the test ends (stopped
// by PID), and returns once it answers /ping.
func StartOAuth2Proxy(t testing.TB, o OAuth2ProxyOptions) *OAuth2Proxy {
	t.Helper()
	bin := OAuth2ProxyBinary(t)
	if o.Scopes == "" {
		o.Scopes = "openid email profile groups offline_access"
	}
	args := []string{
		"--provider=oidc",
		"--oidc-issuer-url=" + o.Issuer,
		"--client-id=" + o.ClientID,
		"--client-secret=" + o.ClientSecret,
		"--cookie-secret=" + o.CookieSecret,
		"--cookie-secure=false",
		"--email-domain=*",
		"--scope=" + o.Scopes,
		"--code-challenge-method=S256",
		"--upstream=static://200",
		"--http-address=" + o.Addr,
		"--redirect-url=" + o.CallbackURL(),
		"--skip-provider-button",
		"--approval-prompt=auto",
	}
	if o.CookieName != "" {
		args = append(args, "--cookie-name="+o.CookieName)
	}
	if o.RedisURL != "" {
		args = append(args, "--session-store-type=redis", "--redis-connection-url="+o.RedisURL)
	}
	args = append(args, o.Args...)
	p := &OAuth2Proxy{URL: "http://" + o.Addr, Options: o, LogPath: filepath.Join(t.TempDir(), "oauth2-proxy.log")}
	p.proc = process{what: "oauth2-proxy", logPath: p.LogPath}
	if err := p.proc.launch(t, exec.Command(bin, args...), p.URL+"/ping"); err != nil {
		t.Fatalf("testidp: %v", err)
	}
	return p
}

// CookieName is the proxy's session cookie name.
func (p *OAuth2Proxy) CookieName() string {
	if p.Options.CookieName != "" {
		return p.Options.CookieName
	}
	return OAuth2ProxyDefaultCookie
}

// ProxyLogin is one finished login through a proxy: the session cookies it
// set and the time window in which it was made.
type ProxyLogin struct {
	Cookies       []*http.Cookie
	Before, After time.Time
}

// LoginDex logs dex's user in through p (a browser at /oauth2/start,
// Dex's password form, the callback), with preset cookies already in the
// browser, and returns the session cookies the callback set.
func (p *OAuth2Proxy) LoginDex(t testing.TB, dex *Dex, preset ...*http.Cookie) ProxyLogin {
	t.Helper()
	client := NewBrowserClient()
	u, _ := url.Parse(p.URL)
	client.Jar.SetCookies(u, preset)
	l := ProxyLogin{Before: time.Now()}
	resp, err := LoginDex(client, p.URL+"/oauth2/start?rd=/", dex.Email, dex.Password)
	if err != nil {
		t.Fatalf("login through oauth2-proxy: %v", err)
	}
	resp.Body.Close()
	l.After = time.Now()
	l.Cookies = p.sessionCookies(t, resp)
	return l
}

// LoginAuto logs in at an IdP that answers the authorization request
// without a form (mockoidc), following redirects up to the proxy's
// callback, and returns the session cookies the callback set.
func (p *OAuth2Proxy) LoginAuto(t testing.TB) ProxyLogin {
	t.Helper()
	client := NewBrowserClient()
	l := ProxyLogin{Before: time.Now()}
	next := p.URL + "/oauth2/start?rd=/"
	for hop := 0; ; hop++ {
		if hop == 10 {
			t.Fatal("no callback after 10 redirects")
		}
		resp, err := client.Get(next)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Request.URL.Path == "/oauth2/callback" {
			l.After = time.Now()
			l.Cookies = p.sessionCookies(t, resp)
			return l
		}
		loc, err := resp.Location()
		if err != nil {
			t.Fatalf("GET %s: status %d and no redirect", next, resp.StatusCode)
		}
		next = loc.String()
	}
}

// sessionCookies returns the session cookies (the cookie and its chunks)
// set by the callback response.
func (p *OAuth2Proxy) sessionCookies(t testing.TB, resp *http.Response) []*http.Cookie {
	t.Helper()
	if resp.Request.URL.Path != "/oauth2/callback" || resp.StatusCode != http.StatusFound {
		t.Fatalf("callback %s answered %d, not a redirect after login", resp.Request.URL.Path, resp.StatusCode)
	}
	name := p.CookieName()
	var out []*http.Cookie
	for _, c := range resp.Cookies() {
		chunk, isChunk := strings.CutPrefix(c.Name, name+"_")
		if _, err := strconv.Atoi(chunk); (c.Name == name || isChunk && err == nil) && c.Value != "" {
			out = append(out, &http.Cookie{Name: c.Name, Value: c.Value})
		}
	}
	if len(out) == 0 {
		t.Fatalf("callback set no %s cookie", name)
	}
	return out
}

// Serves reports whether the proxy itself lets a request with these
// cookies through to its upstream (200) rather than to a login.
func (p *OAuth2Proxy) Serves(t testing.TB, cookies []*http.Cookie) bool {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.URL+"/", nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := withoutRedirects(http.DefaultClient).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
