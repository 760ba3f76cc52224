package command_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/oidc-session/oidc_session/internal/testcaddy"
	"github.com/oidc-session/oidc_session/internal/testenv"
	"github.com/oidc-session/oidc_session/internal/testidp"
)

// suggestion cuts the suggested oidc_session block out of check's output.
func suggestion(t *testing.T, r result) string {
	t.Helper()
	_, rest, ok := strings.Cut(r.stdout, "\noidc_session {\n")
	block, _, ok2 := strings.Cut(rest, "\n}\n")
	if !ok || !ok2 {
		t.Fatalf("no suggested block in:\n%s", r)
	}
	return "oidc_session {\n" + block + "\n}\n"
}

// TestCheckMockoidc checks mockoidc, then logs in through a Caddy that
// runs the suggested block as printed, with the secrets in the
// environment (the cookie secret made by `secret`): the suggestion works.
func TestCheckMockoidc(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	r := caddy(t, nil, "check", "--issuer", idp.Issuer(), "--client-id", idp.ClientID, "--site", "https://app.example.com/ignored/path")
	want(t, r, 0,
		"(the discovery document agrees)",
		"1 usable of 1",
		"RSA kid=",
		"PKCE S256", "plain S256", "code_challenge S256 at every login",
		"client_secret_post",
		"fetch_userinfo auto: its claims when the ID token lacks a scope's",
		"sign_out ends the session here only",
		"redirect URI: https://app.example.com/oauth2/callback",
		"caddy oidc-session secret",
	)
	block := suggestion(t, r)
	for _, line := range []string{
		"\tissuer " + idp.Issuer() + "\n",
		"\tclient_id " + idp.ClientID + "\n",
		"\tclient_secret {env.OIDC_CLIENT_SECRET}\n",
		"\tscopes openid email profile groups\n",
		"\t\tsecret {env.OIDC_COOKIE_SECRET}\n",
	} {
		if !strings.Contains(block, line) {
			t.Errorf("suggested block lacks %q:\n%s", line, block)
		}
	}
	if strings.Contains(block, "store") || strings.Contains(r.stdout, "post-logout") || strings.Contains(r.stdout, "Problems") {
		t.Errorf("suggestions for features mockoidc lacks:\n%s", r)
	}

	secret := strings.TrimSpace(caddy(t, nil, "secret").stdout)
	t.Setenv("OIDC_CLIENT_SECRET", idp.ClientSecret)
	t.Setenv("OIDC_COOKIE_SECRET", secret)
	// Plain http in the test: the one change to the suggestion.
	site := strings.Replace(block, "{env.OIDC_COOKIE_SECRET}\n", "{env.OIDC_COOKIE_SECRET}\n\t\tsecure off\n", 1)
	c := testcaddy.Start(t, "", site+"\trespond \"hello {http.auth.user.id}\" 200\n")
	if body := testcaddy.NewBrowser(t).LoginAs(idp, c.Base, "alice"); body != "hello alice" {
		t.Fatalf("login through the suggested block: %q", body)
	}
}

// TestCheckDex checks a real Dex: PKCE S256, no end_session_endpoint,
// offline_access offered, and a block that adapts.
func TestCheckDex(t *testing.T) {
	dex := testidp.StartDex(t, testidp.DexOptions{RedirectURIs: []string{"https://app.example.com/oauth2/callback"}})
	r := caddy(t, nil, "check", "--issuer", dex.Issuer, "--client-id", dex.ClientID)
	want(t, r, 0, "(the discovery document agrees)", "code_challenge S256 at every login", "verifies RS256",
		"sign_out ends the session here only", "redirect URI: https://<your site>/oauth2/callback")
	block := suggestion(t, r)
	if !strings.Contains(block, "\tscopes openid email profile groups offline_access\n") {
		t.Errorf("Dex offers groups and offline_access; suggested:\n%s", block)
	}
	adapt(t, block)
}

// fakeIdP serves a discovery document (made by doc from the server's URL)
// and a key set, to give check what real IdPs rarely do.
func fakeIdP(t *testing.T, doc func(base string) map[string]any, jwks func(w http.ResponseWriter)) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(doc("http://" + r.Host))
		case "/keys":
			jwks(w)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// minimalDoc is a discovery document with what the plugin needs and
// nothing more.
func minimalDoc(base string) map[string]any {
	return map[string]any{
		"issuer":                 base,
		"authorization_endpoint": base + "/authorize",
		"token_endpoint":         base + "/token",
		"jwks_uri":               base + "/keys",
	}
}

