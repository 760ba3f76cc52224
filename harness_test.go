package oidcsession_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/oauth2-proxy/mockoidc"

	_ "github.com/oidc-session/oidc_session"
	"github.com/oidc-session/oidc_session/internal/testenv"
)

const testSecret = "test-secret-0123456789-0123456789-abcdef"

// freeAddr reserves a loopback port and returns host:port.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// runningCaddy is the test Caddy last started: its admin endpoint and log.
type runningCaddy struct {
	admin   string
	logFile string
}

var running runningCaddy

// extraApps, when set by a test, are added to the next test Caddy's JSON
// config (for apps the Caddyfile cannot express, such as events).
var extraApps map[string]any

// startCaddy runs Caddy in process (one per test binary: tests that use it
// must not run in parallel; a second call within a test replaces the config) with a site at the returned base URL.
// site is the body of the site block; %ISSUER% and the like are the
// caller's to fill in.
func startCaddy(t testing.TB, site string) string {
	t.Helper()
	return startCaddyOn(t, freeAddr(t), site)
}

// startCaddyOn is startCaddy on a given address, for IdPs that must know
// the callback URL before Caddy starts.
func startCaddyOn(t testing.TB, addr, site string) string {
	t.Helper()
	startCaddySites(t, map[string]string{addr: site})
	return "http://" + addr
}

// startCaddySites runs one Caddy with a site per address: several
// instances of the handler, as several Caddy servers would have.
func startCaddySites(t testing.TB, sites map[string]string) {
	t.Helper()
	startCaddyServers(t, sites, "")
}

// startCaddyServers is startCaddySites with options for every server
// (the body of the global servers block, e.g. trusted_proxies).
func startCaddyServers(t testing.TB, sites map[string]string, serverOptions string) {
	t.Helper()
	dir := t.TempDir()
	logFile := dir + "/caddy.log"
	admin := freeAddr(t)
	running = runningCaddy{admin: "http://" + admin, logFile: logFile}
	cfg := globalOptions(admin, dir, logFile, "INFO")
	if serverOptions != "" {
		cfg = strings.Replace(cfg, "\tlog {", "\tservers {\n\t\t"+serverOptions+"\n\t}\n\tlog {", 1)
	}
	for addr, site := range sites {
		cfg += fmt.Sprintf("http://%s {\n%s\n}\n", addr, site)
	}
	adapter := caddyconfig.GetAdapter("caddyfile")
	js, _, err := adapter.Adapt([]byte(cfg), nil)
	if err != nil {
		t.Fatalf("adapt: %v\n%s", err, cfg)
	}
	if extraApps != nil {
		var doc map[string]any
		if err := json.Unmarshal(js, &doc); err != nil {
			t.Fatal(err)
		}
		apps, _ := doc["apps"].(map[string]any)
		for name, app := range extraApps {
			apps[name] = app
		}
		js, _ = json.Marshal(doc)
	}
	if err := caddy.Load(js, true); err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(logFile); err == nil {
				t.Logf("caddy log:\n%s", b)
			}
		}
		_ = caddy.Stop()
	})
}

// globalOptions is the Caddyfile global block of a test Caddy: admin
// endpoint, loopback only, no HTTPS, storage in dir, logs to logFile.
func globalOptions(admin, dir, logFile, level string) string {
	return fmt.Sprintf(`{
	admin %s
	default_bind 127.0.0.1
	auto_https off
	persist_config off
	skip_install_trust
	storage file_system %s
	log {
		output file %s
		level %s
	}
}
`, admin, dir, logFile, level)
}

// mockIdP runs mockoidc with hooks for tests: counting token grants and
// failing them on demand, and an optional end_session_endpoint.
type mockIdP struct {
	*mockoidc.MockOIDC
	refreshes   atomic.Int32
	codeGrants  atomic.Int32
	failRefresh atomic.Value // "", "invalid_grant", "invalid_client" or "unavailable"
	endSession  string

	// With rotate on, every refresh returns a new refresh token and a
	// refresh token used twice is refused with invalid_grant, as strict
	// IdPs do. mockoidc keeps one token per session, so the middleware
	// hands out aliases of it.
	rotate  atomic.Bool
	rotMu   sync.Mutex
	aliases map[string]string // alias -> mockoidc's refresh token
	used    map[string]bool
	reused  atomic.Int32
}

func startMockIdP(t testing.TB, accessTTL time.Duration, endSession bool) *mockIdP {
	t.Helper()
	return startIdP(t, newMockIdP(t, accessTTL, endSession))
}

