package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	headless "github.com/oidc-session/oidc_session/internal/browser"
	"github.com/oidc-session/oidc_session/internal/testenv"
)

// The fixed addresses of scripts/demo.sh.
const (
	demoSite = "http://localhost:9080"
	demoDex  = "127.0.0.1:5556" // the staff's
	demoDex2 = "127.0.0.1:5557" // the partners'

	demoAdmin = "127.0.0.1:2999"
	demoRedis = "127.0.0.1:6399"
)

// TestDemo runs `scripts/demo.sh --store redis` (the README's first
// command) and uses it as a person would, in headless Chromium: the public
// landing page and its API call (401), the chooser of its two providers,
// the staff's Dex form, the protected area with
// the identity, the session's times and the live list of sessions, the API
// call again (200), the bearer curl line the script printed, a partner's
// login at the other Dex in a second browser, ending that session from
// the list, and signing out back to the landing page. The
// screenshots are kept in $OIDC_SESSION_SCREENSHOTS when it is set
// (scripts/test.sh sets it).
func TestDemo(t *testing.T) {
	root := testenv.RepoRoot(t)
	if !fileExists(filepath.Join(root, ".bin", "dex")) {
		testenv.Missing(t, "Dex not built in .bin/dex", testenv.InstallDeps)
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		testenv.Missing(t, "redis-server not installed", testenv.InstallDeps)
	}
	for _, addr := range []string{"127.0.0.1:9080", demoDex, demoDex2, demoAdmin, demoRedis} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s is in use (is scripts/demo.sh running?): the demo needs it", addr)
		}
	}
	token := startDemo(t, root)

	// The bearer line the script printed works, and a bad token is a 401.
	if status, body := demoAPI(t, "Bearer "+token); status != http.StatusOK || body["auth_method"] != "bearer" || body["email"] != "admin@example.com" {
		t.Errorf("the printed curl line: %d %v", status, body)
	}
	if status, _ := demoAPI(t, "Bearer "+token[:len(token)-4]+"AAAA"); status != http.StatusUnauthorized {
		t.Errorf("a tampered token: %d, want 401", status)
	}

	b := headless.Start(t, 90*time.Second)
	tab := b.First
	steps := b.Steps(tab, 20*time.Second)
	run, waitFor := steps.Run, steps.WaitFor
	shot := func(name string) {
		t.Helper()
		if path, err := b.Screenshot(tab, name); err != nil {
			t.Errorf("screenshot %s: %v", name, err)
		} else {
			t.Logf("screenshot %s", path)
		}
	}
	apiAnswered := func(status string) func(headless.Page) bool {
		return func(p headless.Page) bool { return strings.Contains(p.Text, "GET /api/whoami -> "+status) }
	}

	// 1. The public landing page: not signed in, the API says 401. (A tall
	// window, so that each screenshot shows a whole page.)
	run("open the landing page", chromedp.EmulateViewport(1024, 1500), chromedp.Navigate(demoSite+"/"))
	waitFor("the landing page", func(p headless.Page) bool { return strings.Contains(p.Text, "You are not signed in.") })
	run("call the API", chromedp.Click(chromedp.CSS("#call-api")))
	waitFor("the API's 401", apiAnswered("401"))
	shot("01-landing.png")

	// 2. Sign in: the chooser, then the staff's Dex.
	run("click Sign in", chromedp.Click(chromedp.CSS("#sign-in")))
	waitFor("the chooser", func(p headless.Page) bool {
		return strings.Contains(p.Text, "Staff (Dex on :5556)") && strings.Contains(p.Text, "Partners (Dex on :5557)")
	})
	shot("02-chooser.png")
	run("choose the staff's provider", chromedp.Click(chromedp.CSS(`button[name="provider"][value="staff"]`)))
	waitFor("Dex's login form", func(p headless.Page) bool {
		return p.Host() == demoDex && strings.Contains(p.HTML, `name="login"`)
	})
	shot("03-dex-login.png")
	run("fill Dex's login form",
		chromedp.SendKeys(chromedp.CSS(`input[name="login"]`), "admin@example.com"),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "password"),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
	)

	// 3. The protected area: identity, the session's times and claims, the
	// store's sessions.
	p := waitFor("the protected area with its session", func(p headless.Page) bool {
		return p.URL == demoSite+"/app/" && strings.Contains(p.Text, "Hello admin@example.com") &&
			strings.Contains(p.Text, `"email_verified": true`) && strings.Contains(p.Text, "1 live session(s) in the redis store")
	})
	for _, want := range []string{"Session ends", "Access token expires", "(this browser)", `<dd id="provider">staff</dd>`} {
		if !strings.Contains(p.Text, want) && !strings.Contains(p.HTML, want) {
			t.Errorf("protected area lacks %q:\n%s", want, p.Text)
		}
	}
	if strings.Contains(p.HTML, "eyJ") {
		t.Error("the protected area shows a token")
	}
	run("call the API with the session", chromedp.Click(chromedp.CSS("#call-api")))
	waitFor("the API's 200", func(p headless.Page) bool {
		return apiAnswered("200")(p) && strings.Contains(p.Text, `"auth_method": "session"`) &&
			strings.Contains(p.Text, `"provider": "staff"`)
	})
	shot("04-protected-area.png")

	// 4. A partner signs in at the other Dex in a second browser (the
	// email field of the chooser routes partner.example there); the
	// session appears in the list and is ended there.
	other := headless.Start(t, 60*time.Second)
	if err := chromedp.Do(other.First.Ctx,
		chromedp.Navigate(demoSite+"/oauth2/start?rd=/app/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="email"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="email"]`), "partner@partner.example"),
		chromedp.Submit(chromedp.CSS(`input[name="email"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name="login"]`)),
	); err != nil {
		t.Fatalf("second browser, to the partners' Dex: %v", err)
	}
	if p, _ := headless.Read(other.First.Ctx); p.Host() != demoDex2 {
		t.Fatalf("the partner's email led to %s, want the partners' Dex %s", p.URL, demoDex2)
	}
	if err := chromedp.Do(other.First.Ctx,
		chromedp.SendKeys(chromedp.CSS(`input[name="login"]`), "partner@partner.example"),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "password"),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
	); err != nil {
		t.Fatalf("second browser's login: %v", err)
	}
	if _, err := headless.WaitPage(other.First.Ctx, 20*time.Second, func(p headless.Page) bool {
		return strings.Contains(p.Text, "2 live session(s)") && strings.Contains(p.HTML, `<dd id="provider">partners</dd>`)
	}); err != nil {
		other.DumpPage(other.First, "second browser")
		t.Fatalf("second browser: %v", err)
	}
	// The list refreshes itself every 5 s; the first browser sees two.
	waitFor("two sessions in the list", func(p headless.Page) bool { return strings.Contains(p.Text, "2 live session(s)") })
	mine := demoSessionID(t, tab)
	run("end the other session", chromedp.Click(chromedp.CSS(`#sessions tr:not([data-id="`+mine+`"]) button.end`)))
	waitFor("one session left", func(p headless.Page) bool { return strings.Contains(p.Text, "1 live session(s)") })
	shot("05-session-ended.png")
	if err := chromedp.Do(other.First.Ctx, chromedp.Navigate(demoSite+"/app/")); err != nil {
		t.Fatal(err)
	}
	if _, err := headless.WaitPage(other.First.Ctx, 20*time.Second, func(p headless.Page) bool {
		return strings.Contains(p.Text, "Staff (Dex on :5556)") // the chooser again
	}); err != nil {
		t.Errorf("the ended session still opens the protected area: %v", err)
	}

	// 5. Sign out: back on the landing page, told so; the API says 401.
	run("sign out", chromedp.Click(chromedp.CSS("#sign-out")))
	waitFor("the landing page after sign out", func(p headless.Page) bool {
		return strings.HasPrefix(p.URL, demoSite+"/?signed_out") && strings.Contains(p.Text, "You are signed out") &&
			strings.Contains(p.Text, "You are not signed in.")
	})
	run("call the API after sign out", chromedp.Click(chromedp.CSS("#call-api")))
	waitFor("the API's 401 after sign out", apiAnswered("401"))
	shot("06-signed-out.png")
}