// keySet serves a JWKS with the given keys.
func keySet(keys ...jose.JSONWebKey) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: keys})
	}
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestCheckEveryFeature: an IdP that advertises everything gets a row for
// each with its values, a server-side store in the suggestion and every
// URL to register.
func TestCheckEveryFeature(t *testing.T) {
	key := rsaKey(t)
	base := fakeIdP(t, func(base string) map[string]any {
		d := minimalDoc(base)
		for k, v := range map[string]any{
			"userinfo_endpoint":                              base + "/userinfo",
			"end_session_endpoint":                           base + "/logout",
			"revocation_endpoint":                            base + "/revoke",
			"pushed_authorization_request_endpoint":          base + "/par",
			"backchannel_logout_supported":                   true,
			"backchannel_logout_session_supported":           true,
			"frontchannel_logout_supported":                  true,
			"authorization_response_iss_parameter_supported": true,
			"code_challenge_methods_supported":               []string{"S256"},
			"dpop_signing_alg_values_supported":              []string{"ES256", "PS256"},
			"id_token_signing_alg_values_supported":          []string{"RS256", "HS256"},
			"token_endpoint_auth_methods_supported":          []string{"private_key_jwt", "client_secret_basic"},
			"scopes_supported":                               []string{"openid", "profile", "offline_access", "phone"},
			"response_types_supported":                       []string{"code", "id_token"},
			"require_pushed_authorization_requests":          false,
		} {
			d[k] = v
		}
		return d
	}, keySet(
		jose.JSONWebKey{Key: &key.PublicKey, KeyID: "sig-1", Algorithm: "RS256", Use: "sig"},
		jose.JSONWebKey{Key: &key.PublicKey, KeyID: "enc-1", Algorithm: "RSA-OAEP", Use: "enc"},
	))
	r := caddy(t, nil, "check", "--issuer", base, "--site", "https://app.example.com")
	want(t, r, 0,
		"1 usable of 2", "RSA kid=enc-1 alg=RSA-OAEP use=enc: not for signatures (use enc)",
		"verifies RS256", // not HS256
		base+"/logout", "sign_out sends the browser on (RP-initiated logout)",
		"yes, with sid", "/oauth2/backchannel_logout (store memory or redis)",
		"yes, without sid", "/oauth2/frontchannel_logout (store memory or redis)",
		base+"/revoke", "sign_out revokes the refresh and access tokens", base+"/par", "par auto: every login is pushed",
		"ES256 PS256", "dpop on binds",
		"client_secret_basic",
		"post-logout redirect URI: https://app.example.com/",
		"back-channel logout URI: https://app.example.com/oauth2/backchannel_logout",
		"front-channel logout URI: https://app.example.com/oauth2/frontchannel_logout",
	)
	block := suggestion(t, r)
	for _, line := range []string{"\tclient_id {env.OIDC_CLIENT_ID}\n", "\tscopes openid profile offline_access\n", "\tstore memory\n"} {
		if !strings.Contains(block, line) {
			t.Errorf("suggested block lacks %q:\n%s", line, block)
		}
	}
	adapt(t, block)
}

// TestCheckIssuerMismatch: an issuer that differs from the document's is
// refused, saying exactly how.
func TestCheckIssuerMismatch(t *testing.T) {
	for _, tc := range []struct {
		name          string
		given, doc    func(base string) string
		says, fixWith string
	}{
		{"IdP has a trailing slash",
			func(b string) string { return b }, func(b string) string { return b + "/" },
			"the IdP's ends with a slash and yours does not", "Use: issuer %s/"},
		{"given has a trailing slash",
			func(b string) string { return b + "/" }, func(b string) string { return b },
			"yours ends with a slash and the IdP's does not", "Use: issuer %s"},
		{"other host",
			func(b string) string { return b }, func(b string) string { return strings.Replace(b, "127.0.0.1", "localhost", 1) },
			`host "localhost:`, "Otherwise correct the issuer configured at the IdP."},
		{"other scheme and path",
			func(b string) string { return b }, func(b string) string { return strings.Replace(b, "http:", "https:", 1) + "/realms/x" },
			`scheme "https" instead of "http", path "/realms/x" instead of ""`, ""},
		{"letter case",
			func(b string) string { return strings.Replace(b, "http:", "HTTP:", 1) }, func(b string) string { return b },
			"they differ in upper and lower case", "Use: issuer %s"},
		{"no issuer",
			func(b string) string { return b }, func(string) string { return "" },
			"The IdP must name its issuer", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := fakeIdP(t, func(base string) map[string]any {
				d := minimalDoc(base)
				d["issuer"] = tc.doc(base)
				return d
			}, keySet())
			r := caddy(t, nil, "check", "--issuer", tc.given(base))
			has := []string{"issuer mismatch", tc.says}
			if tc.fixWith != "" {
				has = append(has, strings.ReplaceAll(tc.fixWith, "%s", base)+"\n")
			}
			want(t, r, 3, has...)
			if strings.Contains(r.stdout, "Suggested") {
				t.Errorf("a configuration suggested for a mismatched issuer:\n%s", r)
			}
		})
	}
}

