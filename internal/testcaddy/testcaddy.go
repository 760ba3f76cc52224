// Package testcaddy runs Caddy with the oidc_session plugin inside the test
// process, with mockoidc (corrected where it trips the plugin, and with
// hooks to count and fail token grants) as the IdP, a cookie-keeping
// client that does not follow redirects, and the matrix of session stores,
// for the integration tests and the tests of other packages (the command
// line, the dashboard). Caddy is one per process: tests that start it must
// not run in parallel.
package testcaddy

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
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

const TestSecret = "test-secret-0123456789-0123456789-abcdef"

// Caddy is a running test Caddy.
type Caddy struct {
	// Admin is its admin listen address as Caddy's commands take it
	// (host:port or unix/<path>); AdminURL is http://host:port for a TCP
	// admin endpoint, else "".
	Admin, AdminURL string
	// Base is http://host:port of its first site.
	Base string
	// LogFile is Caddy's log, printed when the test fails.
	LogFile string
}

var running *Caddy

// Running is the test Caddy last started.
func Running() *Caddy { return running }

// ExtraApps, when set by a test, are added to the next test Caddy's JSON
// config (for apps the Caddyfile cannot express, such as events).
var ExtraApps map[string]any

// StartCaddy runs Caddy in process (one per test binary: tests that use it
// must not run in parallel; a second call within a test replaces the
// config) with a site at the returned base URL. site is the body of the
// site block.
func StartCaddy(t testing.TB, site string) string {
	t.Helper()
	return StartCaddyOn(t, testenv.FreeAddr(t), site)
}

// StartCaddyOn is StartCaddy on a given address, for IdPs that must know
// the callback URL before Caddy starts.
func StartCaddyOn(t testing.TB, addr, site string) string {
	t.Helper()
	StartCaddySites(t, map[string]string{addr: site})
	return "http://" + addr
}

// StartCaddySites runs one Caddy with a site per address: several
// instances of the handler, as several Caddy servers would have.
func StartCaddySites(t testing.TB, sites map[string]string) {
	t.Helper()
	StartCaddyServers(t, sites, "")
}

// StartCaddyServers is StartCaddySites with options for every server
// (the body of the global servers block, e.g. trusted_proxies).
func StartCaddyServers(t testing.TB, sites map[string]string, serverOptions string) {
	t.Helper()
	start(t, "", sites, serverOptions)
}

// Start runs Caddy with one site on a free address, and its admin API on
// admin (host:port or unix/<path>; "" for a free loopback port).
func Start(t testing.TB, admin, site string) *Caddy {
	t.Helper()
	return start(t, admin, map[string]string{testenv.FreeAddr(t): site}, "")
}

func start(t testing.TB, admin string, sites map[string]string, serverOptions string) *Caddy {
	t.Helper()
	dir := t.TempDir()
	if admin == "" {
		admin = testenv.FreeAddr(t)
	}
	c := &Caddy{Admin: admin, LogFile: filepath.Join(dir, "caddy.log")}
	if !strings.HasPrefix(admin, "unix/") {
		c.AdminURL = "http://" + admin
	}
	running = c
	cfg := GlobalOptions(admin, dir, "file "+c.LogFile, "INFO")
	if serverOptions != "" {
		cfg = strings.Replace(cfg, "\tlog {", "\tservers {\n\t\t"+serverOptions+"\n\t}\n\tlog {", 1)
	}
	for addr, site := range sites {
		if c.Base == "" {
			c.Base = "http://" + addr
		}
		cfg += fmt.Sprintf("http://%s {\n%s\n}\n", addr, site)
	}
	js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	if err != nil {
		t.Fatalf("adapt: %v\n%s", err, cfg)
	}
	if ExtraApps != nil {
		var doc map[string]any
		if err := json.Unmarshal(js, &doc); err != nil {
			t.Fatal(err)
		}
		apps, _ := doc["apps"].(map[string]any)
		for name, app := range ExtraApps {
			apps[name] = app
		}
		js, _ = json.Marshal(doc)
	}
	if err := caddy.Load(js, true); err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("caddy log:\n%s", testenv.Tail(c.LogFile, 60))
		}
		_ = caddy.Stop()
	})
	return c
}

