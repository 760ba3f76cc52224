package oauth2proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/internal/testenv"
	"github.com/oidc-session/oidc_session/internal/testidp"
)

// The real oauth2-proxy v7.8.1 the sessions under test come from: pinned
// in tools/bench, built by scripts/install-deps.sh into .bin/oauth2-proxy.
const proxyHint = "run scripts/install-deps.sh (builds .bin/oauth2-proxy from tools/bench)"

// proxyBinary returns $OIDC_SESSION_OAUTH2_PROXY or <repo>/.bin/oauth2-proxy;
// a missing binary fails the test in CI and skips it elsewhere.
func proxyBinary(t *testing.T) string {
	t.Helper()
	path := os.Getenv("OIDC_SESSION_OAUTH2_PROXY")
	if path == "" {
		path = filepath.Join(testenv.RepoRoot(t), ".bin", "oauth2-proxy")
	}
	if st, err := os.Stat(path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		testenv.Missing(t, fmt.Sprintf("oauth2-proxy binary %s not usable (err=%v)", path, err), proxyHint)
	}
	return path
}

// proxyOptions is how one oauth2-proxy is run.
type proxyOptions struct {
	addr         string // host:port; its callback must be registered at the IdP
	issuer       string
	clientID     string
	clientSecret string
	cookieSecret string
	cookieName   string   // "" for the default
	redisURL     string   // "" for the cookie store
	scopes       string   // "" for openid email profile groups offline_access
	args         []string // more flags
}

// proxy is a running oauth2-proxy.
type proxy struct {
	URL  string // http://addr
	opts proxyOptions
	log  string
}

func (o proxyOptions) callback() string { return "http://" + o.addr + "/oauth2/callback" }

// startProxy runs oauth2-proxy in front of a static 200 upstream until the
// test ends, killing it by PID.
func startProxy(t *testing.T, o proxyOptions) *proxy {
	t.Helper()
	bin := proxyBinary(t)
	if o.scopes == "" {
		o.scopes = "openid email profile groups offline_access"
	}
	args := []string{
		"--provider=oidc",
		"--oidc-issuer-url=" + o.issuer,
		"--client-id=" + o.clientID,
		"--client-secret=" + o.clientSecret,
		"--cookie-secret=" + o.cookieSecret,
		"--cookie-secure=false",
		"--email-domain=*",
		"--scope=" + o.scopes,
		"--code-challenge-method=S256",
		"--upstream=static://200",
		"--http-address=" + o.addr,
		"--redirect-url=" + o.callback(),
		"--skip-provider-button",
		"--approval-prompt=auto",
	}
	if o.cookieName != "" {
		args = append(args, "--cookie-name="+o.cookieName)
	}
	if o.redisURL != "" {
		args = append(args, "--session-store-type=redis", "--redis-connection-url="+o.redisURL)
	}
	args = append(args, o.args...)
	p := &proxy{URL: "http://" + o.addr, opts: o, log: filepath.Join(t.TempDir(), "oauth2-proxy.log")}
	logFile, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start oauth2-proxy: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logFile.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("oauth2-proxy log tail:\n%s", testenv.Tail(p.log, 30))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		if resp, err := http.Get(p.URL + "/ping"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-done:
			t.Fatalf("oauth2-proxy exited at start:\n%s", testenv.Tail(p.log, 30))
		case <-ctx.Done():
			t.Fatalf("oauth2-proxy not answering /ping:\n%s", testenv.Tail(p.log, 30))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// login is one finished login through a proxy: the session cookies it set
// and the time window in which it was made.
type login struct {
	cookies       []*http.Cookie
	before, after time.Time
}

// loginDex logs the Dex user in through p (a browser at /oauth2/start,
// Dex's password form, the callback) with the given cookies already in the
// browser, and returns the session cookies the callback set.
func (p *proxy) loginDex(t *testing.T, dex *testidp.Dex, preset ...*http.Cookie) login {
	t.Helper()
	client := testidp.NewBrowserClient()
	u, _ := url.Parse(p.URL)
	client.Jar.SetCookies(u, preset)
	l := login{before: time.Now()}
	resp, err := testidp.LoginDex(client, p.URL+"/oauth2/start?rd=/", dex.Email, dex.Password)
	if err != nil {
		t.Fatalf("login through oauth2-proxy: %v", err)
	}
	resp.Body.Close()
	l.after = time.Now()
	l.cookies = p.sessionCookies(t, resp)
	return l
}

// loginAuto logs in at an IdP that answers the authorization request
// without a form (mockoidc), following redirects up to the proxy's
// callback, and returns the session cookies the callback set.
func (p *proxy) loginAuto(t *testing.T) login {
	t.Helper()
	client := testidp.NewBrowserClient()
	l := login{before: time.Now()}
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
			l.after = time.Now()
			l.cookies = p.sessionCookies(t, resp)
			return l
		}
		loc, err := resp.Location()
		if err != nil {
			t.Fatalf("GET %s: status %d and no redirect", next, resp.StatusCode)
		}
		next = loc.String()
	}
}

