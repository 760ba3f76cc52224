package testidp

// oidc-provider (github.com/panva/node-oidc-provider), an OpenID Certified
// provider for Node.js, pinned in internal/testidp/oidcprovider/package.json
// and installed there by scripts/install-deps.sh (npm ci). Unlike Dex and
// the zitadel example it implements pushed authorization requests, DPoP,
// private_key_jwt, back-channel logout, revocation, introspection and the
// FAPI 2.0 profile, and it follows the OpenID specifications strictly:
// email/profile claims only from userinfo in the code flow (OIDC Core 5.4),
// offline_access only with prompt=consent (OIDC Core 11), the RFC 9207 iss
// authorization response parameter always.

import (
	"encoding/json"
	"fmt"
	"io"
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

// OIDCProviderVersion is the oidc-provider release the tests pin.
const OIDCProviderVersion = "9.13.3"

// The one user of every oidc-provider started by StartOIDCProvider.
const (
	OPLogin    = "alice"
	OPPassword = "alice-password-1"
	OPSubject  = "4d6f0a2e-alice"
	OPEmail    = "alice@example.com"
	OPName     = "Alice Example"
)

// OPGroups is the "groups" claim of the user (scope groups).
var OPGroups = []string{"admins", "staff"}

// Client ids and secrets registered in every oidc-provider (the
// private_key_jwt and client_credentials clients only when asked for).
const (
	OPBasicClientID     = "op-basic" // client_secret_basic
	OPBasicClientSecret = "op-basic-secret-0123456789abcdefghijklmn"
	OPPostClientID      = "op-post" // client_secret_post
	OPPostClientSecret  = "op-post-secret-0123456789abcdefghijklmno"
	OPKeyClientID       = "op-key"    // private_key_jwt
	OPPublicClientID    = "op-public" // none: public, PKCE required
	OPServiceClientID   = "op-service"
	OPServiceSecret     = "op-service-secret-0123456789abcdefghijk"
)

// CSS selectors of the login and logout pages, for chromedp. The Go
// drivers (LoginOIDCProvider, LogoutOIDCProvider) use the same elements.
const (
	OPLoginFormSelector     = "#op-login"
	OPLoginNameSelector     = "#op-login-name"     // input name="login"
	OPLoginPasswordSelector = "#op-login-password" // input name="password"
	OPLoginSubmitSelector   = "#op-login-submit"
	OPLoginErrorSelector    = "#op-login-error" // shown with the form after a wrong password
	OPLogoutConfirmSelector = "#op-logout-confirm"
	OPLogoutDoneSelector    = "#op-logout-done" // the OP's page when no post_logout_redirect_uri was given
)

// OPClient is a client registered at the provider.
type OPClient struct {
	ID     string
	Secret string // "" for the public and private_key_jwt clients
}

// OPUser is the provider's one user.
type OPUser struct {
	Login, Password, Subject, Email, Name string
	Groups                                []string
}

// OIDCProviderOptions configures StartOIDCProvider. The zero value is
// oidc-provider's defaults: PAR and DPoP offered (not required),
// RP-initiated logout on, revocation, introspection, back-channel logout,
// the claims parameter and client_credentials off.
type OIDCProviderOptions struct {
	// RedirectURIs and PostLogoutRedirectURIs are registered for every
	// code-flow client (exact match).
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	// BackchannelLogoutURI, when set, turns back-channel logout on and is
	// registered (with backchannel_logout_session_required) for every
	// code-flow client. Loopback URIs work: this test OP has no SSRF guard.
	BackchannelLogoutURI string

	// ClientJWKS (a JWKS document of public keys) or ClientJWKSURI
	// registers the private_key_jwt client OPKeyClientID with those keys.
	// The OP caches a fetched jwks_uri for about a minute.
	ClientJWKS    []byte
	ClientJWKSURI string
	// ClientAuthSigningAlg pins token_endpoint_auth_signing_alg of the
	// private_key_jwt client; "" accepts any the OP supports.
	ClientAuthSigningAlg string

	// IDTokenSigningAlg is id_token_signed_response_alg of every client:
	// RS256 (default), PS256, ES256 or EdDSA.
	IDTokenSigningAlg string

	DisablePAR  bool // no pushed_authorization_request_endpoint
	RequirePAR  bool // require_pushed_authorization_requests for every client
	DisableDPoP bool
	// DPoPNonce makes the OP require a server nonce in every DPoP proof
	// (use_dpop_nonce until the client sends the one it was given).
	DPoPNonce bool
	// RequireDPoP registers every code-flow client with
	// dpop_bound_access_tokens: token requests without a proof fail.
	RequireDPoP bool

	Revocation        bool
	Introspection     bool
	ClaimsParameter   bool
	ClientCredentials bool // registers OPServiceClientID (client_secret_basic)
	DisableRPLogout   bool // no end_session_endpoint
	// ACRValues are acr_values_supported; a login gets the first requested
	// one the OP supports, else the first of these.
	ACRValues []string
	// FAPI2 turns on oidc-provider's FAPI 2.0 Security Profile checks.
	FAPI2 bool

	AccessTokenTTL time.Duration // 0: oidc-provider's 1h
	IDTokenTTL     time.Duration // 0: oidc-provider's 1h
}

// OIDCProvider is a running oidc-provider, stopped at test cleanup.
type OIDCProvider struct {
	Issuer string // http://127.0.0.1:<port> (no trailing slash)
	Addr   string // 127.0.0.1:<port>
	Basic  OPClient
	Post   OPClient
	Key    OPClient // registered only with ClientJWKS or ClientJWKSURI
	Public OPClient
	// Service is the client_credentials client (with ClientCredentials).
	Service    OPClient
	User       OPUser
	ConfigPath string
	LogPath    string

	proc process
}

// OIDCProviderDir returns internal/testidp/oidcprovider of this repository
// with its node_modules installed, and the node binary ($OIDC_SESSION_NODE,
// else node on $PATH). When either is missing or node_modules holds another
// oidc-provider version, the test fails with CI=true and is skipped
// otherwise.
func OIDCProviderDir(t testing.TB) (dir, node string) {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		testenv.Missing(t, "oidc-provider: cannot locate repository root: "+err.Error(), testenv.InstallDeps)
		return "", ""
	}
	dir = filepath.Join(root, "internal", "testidp", "oidcprovider")
	node = os.Getenv("OIDC_SESSION_NODE")
	if node == "" {
		if node, err = exec.LookPath("node"); err != nil {
			testenv.Missing(t, "oidc-provider needs Node.js (node >= 20.19): "+err.Error(), testenv.InstallDeps)
			return "", ""
		}
	}
	var pkg struct {
		Version string `json:"version"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "node_modules", "oidc-provider", "package.json"))
	if err == nil {
		err = json.Unmarshal(data, &pkg)
	}
	if err != nil || pkg.Version != OIDCProviderVersion {
		testenv.Missing(t, fmt.Sprintf("oidc-provider %s not installed in %s/node_modules (found %q, err=%v)", OIDCProviderVersion, dir, pkg.Version, err), testenv.InstallDeps)
		return "", ""
	}
	return dir, node
}

// StartOIDCProvider starts oidc-provider on a free loopback port with the
// clients and features opts asks for, and returns once its discovery
// document answers (3 attempts, ~20 s each). It is stopped in t.Cleanup,
// and the tail of its log (requests and the OP's error events) is printed
// when the test failed.
func StartOIDCProvider(t testing.TB, opts OIDCProviderOptions) *OIDCProvider {
	t.Helper()
	dir, node := OIDCProviderDir(t)
	tmp := t.TempDir()
	return startWithRetries(t, "oidc-provider", func(attempt int) (*OIDCProvider, error) {
		return tryStartOIDCProvider(t, node, dir, tmp, attempt, opts)
	})
}

func tryStartOIDCProvider(t testing.TB, node, dir, tmp string, attempt int, opts OIDCProviderOptions) (*OIDCProvider, error) {
	addr := testenv.FreeAddr(t)
	op := &OIDCProvider{
		Issuer: "http://" + addr,
		Addr:   addr,
		Basic:  OPClient{ID: OPBasicClientID, Secret: OPBasicClientSecret},
		Post:   OPClient{ID: OPPostClientID, Secret: OPPostClientSecret},
		Public: OPClient{ID: OPPublicClientID},
		User: OPUser{Login: OPLogin, Password: OPPassword, Subject: OPSubject, Email: OPEmail, Name: OPName,
			Groups: append([]string(nil), OPGroups...)},
		ConfigPath: filepath.Join(tmp, fmt.Sprintf("oidc-provider-%d.json", attempt)),
		LogPath:    filepath.Join(tmp, fmt.Sprintf("oidc-provider-%d.log", attempt)),
	}
	cfg, err := op.config(opts)
	if err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(op.ConfigPath, data, 0o600); err != nil {
		return nil, err
	}
	op.proc = process{what: "oidc-provider", logPath: op.LogPath, grace: 5 * time.Second}
	cmd := exec.Command(node, filepath.Join(dir, "server.js"), op.ConfigPath)
	cmd.Dir = dir
	if err := op.proc.launch(t, cmd, op.Issuer+"/.well-known/openid-configuration"); err != nil {
		return nil, err
	}
	return op, nil
}

// config is the JSON server.js reads (see its header).
func (op *OIDCProvider) config(opts OIDCProviderOptions) (map[string]any, error) {
	codeClient := func(id, method string) map[string]any {
		c := map[string]any{
			"client_id":                  id,
			"redirect_uris":              nonNil(opts.RedirectURIs),
			"post_logout_redirect_uris":  nonNil(opts.PostLogoutRedirectURIs),
			"grant_types":                []string{"authorization_code", "refresh_token"},
			"response_types":             []string{"code"},
			"token_endpoint_auth_method": method,
		}
		if opts.BackchannelLogoutURI != "" {
			c["backchannel_logout_uri"] = opts.BackchannelLogoutURI
			c["backchannel_logout_session_required"] = true
		}
		if opts.IDTokenSigningAlg != "" {
			c["id_token_signed_response_alg"] = opts.IDTokenSigningAlg
		}
		if opts.RequireDPoP {
			c["dpop_bound_access_tokens"] = true
		}
		return c
	}
	var clients []any
	if !opts.FAPI2 { // FAPI 2.0 allows no client secrets
		basic := codeClient(op.Basic.ID, "client_secret_basic")
		basic["client_secret"] = op.Basic.Secret
		post := codeClient(op.Post.ID, "client_secret_post")
		post["client_secret"] = op.Post.Secret
		clients = append(clients, basic, post, codeClient(op.Public.ID, "none"))
	}
	if opts.ClientJWKS != nil || opts.ClientJWKSURI != "" {
		op.Key = OPClient{ID: OPKeyClientID}
		key := codeClient(op.Key.ID, "private_key_jwt")
		if opts.ClientJWKS != nil {
			var jwks map[string]any
			if err := json.Unmarshal(opts.ClientJWKS, &jwks); err != nil {
				return nil, fmt.Errorf("ClientJWKS: %w", err)
			}
			key["jwks"] = jwks
		} else {
			key["jwks_uri"] = opts.ClientJWKSURI
		}
		if opts.ClientAuthSigningAlg != "" {
			key["token_endpoint_auth_signing_alg"] = opts.ClientAuthSigningAlg
		}
		clients = append(clients, key)
	}
	if opts.ClientCredentials {
		op.Service = OPClient{ID: OPServiceClientID, Secret: OPServiceSecret}
		clients = append(clients, map[string]any{
			"client_id":                  op.Service.ID,
			"client_secret":              op.Service.Secret,
			"grant_types":                []string{"client_credentials"},
			"response_types":             []string{},
			"redirect_uris":              []string{},
			"token_endpoint_auth_method": "client_secret_basic",
		})
	}
	u := op.User
	return map[string]any{
		"issuer": op.Issuer,
		"user": map[string]any{"login": u.Login, "password": u.Password, "sub": u.Subject,
			"email": u.Email, "name": u.Name, "groups": u.Groups},
		"clients": clients,
		"features": map[string]any{
			"par":               !opts.DisablePAR,
			"requirePar":        opts.RequirePAR,
			"dpop":              !opts.DisableDPoP,
			"dpopNonce":         opts.DPoPNonce,
			"revocation":        opts.Revocation,
			"introspection":     opts.Introspection,
			"backchannelLogout": opts.BackchannelLogoutURI != "",
			"claimsParameter":   opts.ClaimsParameter,
			"clientCredentials": opts.ClientCredentials,
			"rpInitiatedLogout": !opts.DisableRPLogout,
			"fapi2":             opts.FAPI2,
		},
		"acrValues":      nonNil(opts.ACRValues),
		"accessTokenTTL": int(opts.AccessTokenTTL / time.Second),
		"idTokenTTL":     int(opts.IDTokenTTL / time.Second),
	}, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Stop ends the provider (SIGTERM, SIGKILL after 5 s) and waits for it to
// exit. Idempotent; also called at test cleanup.
func (op *OIDCProvider) Stop() { op.proc.stop() }

// LogTail returns the last n lines of the provider's output.
func (op *OIDCProvider) LogTail(n int) string { return testenv.Tail(op.LogPath, n) }

// Login runs LoginOIDCProvider with the provider's user.
func (op *OIDCProvider) Login(client *http.Client, authURL string) (*http.Response, error) {
	return LoginOIDCProvider(client, authURL, op.User.Login, op.User.Password)
}

// LoginOIDCProvider performs a browser-like login at oidc-provider, as
// LoginDex does at Dex: GET authURL (the OP's authorization URL, or a
// protected page that redirects to it) and follow redirects until the
// login form appears; POST login and password; follow the OP's redirects
// (the consent step is granted without a page) while they stay on its
// origin. It returns the response to the first request outside the OP
// (normally the relying party's callback with ?code=&state=&iss=), not
// followed further; the caller closes resp.Body. A rejected login (the
// form shown again) is an error containing "rejected".
func LoginOIDCProvider(client *http.Client, authURL, login, password string) (*http.Response, error) {
	return opLogin.run(client, authURL, login, password)
}

var opLogin = formLogin{
	idp:       "oidc-provider",
	userField: "login",
	form: func(body string) (string, url.Values, bool) {
		f, ok := formByID(body, "op-login")
		return f.attrs["action"], url.Values{}, ok
	},
}

// LogoutOIDCProvider performs RP-initiated logout as a browser would:
// GET endSessionURL (the OP's end_session_endpoint with id_token_hint,
// post_logout_redirect_uri..., or a relying party URL that redirects
// there), following redirects to the OP's confirmation page; confirm it
// (POST its form with logout=yes, which ends the whole OP session and
// sends the back-channel logout tokens); follow the OP's redirects. It
// returns the response to the first request outside the OP (the
// post_logout_redirect_uri), or the OP's own "signed out" page when none
// was given; the caller closes resp.Body. client must carry the cookie
// jar of the login.
func LogoutOIDCProvider(client *http.Client, endSessionURL string) (*http.Response, error) {
	c := withoutRedirects(client)
	// oidc-provider's own form carries the xsrf field; the buttons are
	// outside it, naming it in their form attribute.
	var form htmlForm
	page, _, err := reachPage(c, endSessionURL, "logout confirmation", func(body string) (ok bool) {
		form, ok = formByID(body, "op.logoutForm")
		return ok
	}, nil)
	if err != nil {
		return nil, err
	}
	target, err := page.Parse(form.attrs["action"])
	if err != nil {
		return nil, fmt.Errorf("testidp: bad logout form action %q: %w", form.attrs["action"], err)
	}
	form.fields.Set("logout", "yes") // the confirm button's name and value
	resp, err := c.PostForm(target.String(), form.fields)
	if err != nil {
		return nil, fmt.Errorf("testidp: POST %s: %w", target, err)
	}
	return followWithin(c, resp, origin(target), func(resp *http.Response, body string) (*http.Response, error) {
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="op-logout-done"`) {
			return nil, fmt.Errorf("testidp: logout ended at %s with status %d: %s", resp.Request.URL, resp.StatusCode, snippet(body))
		}
		resp.Body = io.NopCloser(strings.NewReader(body))
		return resp, nil
	})
}

// formByID returns the form of body with that id.
func formByID(body, id string) (htmlForm, bool) {
	for _, f := range htmlForms(body) {
		if f.attrs["id"] == id {
			return f, true
		}
	}
	return htmlForm{}, false
}
