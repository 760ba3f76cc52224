// Package testcaddy runs Caddy with the oidc_session plugin inside the test
// process, with mockoidc as the IdP and a cookie-keeping client that logs
// users in, for the tests of packages other than the plugin's own (the
// command line, the dashboard). Caddy is one per process: tests that use
// Start must not run in parallel.
package testcaddy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard" // respond, metrics ...
	"github.com/oauth2-proxy/mockoidc"

	_ "github.com/oidc-session/oidc_session" // the plugin
	"github.com/oidc-session/oidc_session/internal/testenv"
)

// CookieSecret is the cookie secret of IdP.Block.
const CookieSecret = "testcaddy-cookie-secret-0123456789-abcdef"

// Caddy is the running test Caddy.
type Caddy struct {
	// Admin is the admin listen address as Caddy's commands take it:
	// host:port or unix/<path>.
	Admin string
	// AdminURL is http://host:port of a TCP admin endpoint, else "".
	AdminURL string
	// Base is the site's http://host:port.
	Base string
	// LogPath is Caddy's log, printed when the test fails.
	LogPath string
}

// Start runs Caddy with one site whose body is site, and its admin API on
// admin (host:port or unix/<path>; "" for a free loopback port). It stops
// Caddy at cleanup.
func Start(t testing.TB, admin, site string) *Caddy {
	t.Helper()
	dir := t.TempDir()
	if admin == "" {
		admin = testenv.FreeAddr(t)
	}
	c := &Caddy{Admin: admin, Base: "http://" + testenv.FreeAddr(t), LogPath: filepath.Join(dir, "caddy.log")}
	if !strings.HasPrefix(admin, "unix/") {
		c.AdminURL = "http://" + admin
	}
	cfg := fmt.Sprintf(`{
	admin %s
	default_bind 127.0.0.1
	auto_https off
	persist_config off
	skip_install_trust
	storage file_system %s
	log {
		output file %s
		level INFO
	}
}
%s {
%s
}
`, admin, dir, c.LogPath, c.Base, site)
	js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	if err != nil {
		t.Fatalf("adapt: %v\n%s", err, cfg)
	}
	if err := caddy.Load(js, true); err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("caddy log:\n%s", testenv.Tail(c.LogPath, 40))
		}
		_ = caddy.Stop()
	})
	return c
}

// IdP is mockoidc, corrected where the plugin would otherwise trip over
// it: expires_in in seconds (mockoidc sends nanoseconds) and the client
// authentication it really reads (form parameters, though it advertises
// HTTP Basic). Its userinfo lacks sub: leave fetch_userinfo off.
type IdP struct {
	*mockoidc.MockOIDC
}

// StartIdP starts mockoidc on a loopback port, with access tokens valid
// for accessTTL (mockoidc's default when 0), and stops it at cleanup.
func StartIdP(t testing.TB, accessTTL time.Duration) *IdP {
	t.Helper()
	m, err := mockoidc.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if accessTTL > 0 {
		m.AccessTTL = accessTTL
	}
	idp := &IdP{MockOIDC: m}
	if err := m.AddMiddleware(idp.correct); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return idp
}

// Block is an oidc_session block for this IdP with extra subdirectives;
// cookies work on plain http.
func (idp *IdP) Block(extra string) string {
	return fmt.Sprintf(`	oidc_session {
		issuer %s
		client_id %s
		client_secret %s
		cookie {
			secret %s
			secure off
		}
		%s
	}
`, idp.Issuer(), idp.ClientID, idp.ClientSecret, CookieSecret, extra)
}

// correct rewrites two of mockoidc's JSON answers (see IdP).
func (idp *IdP) correct(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var fix func(map[string]any)
		switch {
		case strings.HasSuffix(r.URL.Path, mockoidc.TokenEndpoint):
			fix = func(doc map[string]any) { doc["expires_in"] = int(idp.AccessTTL / time.Second) }
		case strings.HasSuffix(r.URL.Path, mockoidc.DiscoveryEndpoint):
			fix = func(doc map[string]any) {
				doc["token_endpoint_auth_methods_supported"] = []string{"client_secret_post"}
			}
		default:
			next.ServeHTTP(w, r)
			return
		}
		rec := &recorder{header: http.Header{}, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		var doc map[string]any
		if rec.status != http.StatusOK || json.Unmarshal(rec.body.Bytes(), &doc) != nil {
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status)
			_, _ = w.Write(rec.body.Bytes())
			return
		}
		fix(doc)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(doc)
	})
}

type recorder struct {
	header http.Header
	body   bytes.Buffer
	status int
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(p []byte) (int, error) { return r.body.Write(p) }
func (r *recorder) WriteHeader(code int)        { r.status = code }

// Browser is a cookie-keeping client that makes top-level navigations and
// does not follow redirects, so that Login walks each hop itself.
type Browser struct {
	t      testing.TB
	client *http.Client
}

// NewBrowser returns a browser without cookies.
func NewBrowser(t testing.TB) *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{t: t, client: &http.Client{
		Jar:           jar,
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Get navigates to target and returns the status and the body.
func (b *Browser) Get(target string) (int, string) {
	b.t.Helper()
	code, _, body := b.get(target)
	return code, body
}

func (b *Browser) get(target string) (int, string, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Sec-Fetch-Site", "none")
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	loc := resp.Header.Get("Location")
	if loc != "" {
		base, _ := url.Parse(target)
		if u, err := base.Parse(loc); err == nil {
			loc = u.String()
		}
	}
	return resp.StatusCode, loc, string(body)
}

// Login logs the browser in at base as sub (email sub@example.com): the
// site redirects to mockoidc, which sends the browser back with a code,
// and the callback redirects to the page. It returns the page's body.
func (b *Browser) Login(idp *IdP, base, sub string) string {
	b.t.Helper()
	idp.QueueUser(&mockoidc.MockUser{Subject: sub, Email: sub + "@example.com", EmailVerified: true, PreferredUsername: sub})
	target := base + "/"
	for hop := 0; hop < 4; hop++ {
		code, loc, body := b.get(target)
		if code == http.StatusOK {
			return body
		}
		if code != http.StatusFound || loc == "" {
			b.t.Fatalf("login as %s: GET %s: %d %s", sub, target, code, body)
		}
		target = loc
	}
	b.t.Fatalf("login as %s: more redirects than a login takes", sub)
	return ""
}

// Scrape returns Caddy's metrics in the Prometheus text format.
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