// Scrape returns the test Caddy's metrics in the Prometheus text format.
func (c *Caddy) Scrape(t testing.TB) string {
	t.Helper()
	resp, err := http.Get(c.AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

// GlobalOptions is the Caddyfile global block of every test Caddy, in
// process or not: admin endpoint, loopback only, no HTTPS, storage in dir,
// logs to logOutput (a Caddy log output: "file <path>", "stderr") at level.
func GlobalOptions(admin, dir, logOutput, level string) string {
	return fmt.Sprintf(`{
	admin %s
	default_bind 127.0.0.1
	auto_https off
	persist_config off
	skip_install_trust
	storage file_system %s
	log {
		output %s
		level %s
	}
}
`, admin, dir, logOutput, level)
}

// MockIdP runs mockoidc with hooks for tests: counting token grants and
// failing them on demand, and an optional end_session_endpoint.
type MockIdP struct {
	*mockoidc.MockOIDC
	// Refreshes and CodeGrants count the token requests of each grant.
	Refreshes  atomic.Int32
	CodeGrants atomic.Int32
	// FailRefresh makes refreshes fail: "" (they do not), "invalid_grant",
	// "invalid_client" or "unavailable" (503).
	FailRefresh atomic.Value
	// EndSession is the path of the advertised end_session_endpoint, or "".
	EndSession string

	// With Rotate on, every refresh returns a new refresh token and a
	// refresh token used twice is refused with invalid_grant, as strict
	// IdPs do. mockoidc keeps one token per session, so the middleware
	// hands out aliases of it.
	Rotate  atomic.Bool
	rotMu   sync.Mutex
	aliases map[string]string // alias -> mockoidc's refresh token
	used    map[string]bool
	// Reused counts refresh tokens presented a second time.
	Reused atomic.Int32
}

// StartMockIdP starts a mock IdP whose access tokens live accessTTL
// (mockoidc's default when 0), with an end_session_endpoint if asked.
func StartMockIdP(t testing.TB, accessTTL time.Duration, endSession bool) *MockIdP {
	t.Helper()
	return StartIdP(t, NewMockIdP(t, accessTTL, endSession))
}

// StartIdP starts a mock IdP made by NewMockIdP once the test has added
// its own middleware (which runs inside the harness's, so the harness
// still counts grants and fixes mockoidc's responses around it).
func StartIdP(t testing.TB, idp *MockIdP) *MockIdP {
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

// NewMockIdP makes a mock IdP that is not started yet; its middleware must
// be in place before Start, which builds the handler chain.
func NewMockIdP(t testing.TB, accessTTL time.Duration, endSession bool) *MockIdP {
	t.Helper()
	m, err := mockoidc.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if accessTTL > 0 {
		m.AccessTTL = accessTTL
	}
	idp := &MockIdP{MockOIDC: m, aliases: map[string]string{}, used: map[string]bool{}}
	idp.FailRefresh.Store("")
	if endSession {
		idp.EndSession = "/end_session"
	}
	if err := m.AddMiddleware(idp.middleware); err != nil {
		t.Fatal(err)
	}
	return idp
}

func (idp *MockIdP) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, mockoidc.TokenEndpoint):
			_ = r.ParseForm()
			switch r.Form.Get("grant_type") {
			case "refresh_token":
				idp.Refreshes.Add(1)
				switch idp.FailRefresh.Load() {
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
				if idp.Rotate.Load() && !idp.redeemAlias(w, r) {
					return
				}
			case "authorization_code":
				idp.CodeGrants.Add(1)
			}
			idp.serveTokenInSeconds(w, r, next)
			return
		case strings.HasSuffix(r.URL.Path, mockoidc.UserinfoEndpoint):
			// OIDC requires sub in userinfo responses; mockoidc omits it.
			rec := NewRecorder()
			next.ServeHTTP(rec, r)
			var doc map[string]any
			if rec.Status != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &doc) != nil {
				w.WriteHeader(rec.Status)
				return
			}
			if _, ok := doc["sub"]; !ok { // a test's own answer keeps its sub
				doc["sub"] = bearerSubject(r)
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(doc)
			return
		case strings.HasSuffix(r.URL.Path, mockoidc.DiscoveryEndpoint):
			rec := NewRecorder()
			next.ServeHTTP(rec, r)
			var doc map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &doc); err == nil {
				// mockoidc advertises client_secret_basic but only reads
				// the form: make it tell the truth.
				doc["token_endpoint_auth_methods_supported"] = []string{"client_secret_post"}
				if idp.EndSession != "" {
					doc["end_session_endpoint"] = idp.Issuer() + idp.EndSession
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
func (idp *MockIdP) redeemAlias(w http.ResponseWriter, r *http.Request) bool {
	idp.rotMu.Lock()
	defer idp.rotMu.Unlock()
	alias := r.Form.Get("refresh_token")
	real, ok := idp.aliases[alias]
	if !ok || idp.used[alias] {
		idp.Reused.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"invalid_grant","error_description":"refresh token Reused"}`)
		return false
	}
	idp.used[alias] = true
	r.Form.Set("refresh_token", real)
	r.PostForm.Set("refresh_token", real)
	return true
}

// newAlias hands out a fresh alias of mockoidc's refresh token.
func (idp *MockIdP) newAlias(real string) string {
	idp.rotMu.Lock()
	defer idp.rotMu.Unlock()
	alias := "rt-" + rand.Text()
	idp.aliases[alias] = real
	return alias
}

// serveTokenInSeconds fixes mockoidc's token response, which gives
// expires_in in nanoseconds instead of seconds, and rotates refresh tokens
// when asked to.
func (idp *MockIdP) serveTokenInSeconds(w http.ResponseWriter, r *http.Request, next http.Handler) {
	rec := NewRecorder()
	next.ServeHTTP(rec, r)
	var doc map[string]any
	if rec.Status == http.StatusOK && json.Unmarshal(rec.Body.Bytes(), &doc) == nil {
		doc["expires_in"] = int(idp.AccessTTL / time.Second)
		if rt, _ := doc["refresh_token"].(string); rt != "" && idp.Rotate.Load() {
			doc["refresh_token"] = idp.newAlias(rt)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(doc)
		return
	}
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Status)
	_, _ = w.Write(rec.Body.Bytes())
}

// Recorder is an http.ResponseWriter that keeps the response, for
// middleware that rewrites mockoidc's answers.
type Recorder struct {
	header http.Header
	Body   bytes.Buffer
	Status int
}

// NewRecorder returns a Recorder whose status is 200 until written.
func NewRecorder() *Recorder { return &Recorder{header: http.Header{}, Status: http.StatusOK} }

func (b *Recorder) Header() http.Header         { return b.header }
func (b *Recorder) Write(p []byte) (int, error) { return b.Body.Write(p) }
func (b *Recorder) WriteHeader(code int)        { b.Status = code }

// SiteConfig is an oidc_session block for the mock IdP plus extra lines,
// followed by a respond that shows what the next handler sees.
func SiteConfig(idp *MockIdP, extra string) string {
	return OIDCBlock(idp, extra) + `	respond "id={http.auth.user.id} email={http.auth.user.email} name={http.auth.user.name} groups={http.auth.user.groups} xfu={header.X-Forwarded-User} xfe={header.X-Forwarded-Email} cookie={header.Cookie}" 200
`
}

// OIDCBlock is the oidc_session block for the mock IdP, with extra lines.
func OIDCBlock(idp *MockIdP, extra string) string {
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
`, idp.Issuer(), idp.ClientID, idp.ClientSecret, TestSecret, extra)
}

// Browser is a cookie-keeping client that does not follow redirects, so
// tests see every hop.
type Browser struct {
	t      testing.TB
	Client *http.Client
}

func NewBrowser(t testing.TB) *Browser {
	c := NewClient()
	t.Cleanup(c.CloseIdleConnections)
	return &Browser{t: t, Client: c}
}

// NewClient is a cookie-keeping client that does not follow redirects.
// Its connections are its own, so a browser never reuses one that a
// server since restarted on the same address has closed.
func NewClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:           jar,
		Transport:     http.DefaultTransport.(*http.Transport).Clone(),
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// do sends a request with headers given as "Name: value" strings.
func (b *Browser) Do(method, target string, headers ...string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := b.Client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, target, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// navigate is a top-level Browser navigation.
func (b *Browser) Navigate(target string, headers ...string) (*http.Response, string) {
	b.t.Helper()
	return b.Do(http.MethodGet, target, append([]string{"Accept: text/html", "Sec-Fetch-Mode: navigate", "Sec-Fetch-Site: none"}, headers...)...)
}

// login walks the whole login from a protected URL and returns the final
// page; the mock IdP logs the queued (or default) user in without a form.
func (b *Browser) Login(target string) (*http.Response, string) {
	b.t.Helper()
	resp, _ := b.Navigate(target)
	if resp.StatusCode != http.StatusFound {
		b.t.Fatalf("GET %s: want a 302 to the IdP, got %d", target, resp.StatusCode)
	}
	cb := b.Authorize(resp.Header.Get("Location"))
	resp, body := b.Navigate(cb)
	if resp.StatusCode != http.StatusFound {
		b.t.Fatalf("callback: want 302, got %d: %s", resp.StatusCode, body)
	}
	return b.Navigate(Resolve(target, resp.Header.Get("Location")))
}

// authorize visits the IdP's authorization URL and returns the callback URL
// it redirects to.
func (b *Browser) Authorize(authURL string) string {
	b.t.Helper()
	resp, body := b.Navigate(authURL)
	if resp.StatusCode != http.StatusFound {
		b.t.Fatalf("IdP authorize: want 302, got %d: %s", resp.StatusCode, body)
	}
	return resp.Header.Get("Location")
}

func (b *Browser) Cookie(base, name string) *http.Cookie {
	u, _ := url.Parse(base)
	for _, c := range b.Client.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (b *Browser) SetCookie(base, name, value string) {
	u, _ := url.Parse(base)
	b.Client.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

func Resolve(base, ref string) string {
	bu, _ := url.Parse(base)
	ru, err := url.Parse(ref)
	if err != nil {
		return ref
	}
	return bu.ResolveReference(ru).String()
}

// EndSessionForm checks that resp is sign_out's page for RP-initiated
// logout (a self-submitting form, under a CSP that allows only its script)
// and returns the form.
func EndSessionForm(t testing.TB, resp *http.Response, body string) *testenv.Form {
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

// SetCookieNamed returns the response's Set-Cookie for name, or nil.
func SetCookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// LoginAs logs a new browser in at base as the mock user sub (email
// sub@example.com, verified) and checks the page shows that user (as
// SiteConfig's page does).
func LoginAs(t testing.TB, idp *MockIdP, base, sub string) *Browser {
	t.Helper()
	b := NewBrowser(t)
	if body := b.LoginAs(idp, base, sub); !strings.Contains(body, "id="+sub+" ") {
		t.Fatalf("login as %s: %s", sub, body)
	}
	return b
}

// LoginAs logs the browser in at base as the mock user sub and returns
// the page it lands on.
func (b *Browser) LoginAs(idp *MockIdP, base, sub string) string {
	b.t.Helper()
	idp.QueueUser(&mockoidc.MockUser{Subject: sub, Email: sub + "@example.com", EmailVerified: true, PreferredUsername: sub})
	resp, body := b.Login(base + "/")
	if resp.StatusCode != http.StatusOK {
		b.t.Fatalf("login as %s: %d %s", sub, resp.StatusCode, body)
	}
	return body
}

// Get navigates to target and returns the status and the body.
func (b *Browser) Get(target string) (int, string) {
	b.t.Helper()
	resp, body := b.Navigate(target)
	return resp.StatusCode, body
}

// bearerSubject is the sub of the access token (a JWT, mockoidc's) a
// userinfo request presents, read without checking it: mockoidc checked.
func bearerSubject(r *http.Request) string {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	_ = json.Unmarshal(payload, &claims)
	return claims.Sub
}
