package testidp

// The example OpenID Provider of github.com/zitadel/oidc/v3, built from
// tools/zitadel by scripts/install-deps.sh into <repo root>/.bin/zitadel-op.
// Unlike Dex it advertises an end_session_endpoint (RP-initiated logout),
// requires PKCE S256 from public clients, and keeps no login session of its
// own: every authorization request shows its login form.

import (
	"context"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Static clients and user of the zitadel example OP (its storage package).
const (
	ZitadelClientID       = "web"    // confidential (client_secret_basic or _post), PKCE optional
	ZitadelClientSecret   = "secret" // of ZitadelClientID
	ZitadelPublicClientID = "native" // public client: PKCE required
	ZitadelUsername       = "test-user2"
	ZitadelPassword       = "verysecure"
	ZitadelUserID         = "id2" // the "sub" claim
	ZitadelEmail          = "test-user2@zitadel.ch"
)

// ZitadelOptions configures StartZitadel.
type ZitadelOptions struct {
	// RedirectURIs registered for both clients (compared exactly, except the
	// port of loopback URIs for the native client).
	RedirectURIs []string
	// PostLogoutRedirectURIs the end_session endpoint accepts as
	// post_logout_redirect_uri (exact match); any other is refused.
	PostLogoutRedirectURIs []string
	// AccessTokenTTL is the access token lifetime; 0 keeps the example's 5m.
	// ID tokens live 1h regardless.
	AccessTokenTTL time.Duration
}

// Zitadel is a running zitadel example OP, stopped at test cleanup.
type Zitadel struct {
	Issuer         string // http://127.0.0.1:<port>/ (with the trailing slash the OP uses in "iss")
	ClientID       string // ZitadelClientID
	ClientSecret   string // ZitadelClientSecret
	PublicClientID string // ZitadelPublicClientID
	Username       string // ZitadelUsername
	Password       string // ZitadelPassword
	UserID         string // ZitadelUserID
	Email          string // ZitadelEmail
	Addr           string // 127.0.0.1:<port>
	LogPath        string

	cmd      *exec.Cmd
	done     chan struct{}
	stopOnce sync.Once
}

// ZitadelBinary returns the path of the zitadel example OP:
// $OIDC_SESSION_ZITADEL_OP when set, else <repo root>/.bin/zitadel-op. When
// it is missing the test fails with CI=true and is skipped otherwise.
func ZitadelBinary(t testing.TB) string {
	t.Helper()
	path := os.Getenv("OIDC_SESSION_ZITADEL_OP")
	if path == "" {
		root, err := repoRoot()
		if err != nil {
			missingZitadel(t, fmt.Sprintf("cannot locate repository root: %v", err))
			return ""
		}
		path = filepath.Join(root, ".bin", "zitadel-op")
	}
	st, err := os.Stat(path)
	if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		missingZitadel(t, fmt.Sprintf("zitadel OP binary %s not usable (err=%v)", path, err))
		return ""
	}
	return path
}

func missingZitadel(t testing.TB, why string) {
	t.Helper()
	if ci := strings.ToLower(os.Getenv("CI")); ci == "true" || ci == "1" {
		t.Fatalf("%s; CI=true so this is a failure (run scripts/install-deps.sh)", why)
	}
	t.Skipf("zitadel example OP not built: run scripts/install-deps.sh (%s)", why)
}

// StartZitadel starts the zitadel example OP on a free loopback port and
// returns once its discovery document answers (bounded by ~20 s per
// attempt, 3 attempts). It is stopped in t.Cleanup; its log tail is printed
// when the test failed.
func StartZitadel(t testing.TB, opts ZitadelOptions) *Zitadel {
	t.Helper()
	bin := ZitadelBinary(t)
	dir := t.TempDir()
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		z, err := tryStartZitadel(t, bin, dir, attempt, opts)
		if err == nil {
			return z
		}
		lastErr = err
		t.Logf("testidp: zitadel OP start attempt %d failed: %v", attempt, err)
	}
	t.Fatalf("testidp: could not start the zitadel OP: %v", lastErr)
	return nil
}

func tryStartZitadel(t testing.TB, bin, dir string, attempt int, opts ZitadelOptions) (*Zitadel, error) {
	addr := FreeAddr(t)
	z := &Zitadel{
		Issuer:         "http://" + addr + "/",
		ClientID:       ZitadelClientID,
		ClientSecret:   ZitadelClientSecret,
		PublicClientID: ZitadelPublicClientID,
		Username:       ZitadelUsername,
		Password:       ZitadelPassword,
		UserID:         ZitadelUserID,
		Email:          ZitadelEmail,
		Addr:           addr,
		LogPath:        filepath.Join(dir, fmt.Sprintf("zitadel-op-%d.log", attempt)),
		done:           make(chan struct{}),
	}
	logFile, err := os.Create(z.LogPath)
	if err != nil {
		return nil, err
	}
	env := append(os.Environ(),
		"ADDR="+addr,
		"ISSUER="+z.Issuer,
		"REDIRECT_URI="+strings.Join(opts.RedirectURIs, ","),
		"POST_LOGOUT_REDIRECT_URI="+strings.Join(opts.PostLogoutRedirectURIs, ","),
	)
	if opts.AccessTokenTTL > 0 {
		env = append(env, "ACCESS_TOKEN_TTL="+opts.AccessTokenTTL.String())
	}
	z.cmd = exec.Command(bin)
	z.cmd.Env = env
	z.cmd.Stdout = logFile
	z.cmd.Stderr = logFile
	if err := z.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		z.cmd.Wait()
		logFile.Close()
		close(z.done)
	}()
	t.Cleanup(func() {
		z.Stop()
		if t.Failed() {
			t.Logf("testidp: tail of zitadel OP log %s:\n%s", z.LogPath, tail(z.LogPath, 40))
		}
	})
	if err := z.waitReady(startTimeout); err != nil {
		z.Stop()
		return nil, fmt.Errorf("%w; log tail:\n%s", err, tail(z.LogPath, 20))
	}
	return z, nil
}