// sessionCookies returns the session cookies set by the callback response.
func (p *proxy) sessionCookies(t *testing.T, resp *http.Response) []*http.Cookie {
	t.Helper()
	if resp.Request.URL.Path != "/oauth2/callback" || resp.StatusCode != http.StatusFound {
		t.Fatalf("callback %s answered %d, not a redirect after login", resp.Request.URL.Path, resp.StatusCode)
	}
	name := p.cookieName()
	var out []*http.Cookie
	for _, c := range resp.Cookies() {
		if isOfName(c.Name, name) && c.Value != "" {
			out = append(out, &http.Cookie{Name: c.Name, Value: c.Value})
		}
	}
	if len(out) == 0 {
		t.Fatalf("callback set no %s cookie", name)
	}
	return out
}

func (p *proxy) cookieName() string {
	if p.opts.cookieName != "" {
		return p.opts.cookieName
	}
	return DefaultCookieName
}

// serves reports whether the proxy itself lets a request with these
// cookies through to its upstream (200) rather than to a login.
func (p *proxy) serves(t *testing.T, cookies []*http.Cookie) bool {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.URL+"/", nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// requestWith is a request carrying cookies.
func requestWith(cookies ...*http.Cookie) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, "http://site.test/", nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	return req
}

// cookieNames lists the names of cookies.
func cookieNames(cookies []*http.Cookie) []string {
	out := make([]string, len(cookies))
	for i, c := range cookies {
		out[i] = c.Name
	}
	return out
}

// mustRead reads with r and fails the test on an error.
func mustRead(t *testing.T, r *Reader, req *http.Request) *Session {
	t.Helper()
	s, err := r.Read(context.Background(), req)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return s
}

// wantErr reads with r and checks the error wraps want.
func wantErr(t *testing.T, r *Reader, req *http.Request, want error) error {
	t.Helper()
	s, err := r.Read(context.Background(), req)
	if !errors.Is(err, want) {
		t.Fatalf("Read: err = %v, session %v; want %v", err, s != nil, want)
	}
	if s != nil {
		t.Fatal("Read returned a session with its error")
	}
	return err
}

// tamper returns value with the byte at i changed to another character of
// the same alphabet.
func tamper(value string, i int) string {
	c := value[i]
	repl := byte('A')
	if c == 'A' {
		repl = 'B'
	}
	return value[:i] + string(repl) + value[i+1:]
}

// fields splits a signed value into payload, time and signature.
func fields(t *testing.T, value string) (payload, ts, sig string) {
	t.Helper()
	parts := strings.Split(value, "|")
	if len(parts) != 3 {
		t.Fatalf("signed value has %d fields", len(parts))
	}
	return parts[0], parts[1], parts[2]
}