// demoSessionID returns the id of the tab's own session, the row the page
// marks as this browser's (both sessions are the same user's).
func demoSessionID(t *testing.T, tab *headless.Tab) string {
	t.Helper()
	id, err := chromedp.Run(tab.Ctx, chromedp.Evaluate[string](`document.querySelector("#sessions tr.current").dataset.id`))
	if err != nil || id == "" {
		t.Fatalf("the page does not mark its own session: %q %v", id, err)
	}
	return id
}

// startDemo runs scripts/demo.sh --store redis until the test ends, and
// returns the access token of the curl line it prints.
func startDemo(t *testing.T, root string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(root, "scripts", "demo.sh"), "--store", "redis")
	cmd.Dir = root
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logPath := filepath.Join(t.TempDir(), "demo.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		// Ctrl-C, as a person stops it; the script stops its servers.
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			t.Error("scripts/demo.sh did not stop within 20s of Ctrl-C")
		}
		wg.Wait()
		logFile.Close()
		if t.Failed() {
			t.Logf("demo.sh output (tail):\n%s", testenv.Tail(logPath, 40))
		}
		for _, addr := range []string{"127.0.0.1:9080", demoDex, demoDex2, demoAdmin, demoRedis} {
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				t.Errorf("%s still answers after the demo stopped", addr)
			}
		}
	})
	tokens := make(chan string, 1)
	curlLine := regexp.MustCompile(`curl -H "Authorization: Bearer ([A-Za-z0-9_.-]+)" ` + regexp.QuoteMeta(demoSite) + `/api/whoami`)
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			io.WriteString(logFile, line+"\n")
			if m := curlLine.FindStringSubmatch(line); m != nil {
				select {
				case tokens <- m[1]:
				default:
				}
			}
		}
	}()
	// demo.sh builds Caddy first: minutes on a cold cache.
	select {
	case token := <-tokens:
		return token
	case <-time.After(buildTimeout):
		t.Fatalf("scripts/demo.sh printed no curl line within %s:\n%s", buildTimeout, testenv.Tail(logPath, 40))
	}
	return ""
}

// demoAPI calls the demo's API with an Authorization header.
func demoAPI(t *testing.T, authorization string) (int, map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, demoSite+"/api/whoami", nil)
	req.Header.Set("Authorization", authorization)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}