func (z *Zitadel) waitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	u := z.Issuer + ".well-known/openid-configuration"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-z.done:
			return errors.New("zitadel OP exited during startup")
		case <-ctx.Done():
			return fmt.Errorf("discovery %s not answering after %s (last error: %v)", u, timeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop ends the OP (SIGTERM, SIGKILL after 5 s) and waits for it to exit.
// Idempotent; also called at test cleanup.
func (z *Zitadel) Stop() {
	z.stopOnce.Do(func() {
		if z.cmd == nil || z.cmd.Process == nil {
			return
		}
		_ = z.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-z.done:
			return
		case <-time.After(5 * time.Second):
		}
		_ = z.cmd.Process.Kill()
		select {
		case <-z.done:
		case <-time.After(10 * time.Second):
		}
	})
}

// LogTail returns the last n lines of the OP's output.
func (z *Zitadel) LogTail(n int) string { return tail(z.LogPath, n) }

var (
	zitadelFormRe  = regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form>`)
	zitadelAttrRe  = regexp.MustCompile(`(?is)\b(name|value|action|type)\s*=\s*"([^"]*)"`)
	zitadelInputRe = regexp.MustCompile(`(?is)<input\b[^>]*>`)
)

// zitadelLoginForm finds the first form with a "password" input and
// returns its action and the values of all its named inputs.
func zitadelLoginForm(body string) (action string, fields url.Values, ok bool) {
	for _, m := range zitadelFormRe.FindAllStringSubmatch(body, -1) {
		fields := url.Values{}
		hasPassword := false
		for _, in := range zitadelInputRe.FindAllString(m[2], -1) {
			attrs := map[string]string{}
			for _, a := range zitadelAttrRe.FindAllStringSubmatch(in, -1) {
				attrs[strings.ToLower(a[1])] = html.UnescapeString(a[2])
			}
			name := attrs["name"]
			if name == "" {
				continue
			}
			if name == "password" {
				hasPassword = true
			}
			fields.Set(name, attrs["value"])
		}
		if !hasPassword {
			continue
		}
		action := ""
		for _, a := range zitadelAttrRe.FindAllStringSubmatch(m[1], -1) {
			if strings.ToLower(a[1]) == "action" {
				action = html.UnescapeString(a[2])
			}
		}
		return action, fields, true
	}
	return "", nil, false
}

// LoginZitadel performs a browser-like login at the zitadel example OP, as
// LoginDex does at Dex: GET authURL (the OP's authorization URL, or a
// protected page that redirects to it) and follow redirects until the
// login form (/login/username) appears; POST it with its hidden fields
// (the auth request id) and username/password; follow the OP's redirects
// while they stay on the OP's origin. It returns the response to the first
// request outside the OP (normally the relying party's callback with
// ?code=&state=), not followed further; the caller closes resp.Body.
//
// A rejected login (the OP shows the form again) is an error containing
// "rejected".
func LoginZitadel(client *http.Client, authURL, username, password string) (*http.Response, error) {
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	next := authURL
	var formURL *url.URL
	var fields url.Values
	for hop := 0; ; hop++ {
		if hop > maxHops {
			return nil, fmt.Errorf("testidp: no zitadel login form after %d redirects from %s", maxHops, authURL)
		}
		resp, err := navigate(&c, next)
		if err != nil {
			return nil, fmt.Errorf("testidp: GET %s: %w", next, err)
		}
		if loc, ok := redirectTarget(resp); ok {
			resp.Body.Close()
			next = loc
			continue
		}
		body, err := readBody(resp)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("testidp: GET %s: status %d looking for the zitadel login form: %s", resp.Request.URL, resp.StatusCode, snippet(body))
		}
		action, f, ok := zitadelLoginForm(body)
		if !ok {
			return nil, fmt.Errorf("testidp: %s shows no login form: %s", resp.Request.URL, snippet(body))
		}
		if formURL, err = resp.Request.URL.Parse(action); err != nil {
			return nil, fmt.Errorf("testidp: bad form action %q: %w", action, err)
		}
		fields = f
		break
	}
	opOrigin := origin(formURL)
	fields.Set("username", username)
	fields.Set("password", password)
	resp, err := c.PostForm(formURL.String(), fields)
	if err != nil {
		return nil, fmt.Errorf("testidp: POST %s: %w", formURL, err)
	}
	for hop := 0; ; hop++ {
		if origin(resp.Request.URL) != opOrigin {
			return resp, nil
		}
		loc, ok := redirectTarget(resp)
		if !ok {
			body, _ := readBody(resp)
			if _, _, isForm := zitadelLoginForm(body); isForm {
				return nil, fmt.Errorf("testidp: zitadel OP rejected the login for %q (status %d): %s", username, resp.StatusCode, snippet(body))
			}
			return nil, fmt.Errorf("testidp: zitadel OP answered %s with status %d instead of redirecting: %s", resp.Request.URL, resp.StatusCode, snippet(body))
		}
		resp.Body.Close()
		if hop >= maxHops {
			return nil, fmt.Errorf("testidp: more than %d redirects after login", maxHops)
		}
		if resp, err = navigate(&c, loc); err != nil {
			return nil, fmt.Errorf("testidp: GET %s: %w", loc, err)
		}
	}
}
