package testidp

// The example OpenID Provider of github.com/zitadel/oidc/v3, built from
// tools/zitadel by scripts/install-deps.sh into <repo root>/.bin/zitadel-op.
// Unlike Dex it advertises an end_session_endpoint (RP-initiated logout),
// requires PKCE S256 from public clients, and keeps no login session of its
// own: every authorization request shows its login form.

import (
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
	// AccessTokenTTL is the access token lifetime the OP reports; 0 keeps
	// the example's 5m, which also bounds it (see tools/zitadel).
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

	proc process
}

// ZitadelBinary returns the path of the zitadel example OP:
// $OIDC_SESSION_ZITADEL_OP when set, else <repo root>/.bin/zitadel-op. When
// it is missing the test fails with CI=true and is skipped otherwise.
func ZitadelBinary(t testing.TB) string {
	t.Helper()
	return locateBinary(t, "OIDC_SESSION_ZITADEL_OP", "zitadel-op", "zitadel OP")
}

// StartZitadel starts the zitadel example OP on a free loopback port and
// returns once its discovery document answers (bounded by ~20 s per
// attempt, 3 attempts). It is stopped in t.Cleanup; its log tail is printed
// when the test failed.
func StartZitadel(t testing.TB, opts ZitadelOptions) *Zitadel {
	t.Helper()
	bin := ZitadelBinary(t)
	dir := t.TempDir()
	return startWithRetries(t, "zitadel OP", func(attempt int) (*Zitadel, error) {
		return tryStartZitadel(t, bin, dir, attempt, opts)
	})
}

func tryStartZitadel(t testing.TB, bin, dir string, attempt int, opts ZitadelOptions) (*Zitadel, error) {
	addr := testenv.FreeAddr(t)
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
	}
	z.proc = process{what: "zitadel OP", logPath: z.LogPath, grace: 5 * time.Second}
	env := append(os.Environ(),
		"ADDR="+addr,
		"ISSUER="+z.Issuer,
		"REDIRECT_URI="+strings.Join(opts.RedirectURIs, ","),
		"POST_LOGOUT_REDIRECT_URI="+strings.Join(opts.PostLogoutRedirectURIs, ","),
	)
	if opts.AccessTokenTTL > 0 {
		env = append(env, "ACCESS_TOKEN_TTL="+opts.AccessTokenTTL.String())
	}
	cmd := exec.Command(bin)
	cmd.Env = env
	if err := z.proc.launch(t, cmd, z.Issuer+".well-known/openid-configuration"); err != nil {
		return nil, err
	}
	return z, nil
}

// Stop ends the OP (SIGTERM, SIGKILL after 5 s) and waits for it to exit.
// Idempotent; also called at test cleanup.
func (z *Zitadel) Stop() { z.proc.stop() }

// LogTail returns the last n lines of the OP's output.
func (z *Zitadel) LogTail(n int) string { return testenv.Tail(z.LogPath, n) }

// zitadelLoginForm finds the first form with a "password" input and
// returns its action and the values of all its named inputs.
func zitadelLoginForm(body string) (action string, fields url.Values, ok bool) {
	for _, f := range htmlForms(body) {
		if _, ok := f.fields["password"]; ok {
			return f.attrs["action"], f.fields, true
		}
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
	return zitadelLogin.run(client, authURL, username, password)
}

var zitadelLogin = formLogin{idp: "zitadel OP", userField: "username", form: zitadelLoginForm}