// TestCheckUnreachable: nothing listening, a server that never answers
// (bounded by --timeout) and a failing server exit 2; a wrong URL (404)
// exits 3.
func TestCheckUnreachable(t *testing.T) {
	want(t, caddy(t, nil, "check", "--issuer", "http://"+testenv.FreeAddr(t)), 2, "connection refused")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() { // accept and stay silent
		var held []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	want(t, caddy(t, nil, "check", "--issuer", "http://"+ln.Addr().String(), "--timeout", "300ms"), 2, "no answer within 300ms (--timeout)")

	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	t.Cleanup(failing.Close)
	want(t, caddy(t, nil, "check", "--issuer", failing.URL), 2, "the server failed: 502")

	wrongPath := fakeIdP(t, minimalDoc, keySet())
	want(t, caddy(t, nil, "check", "--issuer", wrongPath+"/dex"), 3, "404 Not Found, not the document (is the URL right?)")
}

// TestCheckProblems: IdPs the plugin cannot use exit 3 with the table and
// the reason, and no suggestion; a key set that cannot be fetched exits 2.
func TestCheckProblems(t *testing.T) {
	key := rsaKey(t)
	public := jose.JSONWebKey{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}
	with := func(k string, v any) func(string) map[string]any {
		return func(base string) map[string]any {
			d := minimalDoc(base)
			d[k] = v
			return d
		}
	}
	for _, tc := range []struct {
		name string
		doc  func(string) map[string]any
		jwks func(http.ResponseWriter)
		code int
		says string
	}{
		{"private key published", minimalDoc, keySet(jose.JSONWebKey{Key: key, KeyID: "oops", Algorithm: "RS256", Use: "sig"}), 3,
			`the key set publishes private or secret key material (key "oops")`},
		{"symmetric key published", minimalDoc, keySet(jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "hs", Algorithm: "HS256"}), 3,
			"the key set has no key the plugin can verify ID tokens with"},
		{"no keys", minimalDoc, keySet(), 3, "the key set has no key the plugin can verify ID tokens with"},
		{"key set not JSON", minimalDoc, func(w http.ResponseWriter) { _, _ = w.Write([]byte("<html>")) }, 3, "not a JSON Web Key Set"},
		{"key set down", minimalDoc, func(w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) }, 2, "the server failed: 503"},
		{"only HS256", with("id_token_signing_alg_values_supported", []string{"HS256"}), keySet(public), 3,
			"ID tokens are signed with HS256, none of which the plugin verifies"},
		{"PAR required, no PAR endpoint", with("require_pushed_authorization_requests", true), keySet(public), 3,
			"the IdP requires pushed authorization requests but advertises no pushed_authorization_request_endpoint"},
		{"no code flow", with("response_types_supported", []string{"id_token"}), keySet(public), 3,
			`response_types_supported lacks "code"`},
		{"no token endpoint", with("token_endpoint", nil), keySet(public), 3, "the discovery document has no token_endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := fakeIdP(t, tc.doc, tc.jwks)
			r := caddy(t, nil, "check", "--issuer", base)
			want(t, r, tc.code, "FEATURE", tc.says)
			if strings.Contains(r.stdout, "Suggested") {
				t.Errorf("a configuration suggested for an IdP the plugin cannot use:\n%s", r)
			}
		})
	}

	notJSON := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("<html>")) }))
	t.Cleanup(notJSON.Close)
	want(t, caddy(t, nil, "check", "--issuer", notJSON.URL), 3, "not a JSON object")
}

// TestCheckHostileDocument: members of the wrong type are warnings, not
// a failure; control characters from the IdP never reach the terminal.
func TestCheckHostileDocument(t *testing.T) {
	key := rsaKey(t)
	base := fakeIdP(t, func(base string) map[string]any {
		d := minimalDoc(base)
		d["backchannel_logout_supported"] = "true"
		d["code_challenge_methods_supported"] = "S256"
		d["end_session_endpoint"] = base + "/logout\x1b[2J\x1b]0;pwned\x07"
		return d
	}, keySet(jose.JSONWebKey{Key: &key.PublicKey, KeyID: "k\x1b[31m", Algorithm: "RS256", Use: "sig"}))
	r := caddy(t, nil, "check", "--issuer", base)
	want(t, r, 0,
		"backchannel_logout_supported is not true or false; taken as absent",
		"code_challenge_methods_supported is not a list of strings; taken as absent",
		`/logout\x1b[2J\x1b]0;pwned\a`, `kid=k\x1b[31m`)
	if strings.ContainsAny(r.stdout+r.stderr, "\x1b\x07") {
		t.Errorf("control characters from the IdP reached the terminal:\n%q", r.stdout)
	}
}

// TestCheckUsage: bad flags exit 1 before anything is fetched.
func TestCheckUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--issuer", "idp.example.com"},
		{"--issuer", "ftp://idp.example.com"},
		{"--issuer", "https://idp.example.com/a b"},
		{"--issuer", "https://idp.example.com", "--client-id", "a b"},
		{"--issuer", "https://idp.example.com", "--timeout", "0s"},
		{"--issuer", "https://idp.example.com", "--timeout", "soon"},
		{"--issuer", "https://idp.example.com", "--site", "app.example.com"},
		{"--issuer", "https://idp.example.com", "extra"},
	} {
		if r := caddy(t, nil, append([]string{"check"}, args...)...); r.code != 1 {
			t.Errorf("check %q: want exit 1, got %s", args, r)
		}
	}
}
