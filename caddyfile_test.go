package oidcsession

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	goflag "flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/oidc-session/oidc_session/sessions"
)

var update = goflag.Bool("update", false, "rewrite the golden files in testdata/adapt")

func adaptCaddyfile(t *testing.T, path string) ([]byte, error) {
	t.Helper()
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	adapter := caddyconfig.GetAdapter("caddyfile")
	if adapter == nil {
		t.Fatal("caddyfile adapter not registered")
	}
	out, warnings, err := adapter.Adapt(body, map[string]any{"filename": path})
	for _, w := range warnings {
		t.Logf("%s: warning: %s", path, w.String())
	}
	return out, err
}

// normalizeJSON re-encodes a JSON document with sorted keys and tabs, so
// goldens compare by content rather than by formatting.
func normalizeJSON(t *testing.T, b []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, b)
	}
	out, err := json.MarshalIndent(v, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func TestAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/adapt/*.caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/adapt/*.caddyfile")
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".caddyfile")
		t.Run(name, func(t *testing.T) {
			out, err := adaptCaddyfile(t, file)
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			got := normalizeJSON(t, out)
			golden := strings.TrimSuffix(file, ".caddyfile") + ".json"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			raw, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestAdapt -update to create it)", err)
			}
			if want := normalizeJSON(t, raw); !bytes.Equal(got, want) {
				t.Errorf("adapted %s differs from %s (run go test -run TestAdapt -update if intended)\n--- got\n%s\n--- want\n%s", file, golden, got, want)
			}
		})
	}
}

// oidcHandlers returns the oidc_session handler configs of an adapted
// config, in order.
func oidcHandlers(t *testing.T, adapted []byte) []map[string]any {
	t.Helper()
	var found []map[string]any
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["handler"] == "oidc_session" {
				found = append(found, v)
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	var doc any
	if err := json.Unmarshal(adapted, &doc); err != nil {
		t.Fatal(err)
	}
	walk(doc)
	return found
}

// adaptedHandler adapts a Caddyfile with one oidc_session handler and
// returns it, decoded and as adapted.
func adaptedHandler(t *testing.T, file string) (Handler, map[string]any) {
	t.Helper()
	out, err := adaptCaddyfile(t, file)
	if err != nil {
		t.Fatal(err)
	}
	hs := oidcHandlers(t, out)
	if len(hs) != 1 {
		t.Fatalf("found %d oidc_session handlers; want 1", len(hs))
	}
	raw, _ := json.Marshal(hs[0])
	var h Handler
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h, hs[0]
}

// The goldens pin the whole JSON; these checks say what matters in it, so a
// wrong golden written with -update still fails.
func TestCaddyfileAllOptions(t *testing.T) {
	h, adapted := adaptedHandler(t, "testdata/adapt/all_options.caddyfile")
	var store sessions.CookieStore
	if err := json.Unmarshal(h.StoreRaw, &store); err != nil {
		t.Fatal(err)
	}
	h.StoreRaw = nil
	want := Handler{
		ProviderConfig: ProviderConfig{
			Issuer:          "https://idp.example.com/realms/main",
			ClientID:        "app",
			ClientSecret:    "{env.OIDC_CLIENT_SECRET}",
			RedirectURL:     "/auth/callback",
			Scopes:          []string{"openid", "email", "profile", "offline_access"},
			DisablePKCE:     true,
			FetchUserInfo:   "on",
			ProviderTimeout: caddy.Duration(3 * time.Second),
		},
		BrowserConfig: BrowserConfig{
			PathPrefix:           "/auth",
			Unauthenticated:      "deny",
			AllowedRedirectHosts: []string{"partner.example.org", "*.trusted.example"},
			PostLogoutRedirect:   "https://www.example.com/bye",
			EndSessionMethod:     "get",
			CacheControl:         "private, no-cache",
		},
		SessionPolicy: SessionPolicy{
			SessionLifetime:   caddy.Duration(12 * time.Hour),
			IdleTimeout:       caddy.Duration(30 * time.Minute),
			RefreshMargin:     caddy.Duration(2 * time.Minute),
			MaxLoginFlows:     3,
			SessionCacheSize:  50000,
			UnavailableStatus: 502,
			LoginTimeout:      caddy.Duration(5 * time.Minute),
		},
		IdentityConfig: IdentityConfig{
			UserIDClaim: "email",
			GroupsClaim: "roles",
			Claims:      []string{"department", "tenant"},
			Headers: &HeadersConfig{User: "X-Auth-User", Email: "X-Auth-Email", Name: "X-Auth-Name",
				Groups: "X-Auth-Groups", AccessToken: "X-Auth-Token"},
		},
		AccessRules: AccessRules{
			AllowedEmailDomains:  []string{"example.com", "example.org"},
			AllowUnverifiedEmail: true,
			AllowedGroups:        []string{"admins", "ops"},
			RequiredClaims:       map[string][]string{"tenant": {"acme", "globex"}, "role": {"admin", "editor"}},
		},
		Cookie: CookieConfig{
			Name:         "_session",
			Secrets:      []string{"{env.OIDC_COOKIE_SECRET}", "0123456789abcdef0123456789abcdef-old"},
			Domain:       "example.com",
			Path:         "/app",
			Insecure:     true,
			AllowScripts: true,
			SameSite:     "strict",
		},
	}
	gotJSON, _ := json.MarshalIndent(h, "", "  ")
	wantJSON, _ := json.MarshalIndent(want, "", "  ")
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("adapted handler:\n%s\nwant:\n%s", gotJSON, wantJSON)
	}
	if !store.DropTokens {
		t.Error("store cookie { drop_tokens } not adapted")
	}
	if b := adapted["store"].(map[string]any)["backend"]; b != "cookie" {
		t.Errorf("store backend = %v; want cookie", b)
	}
}

func TestCaddyfileVariants(t *testing.T) {
	h, _ := adaptedHandler(t, "testdata/adapt/variants.caddyfile")
	if h.IdleTimeout >= 0 {
		t.Errorf("idle_timeout off adapted to %v; want negative", h.IdleTimeout)
	}
	if h.RedirectURL != "https://app.example.com/oauth2/callback" {
		t.Errorf("redirect_url = %q", h.RedirectURL)
	}
	if h.Issuer != "{env.OIDC_ISSUER}" || h.ClientID != "{env.OIDC_CLIENT_ID}" {
		t.Errorf("placeholders not kept: issuer %q client_id %q", h.Issuer, h.ClientID)
	}
	want := HeadersConfig{User: "X-Forwarded-User", Email: "X-Forwarded-Email", Groups: "X-Forwarded-Groups"}
	if h.Headers == nil || *h.Headers != want {
		t.Errorf("bare headers = %+v; want %+v", h.Headers, want)
	}
	if h.Cookie.Insecure || h.Cookie.AllowScripts || h.Cookie.SameSite != "none" {
		t.Errorf("cookie = %+v; want secure, http_only, same_site none", h.Cookie)
	}
	if h.Unauthenticated != "redirect" {
		t.Errorf("unauthenticated = %q", h.Unauthenticated)
	}
}

func TestCaddyfileMatcher(t *testing.T) {
	out, err := adaptCaddyfile(t, "testdata/adapt/matcher.caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Match  []map[string]any `json:"match"`
						Handle []map[string]any `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	srv, ok := cfg.Apps.HTTP.Servers["srv0"]
	if !ok {
		t.Fatalf("no srv0 in %s", out)
	}
	var guarded, open int
	for _, r := range srv.Routes {
		has := false
		for _, h := range r.Handle {
			if h["handler"] == "oidc_session" {
				has = true
			}
		}
		matcher, _ := json.Marshal(r.Match)
		switch {
		case has && string(matcher) == `[{"path":["/app/*"]}]`:
			guarded++
		case has:
			t.Errorf("oidc_session in a route matching %s; want only /app/*", matcher)
		case r.Match == nil:
			open++
		}
	}
	if guarded != 1 || open != 1 {
		t.Errorf("want one route with oidc_session behind /app/* and one open route; got %d and %d:\n%s", guarded, open, out)
	}
}

// Without an `order` option, oidc_session runs before basic_auth and
// before the handlers that answer requests.
func TestCaddyfileDirectiveOrder(t *testing.T) {
	out, err := adaptCaddyfile(t, "testdata/adapt/order.caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, m := range regexp.MustCompile(`"handler":"([a-z_]+)"`).FindAllSubmatch(out, -1) {
		if h := string(m[1]); h != "subroute" {
			order = append(order, h)
		}
	}
	want := []string{"oidc_session", "authentication", "static_response", "reverse_proxy"}
	if strings.Join(order, ",") != strings.Join(want, ",") {
		t.Errorf("handler order %v; want %v", order, want)
	}
}

func TestCaddyfileErrors(t *testing.T) {
	t.Setenv("OIDC_COOKIE_SECRET", "")
	files, err := filepath.Glob("testdata/errors/*.caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/errors/*.caddyfile")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".caddyfile"), func(t *testing.T) {
			f, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			rd := bufio.NewReader(f)
			first, _ := rd.ReadString('\n')
			second, _ := rd.ReadString('\n')
			f.Close()
			want, ok := strings.CutPrefix(strings.TrimSpace(first), "# error:")
			want = strings.TrimSpace(want)
			if !ok || want == "" {
				t.Fatalf("%s: first line must be `# error: <expected message>`", file)
			}
			out, err := adaptCaddyfile(t, file)
			if err == nil {
				t.Fatalf("adapted without error; want %q\n%s", want, out)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not contain %q", err, want)
			}
			// "# line: N": the mistake is reported at the line of the
			// subdirective that makes it.
			if line, ok := strings.CutPrefix(strings.TrimSpace(second), "# line:"); ok {
				if at := ".caddyfile:" + strings.TrimSpace(line) + " - "; !strings.Contains(err.Error(), at) {
					t.Fatalf("error %q is not reported at line %s", err, strings.TrimSpace(line))
				}
			}
		})
	}
}

const testSecret = "0123456789abcdef0123456789abcdef"

func provisioned(t *testing.T, h *Handler) error {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	// As Caddy does when a config is unloaded: the handler's Cleanup, then
	// the context's (which cleans up its store).
	t.Cleanup(func() {
		_ = h.Cleanup()
		cancel()
	})
	return h.Provision(ctx)
}

func TestProvisionValidate(t *testing.T) {
	base := func() *Handler {
		return &Handler{
			ProviderConfig: ProviderConfig{Issuer: "http://127.0.0.1:1", ClientID: "app"},
			Cookie:         CookieConfig{Secrets: []string{testSecret}},
		}
	}

	t.Run("env secret", func(t *testing.T) {
		t.Setenv("TEST_SECRET", testSecret)
		h := base()
		h.Cookie.Secrets = []string{"{env.TEST_SECRET}"}
		if err := provisioned(t, h); err != nil {
			t.Fatalf("Provision: %v", err)
		}
		// The secret came from the environment: a handler configured with
		// the literal value reads this one's sessions.
		value, err := h.store.Save(context.Background(), "", &sessions.Session{Subject: "u1"})
		if err != nil {
			t.Fatal(err)
		}
		lit := base()
		if err := provisioned(t, lit); err != nil {
			t.Fatal(err)
		}
		s, err := lit.store.Load(context.Background(), value)
		if err != nil || s.Subject != "u1" {
			t.Fatalf("session sealed with {env.TEST_SECRET} not readable with its value: %v, %v", s, err)
		}
		// ... and one with a different secret does not.
		other := base()
		other.Cookie.Secrets = []string{testSecret + "-other"}
		if err := provisioned(t, other); err != nil {
			t.Fatal(err)
		}
		if _, err := other.store.Load(context.Background(), value); err == nil {
			t.Fatal("session readable with another secret")
		}
	})

	t.Run("env secret too short", func(t *testing.T) {
		t.Setenv("TEST_SECRET", "short")
		h := base()
		h.Cookie.Secrets = []string{"{env.TEST_SECRET}"}
		err := provisioned(t, h)
		if err == nil {
			t.Fatal("Provision accepted a 5-character secret")
		}
		if !strings.Contains(err.Error(), "at least 32") {
			t.Fatalf("error %q does not name the length rule", err)
		}
		if strings.Contains(err.Error(), "short") && !strings.Contains(err.Error(), "characters long") {
			t.Fatalf("error %q may reveal the secret", err)
		}
	})

	t.Run("env secret unset", func(t *testing.T) {
		h := base()
		h.Cookie.Secrets = []string{"{env.TEST_SECRET_SURELY_UNSET}"}
		if err := provisioned(t, h); err == nil || !strings.Contains(err.Error(), "at least 32") {
			t.Fatalf("Provision with an unset env secret: %v; want length error", err)
		}
	})

	t.Run("no issuer", func(t *testing.T) {
		h := base()
		h.Issuer = ""
		err := provisioned(t, h)
		if err == nil || !strings.Contains(err.Error(), "issuer") {
			t.Fatalf("Provision: %v; want an error about issuer", err)
		}
	})

	t.Run("issuer from env not a URL", func(t *testing.T) {
		t.Setenv("TEST_ISSUER", "not-a-url")
		h := base()
		h.Issuer = "{env.TEST_ISSUER}"
		if err := provisioned(t, h); err == nil || !strings.Contains(err.Error(), "issuer") {
			t.Fatalf("Provision: %v; want an error about issuer", err)
		}
	})

	t.Run("no client_id and no secret", func(t *testing.T) {
		h := base()
		h.ClientID = ""
		h.Cookie.Secrets = nil
		err := h.validate()
		if err == nil || !strings.Contains(err.Error(), "client_id is required") || !strings.Contains(err.Error(), "cookie { secret <value> } is required") {
			t.Fatalf("validate: %v; want client_id and cookie secret errors", err)
		}
	})

	t.Run("unauthenticated bogus", func(t *testing.T) {
		h := base()
		h.Unauthenticated = "bogus"
		err := provisioned(t, h)
		if err == nil || !strings.Contains(err.Error(), "unauthenticated") || !strings.Contains(err.Error(), "bogus") {
			t.Fatalf("Provision: %v; want an error about unauthenticated", err)
		}
	})

	t.Run("bad allowed redirect host", func(t *testing.T) {
		h := base()
		h.AllowedRedirectHosts = []string{"ok.example", "evil.com/path"}
		if err := provisioned(t, h); err == nil || !strings.Contains(err.Error(), "evil.com/path") {
			t.Fatalf("Provision: %v; want an error naming the bad host", err)
		}
	})

	t.Run("bad same_site", func(t *testing.T) {
		h := base()
		h.Cookie.SameSite = "sometimes"
		if err := provisioned(t, h); err == nil || !strings.Contains(err.Error(), "same_site") {
			t.Fatalf("Provision: %v; want same_site error", err)
		}
	})

	t.Run("bad redirect_url", func(t *testing.T) {
		h := base()
		h.RedirectURL = "callback"
		if err := provisioned(t, h); err == nil || !strings.Contains(err.Error(), "redirect_url") {
			t.Fatalf("Provision: %v; want redirect_url error", err)
		}
	})

	t.Run("defaults", func(t *testing.T) {
		h := base()
		if err := provisioned(t, h); err != nil {
			t.Fatal(err)
		}
		if h.Unauthenticated != "auto" || h.MaxLoginFlows != 5 || h.PathPrefix != "/oauth2" ||
			h.Cookie.Name != "_oauth2_proxy" || !contains(h.Scopes, "openid") {
			t.Errorf("defaults not applied: %+v", h)
		}
		if _, ok := h.endpoints["/oauth2/callback"]; !ok {
			t.Error("callback endpoint missing")
		}
		if !h.jar.Secure || !h.jar.HTTPOnly {
			t.Error("cookie not Secure and HttpOnly by default")
		}
	})

	t.Run("no IdP contact", func(t *testing.T) {
		// Nothing listens on port 1: a Provision that fetched discovery
		// would fail or hang until the provider timeout.
		h := base()
		h.ProviderTimeout = caddy.Duration(5 * time.Second)
		start := time.Now()
		if err := provisioned(t, h); err != nil {
			t.Fatalf("Provision: %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Provision took %v; it must not contact the IdP", d)
		}
	})
}

// What the Caddyfile adapter produces must also provision and validate.
func TestAdaptProvision(t *testing.T) {
	t.Setenv("OIDC_COOKIE_SECRET", testSecret)
	t.Setenv("OIDC_CLIENT_SECRET", "client-secret")
	t.Setenv("OIDC_ISSUER", "http://127.0.0.1:1/realm")
	t.Setenv("OIDC_CLIENT_ID", "app")
	files, err := filepath.Glob("testdata/adapt/*.caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".caddyfile"), func(t *testing.T) {
			out, err := adaptCaddyfile(t, file)
			if err != nil {
				t.Fatal(err)
			}
			hs := oidcHandlers(t, out)
			if len(hs) == 0 {
				t.Fatal("no oidc_session handler")
			}
			for _, cfg := range hs {
				raw, _ := json.Marshal(cfg)
				var h Handler
				if err := json.Unmarshal(raw, &h); err != nil {
					t.Fatal(err)
				}
				if err := provisioned(t, &h); err != nil {
					t.Fatalf("Provision: %v", err)
				}
			}
		})
	}
}
