// Package e2e runs Caddy with oidc_session as separate processes (the
// repository's cmd/caddy, built once per test binary, or an xcaddy build)
// against real identity providers and Redis. Everything listens on
// 127.0.0.1 only and every wait is bounded. A missing external component
// (Dex, the zitadel example OP, redis-server) fails the test with CI=true
// and skips it otherwise; scripts/install-deps.sh installs them.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/internal/testcaddy"
	"github.com/oidc-session/oidc_session/internal/testenv"
	"github.com/oidc-session/oidc_session/internal/testidp"
)

const (
	// cookieSecret is >= 32 characters, as the handler requires.
	cookieSecret  = "e2e-cookie-secret-0123456789-abcdefghij"
	buildTimeout  = 8 * time.Minute
	startTimeout  = 20 * time.Second
	stopTimeout   = 10 * time.Second
	clientTimeout = 15 * time.Second
)

var (
	workDir   string // removed after the tests
	buildOnce sync.Once
	caddyPath string
	buildErr  error
	buildTook time.Duration
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "oidc-session-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	workDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func goTool(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if p := "/usr/local/go/bin/go"; fileExists(p) {
		return p
	}
	t.Fatal("go toolchain not found on PATH")
	return ""
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// caddyBinary builds ./cmd/caddy (this repository's Caddy with the plugin)
// once per test binary, bounded by buildTimeout.
func caddyBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root := testenv.RepoRoot(t)
		out := filepath.Join(workDir, "caddy")
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		start := time.Now()
		cmd := exec.CommandContext(ctx, goTool(t), "build", "-o", out, "./cmd/caddy")
		cmd.Dir = root
		cmd.WaitDelay = 5 * time.Second
		b, err := cmd.CombinedOutput()
		buildTook = time.Since(start)
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/caddy (%v): %v\n%s", buildTook.Round(time.Millisecond), err, b)
			return
		}
		caddyPath = out
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	t.Logf("caddy binary %s (built in %v)", caddyPath, buildTook.Round(time.Millisecond))
	return caddyPath
}

// caddyProc is one running Caddy process.
type caddyProc struct {
	Admin   string // http://127.0.0.1:<port>
	LogPath string // Caddy's log (stdout+stderr)
	Dir     string

	cmd      *exec.Cmd
	done     chan struct{}
	stopOnce sync.Once
}

type caddyOpts struct {
	bin       string   // default caddyBinary
	adminAddr string   // 127.0.0.1:port (required)
	caddyfile string   // one of caddyfile or jsonConfig
	json      []byte   //
	env       []string // extra environment (for {env.*} placeholders)
	waitAddrs []string // host:port that must accept connections before returning
}

// globalOptions is testcaddy's global block for a Caddy process that logs
// to stderr (which startCaddy keeps in the process's log file).
func globalOptions(adminAddr, dir string) string {
	return testcaddy.GlobalOptions(adminAddr, filepath.Join(dir, "storage"), "stderr", "DEBUG")
}