// startIdP starts a mock IdP made by newMockIdP once the test has added
// its own middleware (which runs inside the harness's, so the harness
// still counts grants and fixes mockoidc's responses around it).
func startIdP(t testing.TB, idp *mockIdP) *mockIdP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := idp.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = idp.Shutdown() })
	return idp
}

// newMockIdP makes a mock IdP that is not started yet; its middleware must
// be in place before Start, which builds the handler chain.
func newMockIdP(t testing.TB, accessTTL time.Duration, endSession bool) *mockIdP {
	t.Helper()
	m, err := mockoidc.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if accessTTL > 0 {
		m.AccessTTL = accessTTL
	}
	idp := &mockIdP{MockOIDC: m, aliases: map[string]string{}, used: map[string]bool{}}
	idp.failRefresh.Store("")
	if endSession {
		idp.endSession = "/end_session"
	}
	if err := m.AddMiddleware(idp.middleware); err != nil {
		t.Fatal(err)
	}
	return idp
}

func (idp *mockIdP) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, mockoidc.TokenEndpoint):
			_ = r.ParseForm()
			switch r.Form.Get("grant_type") {
			case "refresh_token":
				idp.refreshes.Add(1)
				switch idp.failRefresh.Load() {
				case "invalid_grant":
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusBadRequest)
					_, _ = io.WriteString(w, `{"error":"invalid_grant"}`)
					return
				case "invalid_client":
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusUnauthorized)
					_, _ = io.WriteString(w, `{"error":"invalid_client"}`)
					return
				case "unavailable":
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				if idp.rotate.Load() && !idp.redeemAlias(w, r) {
					return
				}
			case "authorization_code":
				idp.codeGrants.Add(1)
			}
			idp.serveTokenInSeconds(w, r, next)
			return
		case strings.HasSuffix(r.URL.Path, mockoidc.UserinfoEndpoint):
			// OIDC requires sub in userinfo responses; mockoidc omits it.
			rec := &bufferWriter{header: http.Header{}, status: http.StatusOK}
			next.ServeHTTP(rec, r)
			var doc map[string]any
			if rec.status != http.StatusOK || json.Unmarshal(rec.buf.Bytes(), &doc) != nil {
				w.WriteHeader(rec.status)
				return
			}
			doc["sub"] = mockoidc.DefaultUser().Subject
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(doc)
			return
		case strings.HasSuffix(r.URL.Path, mockoidc.DiscoveryEndpoint):
			rec := &bufferWriter{header: http.Header{}}
			next.ServeHTTP(rec, r)
			var doc map[string]any
			if err := json.Unmarshal(rec.buf.Bytes(), &doc); err == nil {
				// mockoidc advertises client_secret_basic but only reads
				// the form: make it tell the truth.
				doc["token_endpoint_auth_methods_supported"] = []string{"client_secret_post"}
				if idp.endSession != "" {
					doc["end_session_endpoint"] = idp.Issuer() + idp.endSession
				}
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(doc)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// redeemAlias swaps a refresh token alias for mockoidc's token, refusing
// one used before. It reports whether the request may go on.
func (idp *mockIdP) redeemAlias(w http.ResponseWriter, r *http.Request) bool {
	idp.rotMu.Lock()
	defer idp.rotMu.Unlock()
	alias := r.Form.Get("refresh_token")
	real, ok := idp.aliases[alias]
	if !ok || idp.used[alias] {
		idp.reused.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"invalid_grant","error_description":"refresh token reused"}`)
		return false
	}
	idp.used[alias] = true
	r.Form.Set("refresh_token", real)
	r.PostForm.Set("refresh_token", real)
	return true
}

// newAlias hands out a fresh alias of mockoidc's refresh token.
func (idp *mockIdP) newAlias(real string) string {
	idp.rotMu.Lock()
	defer idp.rotMu.Unlock()
	alias := "rt-" + rand.Text()
	idp.aliases[alias] = real
	return alias
}

// serveTokenInSeconds fixes mockoidc's token response, which gives
// expires_in in nanoseconds instead of seconds, and rotates refresh tokens
// when asked to.
func (idp *mockIdP) serveTokenInSeconds(w http.ResponseWriter, r *http.Request, next http.Handler) {
	rec := &bufferWriter{header: http.Header{}, status: http.StatusOK}
	next.ServeHTTP(rec, r)
	var doc map[string]any
	if rec.status == http.StatusOK && json.Unmarshal(rec.buf.Bytes(), &doc) == nil {
		doc["expires_in"] = int(idp.AccessTTL / time.Second)
		if rt, _ := doc["refresh_token"].(string); rt != "" && idp.rotate.Load() {
			doc["refresh_token"] = idp.newAlias(rt)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(doc)
		return
	}
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.status)
	_, _ = w.Write(rec.buf.Bytes())
}

type bufferWriter struct {
	header http.Header
	buf    bytes.Buffer
	status int
}

func (b *bufferWriter) Header() http.Header         { return b.header }
func (b *bufferWriter) Write(p []byte) (int, error) { return b.buf.Write(p) }
func (b *bufferWriter) WriteHeader(code int)        { b.status = code }

// siteConfig is an oidc_session block for the mock IdP plus extra lines,
// followed by a respond that shows what the next handler sees.
func siteConfig(idp *mockIdP, extra string) string {
	return oidcBlock(idp, extra) + `	respond "id={http.auth.user.id} email={http.auth.user.email} name={http.auth.user.name} groups={http.auth.user.groups} xfu={header.X-Forwarded-User} xfe={header.X-Forwarded-Email} cookie={header.Cookie}" 200
`
}

// oidcBlock is the oidc_session block for the mock IdP, with extra lines.
func oidcBlock(idp *mockIdP, extra string) string {
	return fmt.Sprintf(`	oidc_session {
		issuer %s
		client_id %s
		client_secret %s
		scopes openid email profile groups
		cookie {
			secret %s
			secure off
		}
		headers
		%s
	}
`, idp.Issuer(), idp.ClientID, idp.ClientSecret, testSecret, extra)
}

// browser is a cookie-keeping client that does not follow redirects, so
// tests see every hop.
type browser struct {
	t      testing.TB
	client *http.Client
}

func newBrowser(t testing.TB) *browser {
	return &browser{t: t, client: newClient()}
}

// newClient is a cookie-keeping client that does not follow redirects.
func newClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:           jar,
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// do sends a request with headers given as "Name: value" strings.
func (b *browser) do(method, target string, headers ...string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, target, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// navigate is a top-level browser navigation.
func (b *browser) navigate(target string, headers ...string) (*http.Response, string) {
	b.t.Helper()
	return b.do(http.MethodGet, target, append([]string{"Accept: text/html", "Sec-Fetch-Mode: navigate", "Sec-Fetch-Site: none"}, headers...)...)
}

// login walks the whole login from a protected URL and returns the final
// page; the mock IdP logs the queued (or default) user in without a form.
func (b *browser) login(target string) (*http.Response, string) {
	b.t.Helper()
	resp, _ := b.navigate(target)
	if resp.StatusCode != http.StatusFound {
		b.t.Fatalf("GET %s: want a 302 to the IdP, got %d", target, resp.StatusCode)
	}
	cb := b.authorize(resp.Header.Get("Location"))
	resp, body := b.navigate(cb)
	if resp.StatusCode != http.StatusFound {
		b.t.Fatalf("callback: want 302, got %d: %s", resp.StatusCode, body)
	}
	return b.navigate(resolve(target, resp.Header.Get("Location")))
}

// authorize visits the IdP's authorization URL and returns the callback URL
// it redirects to.
func (b *browser) authorize(authURL string) string {
	b.t.Helper()
	resp, body := b.navigate(authURL)
	if resp.StatusCode != http.StatusFound {
		b.t.Fatalf("IdP authorize: want 302, got %d: %s", resp.StatusCode, body)
	}
	return resp.Header.Get("Location")
}

func (b *browser) cookie(base, name string) *http.Cookie {
	u, _ := url.Parse(base)
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (b *browser) setCookie(base, name, value string) {
	u, _ := url.Parse(base)
	b.client.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

func resolve(base, ref string) string {
	bu, _ := url.Parse(base)
	ru, err := url.Parse(ref)
	if err != nil {
		return ref
	}
	return bu.ResolveReference(ru).String()
}

// endSessionForm checks that resp is sign_out's page for RP-initiated
// logout (a self-submitting form, under a CSP that allows only its script)
// and returns the form.
func endSessionForm(t testing.TB, resp *http.Response, body string) *testenv.Form {
	t.Helper()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("sign_out: %d %s %q, want the end_session form page", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Location"))
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'sha256-") {
		t.Errorf("end_session page CSP %q", csp)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("end_session page Cache-Control %q, want no-store", cc)
	}
	form, err := testenv.FirstForm(body)
	if err != nil {
		t.Fatalf("sign_out page: %v\n%s", err, body)
	}
	return form
}

// setCookieNamed returns the response's Set-Cookie for name, or nil.
func setCookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}
