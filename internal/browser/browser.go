// Package browser runs a headless Chromium for tests and drives it with
// chromedp: start it with a fresh profile, open tabs, wait for a page,
// read cookies, count requests to a host, take screenshots.
//
// Chromium is the Debian package (/usr/bin/chromium), installed by
// scripts/install-deps.sh. When it is missing the test is skipped, except
// with CI=true where it fails.
package browser

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/oidc-session/oidc_session/internal/testenv"
)

// DefaultExecPath is where Debian's chromium package puts the browser.
const DefaultExecPath = "/usr/bin/chromium"

// ExecPath returns the Chromium executable: $OIDC_SESSION_CHROMIUM when set,
// else /usr/bin/chromium, else chromium on PATH. When none is usable the
// test fails if CI=true and is skipped otherwise.
func ExecPath(t testing.TB) string {
	t.Helper()
	candidates := []string{os.Getenv("OIDC_SESSION_CHROMIUM"), DefaultExecPath}
	if p, err := exec.LookPath("chromium"); err == nil {
		candidates = append(candidates, p)
	}
	for _, p := range candidates {
		if p == "" {
			continue
		}
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	testenv.Missing(t, "chromium not installed", testenv.InstallDeps)
	return ""
}

// Options returns the allocator options: Chromium at execPath, headless,
// no sandbox (tests run as root), no GPU, no QUIC, no first-run, background
// networking, component updates or sync, and the profile in userDataDir.
// The flags are listed here rather than taken from
// chromedp.DefaultExecAllocatorOptions so that the command line is exactly
// what this file says.
func Options(execPath, userDataDir string) []chromedp.ExecAllocatorOption {
	return []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(execPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.UserDataDir(userDataDir),
		chromedp.WindowSize(1024, 768),
	}
}

// Browser is one Chromium process with its own profile.
type Browser struct {
	// First is the browser's first tab.
	First *Tab
	// LogPath is Chromium's stdout and stderr.
	LogPath string
	// Dir is a temporary directory for screenshots and dumps.
	Dir string

	deadline time.Time
	t        testing.TB
}

// Tab is one tab (target) of a Browser.
type Tab struct {
	// Ctx is the tab's context bounded by the browser's deadline: run
	// every action with it.
	Ctx context.Context
	// root is the tab's context without the deadline, for dumps after Ctx
	// has expired.
	root context.Context
}

// Start launches Chromium with a fresh --user-data-dir in t.TempDir() and
// opens its first tab. Everything run through the tabs' Ctx is bounded by
// timeout from now on; the browser is stopped (and waited for) at test
// cleanup.
func Start(t testing.TB, timeout time.Duration) *Browser {
	t.Helper()
	execPath := ExecPath(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "chromium.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	opts := append(Options(execPath, filepath.Join(dir, "profile")), chromedp.CombinedOutput(logFile))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	root, cancelRoot := chromedp.NewContext(allocCtx)
	deadline := time.Now().Add(timeout)
	ctx, cancelCtx := context.WithDeadline(root, deadline)
	b := &Browser{First: &Tab{Ctx: ctx, root: root}, LogPath: logPath, Dir: dir, deadline: deadline, t: t}
	t.Cleanup(func() {
		cancelCtx()
		cancelRoot()
		cancelAlloc() // waits for the browser to exit
		logFile.Close()
		if t.Failed() {
			t.Logf("chromium log %s (tail):\n%s", logPath, testenv.Tail(logPath, 30))
		}
	})
	if err := open(root, cancelRoot, 30*time.Second); err != nil {
		t.Fatalf("start chromium %s: %v\n%s", execPath, err, testenv.Tail(logPath, 30))
	}
	return b
}

// open starts the browser or opens the tab of ctx within timeout. The first
// action on a chromedp context ties the browser's (or tab's) life to the
// context it is given, so it runs on ctx itself, and a timeout cancels ctx.
func open(ctx context.Context, cancel context.CancelFunc, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- chromedp.Do(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		cancel()
		<-done
		return fmt.Errorf("not ready after %s", timeout)
	}
}

// NewTab opens another tab (a new target in the same browser context, so
// it shares the cookies), bounded by the browser's deadline. The tab is
// closed at test cleanup.
func (b *Browser) NewTab() *Tab {
	b.t.Helper()
	root, cancelRoot := chromedp.NewContext(b.First.root)
	ctx, cancel := context.WithDeadline(root, b.deadline)
	b.t.Cleanup(func() { cancel(); cancelRoot() })
	if err := open(root, cancelRoot, 30*time.Second); err != nil {
		b.t.Fatalf("open a tab: %v", err)
	}
	return &Tab{Ctx: ctx, root: root}
}

// Page is what a tab shows.
type Page struct {
	URL   string // location.href
	HTML  string // document.documentElement.outerHTML
	Text  string // document.body.innerText
	Ready string // document.readyState
}

// Host returns the host:port of the page's URL.
func (p Page) Host() string {
	u, err := url.Parse(p.URL)
	if err != nil {
		return ""
	}
	return u.Host
}

// Read returns what the tab of ctx shows now.
func Read(ctx context.Context) (Page, error) {
	c, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return chromedp.Run(c, chromedp.Evaluate[Page](`({
		URL: location.href,
		HTML: document.documentElement ? document.documentElement.outerHTML : "",
		Text: document.body ? document.body.innerText : "",
		Ready: document.readyState,
	})`))
}

// WaitPage polls the tab of ctx until a fully loaded page satisfies ok, and
// returns it; within the given time at most. On timeout it returns the
// last page seen and an error.
func WaitPage(ctx context.Context, within time.Duration, ok func(Page) bool) (Page, error) {
	deadline := time.Now().Add(within)
	var last Page
	var lastErr error
	for {
		p, err := Read(ctx)
		if err == nil {
			last = p
			if p.Ready == "complete" && ok(p) {
				return p, nil
			}
		} else {
			lastErr = err
		}
		if ctx.Err() != nil {
			return last, ctx.Err()
		}
		if time.Now().After(deadline) {
			if lastErr != nil && last.URL == "" {
				return last, fmt.Errorf("page not readable after %s: %w", within, lastErr)
			}
			return last, fmt.Errorf("page did not reach the expected state within %s (at %s)", within, last.URL)
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Cookies returns the cookies Chromium would send to rawURL.
func Cookies(ctx context.Context, rawURL string) ([]*network.Cookie, error) {
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{rawURL}})
	if err != nil {
		return nil, err
	}
	return res.Cookies, nil
}

// Cookie returns the cookie name that Chromium would send to rawURL, or
// nil.
func Cookie(ctx context.Context, rawURL, name string) (*network.Cookie, error) {
	cs, err := Cookies(ctx, rawURL)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		if c.Name == name {
			return c, nil
		}
	}
	return nil, nil
}

// RequestCounter counts the requests a tab sends to one host.
type RequestCounter struct {
	host string
	n    atomic.Int64
	mu   sync.Mutex
	urls []string
}

// CountRequests starts counting the requests (navigations, redirects,
// subresources) that the tab of ctx sends to host (host:port).
func CountRequests(ctx context.Context, host string) (*RequestCounter, error) {
	rc := &RequestCounter{host: host}
	err := chromedp.Listen(ctx, func(ev any) {
		e, ok := ev.(*network.EventRequestWillBeSent)
		if !ok || e.Request == nil {
			return
		}
		u, err := url.Parse(e.Request.URL)
		if err != nil || !strings.EqualFold(u.Host, host) {
			return
		}
		rc.n.Add(1)
		rc.mu.Lock()
		rc.urls = append(rc.urls, e.Request.Method+" "+e.Request.URL)
		rc.mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	return rc, nil
}

// N is the number of requests counted so far.
func (rc *RequestCounter) N() int64 { return rc.n.Load() }

// URLs lists the requests counted so far.
func (rc *RequestCounter) URLs() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.urls...)
}

// Screenshot saves a PNG of the tab as name in b.Dir and returns its path.
// b.Dir is removed with the test; with $OIDC_SESSION_SCREENSHOTS set to a
// directory, the screenshot is kept there as well, under the test's name.
func (b *Browser) Screenshot(tab *Tab, name string) (string, error) {
	png, err := chromedp.Run(tab.Ctx, chromedp.CaptureScreenshot())
	if err != nil {
		return "", err
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		return "", errors.New("screenshot is not a PNG")
	}
	path := filepath.Join(b.Dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return "", err
	}
	if keep := os.Getenv("OIDC_SESSION_SCREENSHOTS"); keep != "" {
		kept := filepath.Join(keep, strings.NewReplacer("/", "_", " ", "_").Replace(b.t.Name())+"-"+name)
		if err := os.MkdirAll(keep, 0o755); err == nil && os.WriteFile(kept, png, 0o644) == nil {
			b.t.Logf("screenshot kept: %s", kept)
		}
	}
	return path, nil
}

// DumpPage logs the URL and HTML the tab shows, for failures. It also
// works after the tab's Ctx has expired.
func (b *Browser) DumpPage(tab *Tab, label string) {
	b.t.Helper()
	c, cancel := context.WithTimeout(tab.root, 5*time.Second)
	defer cancel()
	p, err := Read(c)
	if err != nil {
		b.t.Logf("%s: cannot read the page: %v", label, err)
		return
	}
	b.t.Logf("%s: page %s (readyState %s):\n%s", label, p.URL, p.Ready, p.HTML)
}

// Steps drives one tab for a test: each step that fails, and each page
// that does not come within the given time, fails the test after logging
// what the tab shows.
type Steps struct {
	b      *Browser
	tab    *Tab
	within time.Duration
}

// Steps returns the test steps of tab, waiting up to within for each page.
func (b *Browser) Steps(tab *Tab, within time.Duration) *Steps {
	return &Steps{b: b, tab: tab, within: within}
}

// Fatalf logs the page the tab shows and fails the test.
func (s *Steps) Fatalf(format string, args ...any) {
	s.b.t.Helper()
	s.b.DumpPage(s.tab, "page at failure")
	s.b.t.Fatalf(format, args...)
}

// Run runs steps in the tab; what names them in the failure.
func (s *Steps) Run(what string, steps ...chromedp.Action[chromedp.Void]) {
	s.b.t.Helper()
	if err := chromedp.Do(s.tab.Ctx, steps...); err != nil {
		s.Fatalf("%s: %v", what, err)
	}
}

// WaitFor waits for a fully loaded page that ok accepts and returns it;
// what names it in the failure.
func (s *Steps) WaitFor(what string, ok func(Page) bool) Page {
	s.b.t.Helper()
	p, err := WaitPage(s.tab.Ctx, s.within, ok)
	if err != nil {
		s.Fatalf("waiting for %s: %v", what, err)
	}
	return p
}
