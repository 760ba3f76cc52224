// Package testidp runs real OpenID Connect providers for integration tests:
// Dex (this file), the zitadel example OP (zitadel.go) and oidc-provider, an
// OpenID Certified OP with PAR, DPoP and private_key_jwt
// (oidcprovider.go), with browser-like login drivers for each; and
// oauth2-proxy (oauth2proxy.go), the relying party whose real sessions the
// oauth2-proxy migration takes over.
//
// Dex is built from the pinned version in tools/dex by
// scripts/install-deps.sh into <repo root>/.bin/dex. Tests locate it with
// DexBinary (honouring $OIDC_SESSION_DEX), start a private instance with
// StartDex and log a user in with LoginDex.
package testidp

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/internal/testenv"
)

// Fixed identity of the single static user and client configured in every
// Dex started by StartDex.
const (
	DefaultClientID     = "oidc-session-test"
	DefaultClientSecret = "oidc-session-test-secret-0123456789"
	DefaultEmail        = "admin@example.com"
	DefaultPassword     = "password"
	DefaultUsername     = "admin"
	DefaultUserID       = "5b9f7a3e-2c1d-4e8f-9a6b-1c2d3e4f5a6b"

	// bcrypt (cost 10) of DefaultPassword.
	defaultPasswordHash = "$2a$10$mG0TMz.ZLyBr3qD8A/n71.jyKvW28gbYKzXrgsYYhrcynJec3hsBG"

	startTimeout = 20 * time.Second
)

// DexOptions configures StartDex.
type DexOptions struct {
	// RedirectURIs are the redirect (callback) URIs registered for the
	// static client. Dex compares them exactly with the redirect_uri of an
	// authorization request.
	RedirectURIs []string
	// IDTokenTTL is Dex's expiry.idTokens; Dex's access tokens get the same
	// lifetime. Default 10m.
	IDTokenTTL time.Duration
	// ExtraClients are further confidential static clients, allowed the
	// same RedirectURIs, for tests that need tokens made for another
	// client of the same issuer.
	ExtraClients []DexClient
	// Email is the static user's login and email claim. Default
	// DefaultEmail.
	Email string
}

// DexClient is a static client of Dex.
type DexClient struct {
	ID     string
	Secret string
}

// Dex is a running Dex instance, stopped automatically at test cleanup.
type Dex struct {
	Issuer       string // e.g. http://127.0.0.1:40123/dex (no trailing slash)
	ClientID     string // DefaultClientID
	ClientSecret string // DefaultClientSecret
	Email        string // login of the static user (DefaultEmail)
	Password     string // DefaultPassword
	Username     string // DefaultUsername ("name" claim)
	UserID       string // DefaultUserID (Dex derives the "sub" claim from it)
	Addr         string // host:port Dex listens on
	ConfigPath   string // Dex config file
	LogPath      string // Dex stdout+stderr

	proc process
}

// DexBinary returns the path of the Dex binary: $OIDC_SESSION_DEX when set,
// else <repo root>/.bin/dex. When it is missing the test fails if CI=true
// (a missing component is a failure in CI) and is skipped otherwise.
func DexBinary(t testing.TB) string {
	t.Helper()
	return locateBinary(t, "OIDC_SESSION_DEX", "dex", "dex")
}

// StartDex starts a private Dex on a free loopback port with in-memory
// storage, the password DB holding one static user (DefaultEmail /
// DefaultPassword), one confidential static client (DefaultClientID /
// DefaultClientSecret) allowed to use opts.RedirectURIs, and the approval
// screen disabled. It returns once the discovery document answers (bounded
// by ~20 s) and stops Dex in t.Cleanup. Dex's output goes to d.LogPath; its
// tail is logged when the test failed.
func StartDex(t testing.TB, opts DexOptions) *Dex {
	t.Helper()
	bin := DexBinary(t)
	if opts.IDTokenTTL <= 0 {
		opts.IDTokenTTL = 10 * time.Minute
	}
	dir := t.TempDir()
	return startWithRetries(t, "dex", func(attempt int) (*Dex, error) {
		return tryStartDex(t, bin, dir, attempt, opts)
	})
}

func tryStartDex(t testing.TB, bin, dir string, attempt int, opts DexOptions) (*Dex, error) {
	addr := testenv.FreeAddr(t)
	d := &Dex{
		Issuer:       "http://" + addr + "/dex",
		ClientID:     DefaultClientID,
		ClientSecret: DefaultClientSecret,
		Email:        DefaultEmail,
		Password:     DefaultPassword,
		Username:     DefaultUsername,
		UserID:       DefaultUserID,
		Addr:         addr,
		ConfigPath:   filepath.Join(dir, fmt.Sprintf("dex-%d.json", attempt)),
		LogPath:      filepath.Join(dir, fmt.Sprintf("dex-%d.log", attempt)),
	}
	if opts.Email != "" {
		d.Email = opts.Email
	}
	d.proc = process{what: "dex", logPath: d.LogPath}
	redirects := opts.RedirectURIs
	if redirects == nil {
		redirects = []string{}
	}
	// JSON is valid YAML, and encoding/json takes care of quoting.
	cfg := map[string]any{
		"issuer":  d.Issuer,
		"storage": map[string]any{"type": "memory"},
		"web":     map[string]any{"http": addr},
		"logger":  map[string]any{"level": "debug"},
		"oauth2": map[string]any{
			"skipApprovalScreen": true,
		},
		"expiry": map[string]any{
			"idTokens": opts.IDTokenTTL.String(),
		},
		"enablePasswordDB": true,
		"staticPasswords": []any{map[string]any{
			"email":         d.Email,
			"hash":          defaultPasswordHash,
			"username":      d.Username,
			"userID":        d.UserID,
			"emailVerified": true,
		}},
		"staticClients": staticClients(append([]DexClient{{d.ClientID, d.ClientSecret}}, opts.ExtraClients...), redirects),
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(d.ConfigPath, data, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", d.ConfigPath)
	cmd.Env = append(os.Environ(), "DEX_EXPAND_ENV=false")
	if err := d.proc.launch(t, cmd, d.Issuer+"/.well-known/openid-configuration"); err != nil {
		return nil, err
	}
	return d, nil
}

func staticClients(clients []DexClient, redirects []string) []any {
	out := make([]any, len(clients))
	for i, c := range clients {
		out[i] = map[string]any{
			"id":           c.ID,
			"secret":       c.Secret,
			"name":         "oidc_session test client " + c.ID,
			"redirectURIs": redirects,
		}
	}
	return out
}

// Stop kills Dex (by PID) and waits for it to exit. It is idempotent and
// is called automatically at test cleanup; tests may call it earlier to
// simulate an unavailable IdP.
func (d *Dex) Stop() { d.proc.stop() }

// LogTail returns the last n lines of Dex's output.
func (d *Dex) LogTail(n int) string { return testenv.Tail(d.LogPath, n) }