// startCaddy runs `caddy run` with the given config and waits (bounded)
// until its admin endpoint answers and every waitAddrs accepts
// connections. The process is stopped in t.Cleanup; its log tail is
// printed when the test failed.
func startCaddy(t testing.TB, o caddyOpts) *caddyProc {
	t.Helper()
	bin := o.bin
	if bin == "" {
		bin = caddyBinary(t)
	}
	dir := t.TempDir()
	p := &caddyProc{Admin: "http://" + o.adminAddr, LogPath: filepath.Join(dir, "caddy.log"), Dir: dir, done: make(chan struct{})}
	var args []string
	switch {
	case o.caddyfile != "":
		cf := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(cf, []byte(o.caddyfile), 0o600); err != nil {
			t.Fatal(err)
		}
		args = []string{"run", "--config", cf, "--adapter", "caddyfile"}
	case o.json != nil:
		cf := filepath.Join(dir, "caddy.json")
		if err := os.WriteFile(cf, o.json, 0o600); err != nil {
			t.Fatal(err)
		}
		args = []string{"run", "--config", cf}
	default:
		t.Fatal("startCaddy: no config")
	}
	logFile, err := os.Create(p.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	// Keep Caddy's data and config directories (autosave, certificates)
	// inside the test's temporary directory.
	p.cmd.Env = append(os.Environ(),
		"HOME="+dir,
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
	)
	p.cmd.Env = append(p.cmd.Env, o.env...)
	p.cmd.Stdout = logFile
	p.cmd.Stderr = logFile
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start caddy: %v", err)
	}
	go func() {
		p.cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("tail of caddy log %s:\n%s", p.LogPath, testenv.Tail(p.LogPath, 60))
		}
	})
	if err := p.waitReady(startTimeout, o.waitAddrs); err != nil {
		t.Fatalf("caddy (admin %s) not ready: %v\nlog tail:\n%s", o.adminAddr, err, testenv.Tail(p.LogPath, 40))
	}
	return p
}

func (p *caddyProc) waitReady(timeout time.Duration, addrs []string) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		err := func() error {
			resp, err := client.Get(p.Admin + "/config/")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("admin /config/: %d", resp.StatusCode)
			}
			for _, a := range addrs {
				c, err := net.DialTimeout("tcp", a, time.Second)
				if err != nil {
					return err
				}
				c.Close()
			}
			return nil
		}()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return errors.New("caddy exited during startup")
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
	}
}

// Stop ends Caddy by PID (SIGTERM, then SIGKILL) and waits for it.
func (p *caddyProc) Stop() {
	p.stopOnce.Do(func() {
		if p.cmd == nil || p.cmd.Process == nil {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			return
		case <-time.After(stopTimeout):
		}
		_ = p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
		}
	})
}

// adminDo sends a request to the admin API and returns status and body.
func (p *caddyProc) adminDo(t testing.TB, method, path, contentType string, body []byte) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, p.Admin+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, b
}

// metric returns the value of an unlabelled counter from the admin
// endpoint's /metrics, or -1 when it is not there.
func (p *caddyProc) metric(t testing.TB, name string) float64 {
	t.Helper()
	code, body := p.adminDo(t, http.MethodGet, "/metrics", "", nil)
	if code != http.StatusOK {
		return -1
	}
	for _, line := range strings.Split(string(body), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			var v float64
			if _, err := fmt.Sscan(f[1], &v); err == nil {
				return v
			}
		}
	}
	return -1
}

// browser is a cookie-keeping HTTP client that does not follow redirects.
type browser struct {
	t      testing.TB
	client *http.Client
}

func newBrowser(t testing.TB) *browser {
	c := testidp.NewBrowserClient()
	c.Timeout = clientTimeout
	return &browser{t: t, client: c}
}

// navigate GETs target as a top-level browser navigation and returns the
// response (body read and closed) and its body.
func (b *browser) navigate(target string) (*http.Response, string) {
	b.t.Helper()
	return b.do(target, "Accept: text/html", "Sec-Fetch-Mode: navigate")
}

// api GETs target as a fetch() of JSON would.
func (b *browser) api(target string) (*http.Response, string) {
	b.t.Helper()
	return b.do(target, "Accept: application/json", "Sec-Fetch-Mode: cors")
}

func (b *browser) do(target string, headers ...string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp, string(body)
}

// cookie returns the jar's cookie called name for base, or nil.
func (b *browser) cookie(base, name string) *http.Cookie {
	u, _ := url.Parse(base)
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// withCookie GETs target as a navigation with only the given cookie (a
// copy of a cookie replayed by another client).
func withCookie(t testing.TB, target string, c *http.Cookie) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	client := &http.Client{Timeout: clientTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp
}

func setCookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name && c.Value != "" {
			return c
		}
	}
	return nil
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
