package integration

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/oidc-session/oidc_session/internal/testcaddy"
	"github.com/oidc-session/oidc_session/internal/testenv"
	"github.com/oidc-session/oidc_session/internal/testidp"
)

// API clients beside browsers (the bearer block) through a real in-process
// Caddy: access tokens from Dex and the zitadel OP, and tokens signed here
// with the mock IdP's key for the edge cases.

// apiAudience is the audience of the mock IdP's sites.
const apiAudience = "https://api.test"

// bearerPage shows what the next handler sees of a request.
const bearerPage = `	respond "id={http.auth.user.id} email={http.auth.user.email} groups={http.auth.user.groups} method={http.auth.user.auth_method} xfu={header.X-Forwarded-User} cookie={header.Cookie}" 200
`

// bearerSite is the mock IdP's oidc_session block with a bearer block
// (its body given) and extra lines, then bearerPage.
func bearerSite(idp *testcaddy.MockIdP, bearerBody, extra string) string {
	return testcaddy.OIDCBlock(idp, "bearer {\n\t\t\t"+bearerBody+"\n\t\t}\n\t\t"+extra) + bearerPage
}

// accessClaims are the claims of a valid access token of idp for sub:
// audience apiAudience, scopes read and write, a verified email, group
// staff, five minutes left.
func accessClaims(idp *testcaddy.MockIdP, sub string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": idp.Issuer(), "aud": apiAudience, "sub": sub,
		"scope": "read write", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"email": sub + "@example.com", "email_verified": true, "groups": []string{"staff"},
	}
}

// accessToken is a valid access token of idp for sub, changed by edit.
func accessToken(t testing.TB, idp *testcaddy.MockIdP, sub string, edit func(jwt.MapClaims)) string {
	t.Helper()
	c := accessClaims(idp, sub)
	if edit != nil {
		edit(c)
	}
	return signWith(t, idp.Keypair, c)
}

// callAPI sends an API call (Accept: application/json, no cookies) with
// the Authorization value auth ("" for none) and more headers.
func callAPI(t *testing.T, method, target, auth string, headers ...string) (*http.Response, string) {
	t.Helper()
	return apiCall(t, testcaddy.NewBrowser(t), method, target, auth, headers...)
}

// apiCall is callAPI from browser b, with its cookies.
func apiCall(t *testing.T, b *testcaddy.Browser, method, target, auth string, headers ...string) (*http.Response, string) {
	t.Helper()
	h := append([]string{"Accept: application/json"}, headers...)
	if auth != "" {
		h = append(h, "Authorization: "+auth)
	}
	return b.Do(method, target, h...)
}

// expectPassed checks that the request reached the next handler as sub,
// authenticated by method, with no cookie written or cleared.
func expectPassed(t *testing.T, what string, resp *http.Response, body, sub, method string) {
	t.Helper()
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "id="+sub+" ") || !strings.Contains(body, "method="+method+" ") {
		t.Fatalf("%s: %d %s; want %s by %s", what, resp.StatusCode, body, sub, method)
	}
	if sc := resp.Header.Values("Set-Cookie"); len(sc) > 0 {
		t.Errorf("%s: Set-Cookie %v", what, sc)
	}
}

// expectRefused checks an RFC 6750 refusal: status, a first
// WWW-Authenticate challenge starting with challenge, the error code in a
// JSON body, no-store, no cookie written or cleared, and nothing of the
// next handler.
func expectRefused(t *testing.T, what string, resp *http.Response, body string, status int, code, challenge string) {
	t.Helper()
	var doc struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal([]byte(body), &doc)
	ch := resp.Header.Values("WWW-Authenticate")
	switch {
	case resp.StatusCode != status || doc.Error != code:
		t.Errorf("%s: %d %s; want %d %s", what, resp.StatusCode, body, status, code)
	case len(ch) == 0 || !strings.HasPrefix(ch[0], challenge):
		t.Errorf("%s: WWW-Authenticate %q; want it to start with %q", what, ch, challenge)
	case resp.Header.Get("Cache-Control") != "no-store":
		t.Errorf("%s: Cache-Control %q", what, resp.Header.Get("Cache-Control"))
	case len(resp.Header.Values("Set-Cookie")) > 0:
		t.Errorf("%s: Set-Cookie %v", what, resp.Header.Values("Set-Cookie"))
	case strings.Contains(body, "id="):
		t.Errorf("%s: the next handler answered: %s", what, body)
	}
}

// TestBearerAccessTokens: a valid token reaches the next handler with the
// identity (placeholders, headers, auth_method bearer), no cookie and
// no-store; so does a token of an extra trusted issuer. Tokens that are
// for another audience, signed by another key, from an untrusted issuer,
// unsigned, MACed with the client secret, expired or not yet valid get
// 401 invalid_token; one lacking a required scope 403 insufficient_scope
// naming it; a token in the query string 400; and a navigation with a bad
// token is refused too, never sent to log in.
func TestBearerAccessTokens(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	extra := testcaddy.NewMockIdP(t, 0, false)
	extraKey, err := mockoidc.RandomKeypair(2048)
	if err != nil {
		t.Fatal(err)
	}
	extra.Keypair = extraKey
	testcaddy.StartIdP(t, extra)
	base := testcaddy.StartCaddy(t, bearerSite(idp, fmt.Sprintf("audiences %s\n\t\t\tscopes_required read\n\t\t\tissuers %s", apiAudience, extra.Issuer()), ""))
	host := strings.TrimPrefix(base, "http://")

	resp, body := callAPI(t, "GET", base+"/things", "Bearer "+accessToken(t, idp, "alice", nil))
	expectPassed(t, "valid token", resp, body, "alice", "bearer")
	if !strings.Contains(body, "email=alice@example.com groups=staff") || !strings.Contains(body, "xfu=alice ") {
		t.Errorf("identity not handed on: %s", body)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q; want no-store", cc)
	}
	// The scheme is case-insensitive (RFC 9110).
	resp, body = callAPI(t, "GET", base+"/things", "bearer "+accessToken(t, idp, "alice", nil))
	expectPassed(t, "lower-case scheme", resp, body, "alice", "bearer")

	carol := signWith(t, extraKey, accessClaims(extra, "carol"))
	resp, body = callAPI(t, "GET", base+"/things", "Bearer "+carol)
	expectPassed(t, "extra issuer's token", resp, body, "carol", "bearer")

	foreign, err := mockoidc.RandomKeypair(2048)
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := idp.Keypair.KeyID()
	foreign.Kid = kid
	invalid := `Bearer realm="` + host + `", error="invalid_token"`
	for _, tc := range []struct {
		name  string
		token string
	}{
		{"wrong audience", accessToken(t, idp, "alice", func(c jwt.MapClaims) { c["aud"] = "https://other-api.test" })},
		{"this client's audience", accessToken(t, idp, "alice", func(c jwt.MapClaims) { c["aud"] = idp.ClientID })},
		{"another key under the issuer's kid", signWith(t, foreign, accessClaims(idp, "alice"))},
		{"extra issuer's key, main issuer's iss", signWith(t, extraKey, accessClaims(idp, "alice"))},
		{"untrusted issuer", accessToken(t, idp, "alice", func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })},
		{"alg none", func() string {
			tok, err := jwt.NewWithClaims(jwt.SigningMethodNone, accessClaims(idp, "alice")).SignedString(jwt.UnsafeAllowNoneSignatureType)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}()},
		{"HS256 with the client secret", func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, accessClaims(idp, "alice"))
			tok.Header["kid"] = kid
			s, err := tok.SignedString([]byte(idp.ClientSecret))
			if err != nil {
				t.Fatal(err)
			}
			return s
		}()},
		{"expired beyond the leeway", accessToken(t, idp, "alice", func(c jwt.MapClaims) {
			c["iat"], c["exp"] = time.Now().Add(-10*time.Minute).Unix(), time.Now().Add(-2*time.Minute).Unix()
		})},
		{"not valid yet", accessToken(t, idp, "alice", func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(5 * time.Minute).Unix() })},
		{"not a JWT, no introspection", "opaque-token-0123456789"},
	} {
		resp, body := callAPI(t, "GET", base+"/things", "Bearer "+tc.token)
		expectRefused(t, tc.name, resp, body, http.StatusUnauthorized, "invalid_token", invalid)
	}

	resp, body = callAPI(t, "GET", base+"/things", "Bearer "+accessToken(t, idp, "alice", func(c jwt.MapClaims) { c["scope"] = "write" }))
	expectRefused(t, "scope missing", resp, body, http.StatusForbidden, "insufficient_scope", `Bearer realm="`+host+`", error="insufficient_scope"`)
	if ch := resp.Header.Get("WWW-Authenticate"); !strings.Contains(ch, `scope="read"`) {
		t.Errorf("insufficient_scope challenge %q does not name the scope", ch)
	}

	resp, body = callAPI(t, "GET", base+"/things?access_token="+accessToken(t, idp, "alice", nil), "")
	expectRefused(t, "token in the query string", resp, body, http.StatusBadRequest, "invalid_request", `Bearer realm="`+host+`", error="invalid_request"`)
	resp, body = callAPI(t, "GET", base+"/things", "Bearer")
	expectRefused(t, "scheme without a token", resp, body, http.StatusBadRequest, "invalid_request", `Bearer realm="`+host+`", error="invalid_request"`)

	b := testcaddy.NewBrowser(t)
	resp, body = b.Navigate(base+"/page", "Authorization: Bearer "+accessToken(t, idp, "alice", func(c jwt.MapClaims) { c["aud"] = "x" }))
	expectRefused(t, "navigation with a bad token", resp, body, http.StatusUnauthorized, "invalid_token", invalid)
	resp, body = b.Navigate(base+"/page", "Authorization: Bearer "+accessToken(t, idp, "alice", nil))
	expectPassed(t, "navigation with a good token", resp, body, "alice", "bearer")

	logs, _ := os.ReadFile(testcaddy.Running().LogFile)
	if sig := strings.Split(carol, ".")[2]; strings.Contains(string(logs), sig) {
		t.Error("Caddy's log holds an access token")
	}
}

// TestBearerTokenDecides: with both a browser session and a token, the
// token alone decides. A bad token is refused (401) although alice's
// cookie is valid, which is neither used nor cleared; bob's good token
// passes as bob, not alice; the plugin's cookie never reaches the next
// handler; alice's session goes on untouched, as a session.
func TestBearerTokenDecides(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, bearerSite(idp, "audiences "+apiAudience, ""))
	alice := testcaddy.LoginAs(t, idp, base, "alice")
	alice.SetCookie(base, "theme", "dark")

	bad := accessToken(t, idp, "bob", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })
	resp, body := apiCall(t, alice, "GET", base+"/things", "Bearer "+bad)
	expectRefused(t, "valid cookie, expired token", resp, body, http.StatusUnauthorized, "invalid_token", "Bearer ")
	resp, body = alice.Navigate(base+"/page", "Authorization: Bearer "+bad)
	expectRefused(t, "valid cookie, expired token, navigation", resp, body, http.StatusUnauthorized, "invalid_token", "Bearer ")

	resp, body = apiCall(t, alice, "GET", base+"/things", "Bearer "+accessToken(t, idp, "bob", nil))
	expectPassed(t, "alice's cookie, bob's token", resp, body, "bob", "bearer")
	if !strings.Contains(body, "cookie=theme=dark") || strings.Contains(body, sessionCookie) {
		t.Errorf("cookies the next handler got: %s", body)
	}

	resp, body = apiCall(t, alice, "GET", base+"/things", "")
	expectPassed(t, "alice's cookie alone", resp, body, "alice", "session")
	if strings.Contains(body, sessionCookie) {
		t.Errorf("the session cookie reached the next handler: %s", body)
	}
	// Another scheme is not a token: the session decides.
	resp, body = apiCall(t, alice, "GET", base+"/things", "Basic YWxpY2U6cHc=")
	expectPassed(t, "alice's cookie, Basic credentials", resp, body, "alice", "session")
}

// TestBearerNoCredentials: a non-navigation request without credentials
// gets 401 with the challenges naming the metadata, through handle_errors
// like the 401 it replaces; a navigation still goes to log in. A refused
// token's answer is the plugin's own (handle_errors does not see it), an
// access rule's 403 is a Caddy error. Without bearer, the 401 has no
// challenge, as before.
func TestBearerNoCredentials(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	site := bearerSite(idp, "audiences "+apiAudience, "allowed_groups staff") + `	handle_errors {
		respond "caddy error {err.status_code}"
	}
`
	base := testcaddy.StartCaddy(t, site)
	meta := `Bearer resource_metadata="` + base + `/.well-known/oauth-protected-resource"`

	resp, body := callAPI(t, "GET", base+"/things", "")
	if ch := resp.Header.Values("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || len(ch) != 2 || ch[0] != meta || !strings.HasPrefix(ch[1], `DPoP algs="ES256 `) {
		t.Errorf("no credentials: %d %q %s; want 401 with %q and a DPoP challenge", resp.StatusCode, ch, body, meta)
	}
	if body != "caddy error 401" {
		t.Errorf("no credentials: body %q; want handle_errors' page", body)
	}
	resp, _ = testcaddy.NewBrowser(t).Navigate(base + "/page")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), idp.Issuer()) {
		t.Errorf("navigation without credentials: %d to %q; want a login", resp.StatusCode, resp.Header.Get("Location"))
	}

	resp, body = callAPI(t, "GET", base+"/things", "Bearer "+accessToken(t, idp, "alice", func(c jwt.MapClaims) { c["aud"] = "x" }))
	expectRefused(t, "bad token under handle_errors", resp, body, http.StatusUnauthorized, "invalid_token", "Bearer ")
	resp, body = callAPI(t, "GET", base+"/things", "Bearer "+accessToken(t, idp, "alice", func(c jwt.MapClaims) { c["groups"] = []string{"guests"} }))
	if resp.StatusCode != http.StatusForbidden || body != "caddy error 403" || resp.Header.Get("WWW-Authenticate") != "" {
		t.Errorf("token of a user outside allowed_groups: %d %q %q; want handle_errors' 403", resp.StatusCode, body, resp.Header.Get("WWW-Authenticate"))
	}

	plain := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	resp, _ = callAPI(t, "GET", plain+"/things", "")
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != "" {
		t.Errorf("without bearer: %d %q; want a bare 401", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

// TestBearerAccessRules: a token's user passes the same rules as a
// session's: allowed_groups, require_claim, allowed_email_domains with a
// verified email; a user who fails one gets 403.
func TestBearerAccessRules(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, bearerSite(idp, "audiences "+apiAudience,
		"allowed_groups staff\n\t\tallowed_email_domains example.com\n\t\trequire_claim tenant acme"))
	withTenant := func(edit func(jwt.MapClaims)) string {
		return accessToken(t, idp, "alice", func(c jwt.MapClaims) {
			c["tenant"] = "acme"
			if edit != nil {
				edit(c)
			}
		})
	}
	resp, body := callAPI(t, "GET", base+"/things", "Bearer "+withTenant(nil))
	expectPassed(t, "user passing every rule", resp, body, "alice", "bearer")
	for _, tc := range []struct {
		name string
		edit func(jwt.MapClaims)
	}{
		{"not in an allowed group", func(c jwt.MapClaims) { c["groups"] = []string{"guests"} }},
		{"no groups", func(c jwt.MapClaims) { delete(c, "groups") }},
		{"claim without an allowed value", func(c jwt.MapClaims) { c["tenant"] = "globex" }},
		{"email not verified", func(c jwt.MapClaims) { c["email_verified"] = false }},
		{"email of another domain", func(c jwt.MapClaims) { c["email"] = "alice@evil.example" }},
	} {
		resp, body := callAPI(t, "GET", base+"/things", "Bearer "+withTenant(tc.edit))
		if resp.StatusCode != http.StatusForbidden || strings.Contains(body, "id=") {
			t.Errorf("%s: %d %s; want 403", tc.name, resp.StatusCode, body)
		}
	}
}

// TestBearerMetadata: the RFC 9728 document at the well-known path, for
// the site's origin; other methods get 405.
func TestBearerMetadata(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, bearerSite(idp, "audiences "+apiAudience+"\n\t\t\tscopes_required read", ""))
	resp, body := callAPI(t, "GET", base+"/.well-known/oauth-protected-resource", "")
	expectMetadata(t, resp, body, base, idp.Issuer(), []string{"read"})
	resp, _ = callAPI(t, "POST", base+"/.well-known/oauth-protected-resource", "")
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST to the metadata: %d", resp.StatusCode)
	}
}

// expectMetadata checks a protected resource metadata answer.
func expectMetadata(t *testing.T, resp *http.Response, body, resource, issuer string, scopes []string) {
	t.Helper()
	var doc struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
		ScopesSupported      []string `json:"scopes_supported"`
		BearerMethods        []string `json:"bearer_methods_supported"`
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &doc) != nil {
		t.Fatalf("metadata: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if doc.Resource != resource || strings.Join(doc.AuthorizationServers, " ") != issuer ||
		strings.Join(doc.ScopesSupported, " ") != strings.Join(scopes, " ") || strings.Join(doc.BearerMethods, " ") != "header" {
		t.Errorf("metadata %s; want resource %s, server %s, scopes %v, header", body, resource, issuer, scopes)
	}
}

// TestBearerMCP is the README's MCP example: only /mcp and its metadata
// route are protected, API-style (unauthenticated deny); an MCP client
// follows the 401's resource_metadata to the path-suffixed document and
// calls /mcp with a token for that resource; the rest of the site is
// public.
func TestBearerMCP(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	addr := testenv.FreeAddr(t)
	base := "http://" + addr
	testcaddy.StartCaddyOn(t, addr, fmt.Sprintf(`	@mcp path /mcp /mcp/* /.well-known/oauth-protected-resource/mcp
	oidc_session @mcp {
		issuer %s
		client_id %s
		client_secret %s
		cookie {
			secret %s
			secure off
		}
		unauthenticated deny
		bearer {
			audiences %s/mcp
			scopes_required mcp:tools
			resource /mcp
		}
	}
	handle @mcp {
		respond "mcp for {http.auth.user.id} by {http.auth.user.auth_method}"
	}
	respond "public"
`, idp.Issuer(), idp.ClientID, idp.ClientSecret, testcaddy.TestSecret, base))

	resp, _ := callAPI(t, "POST", base+"/mcp", "", "Content-Type: application/json")
	want := `Bearer resource_metadata="` + base + `/.well-known/oauth-protected-resource/mcp"`
	if ch := resp.Header.Values("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || len(ch) == 0 || ch[0] != want {
		t.Fatalf("MCP call without a token: %d %q; want 401 with %q", resp.StatusCode, ch, want)
	}
	resp, body := callAPI(t, "GET", base+"/.well-known/oauth-protected-resource/mcp", "")
	expectMetadata(t, resp, body, base+"/mcp", idp.Issuer(), []string{"mcp:tools"})

	token := accessToken(t, idp, "agent-7", func(c jwt.MapClaims) { c["aud"], c["scope"] = base+"/mcp", "mcp:tools" })
	resp, body = callAPI(t, "POST", base+"/mcp", "Bearer "+token, "Content-Type: application/json")
	if resp.StatusCode != http.StatusOK || body != "mcp for agent-7 by bearer" {
		t.Errorf("MCP call with a token: %d %s", resp.StatusCode, body)
	}
	other := accessToken(t, idp, "agent-7", func(c jwt.MapClaims) { c["scope"] = "mcp:tools" }) // for apiAudience
	resp, body = callAPI(t, "POST", base+"/mcp", "Bearer "+other, "Content-Type: application/json")
	expectRefused(t, "token for another resource", resp, body, http.StatusUnauthorized, "invalid_token", "Bearer ")
	if resp, body := callAPI(t, "GET", base+"/", ""); resp.StatusCode != http.StatusOK || body != "public" {
		t.Errorf("public page: %d %s", resp.StatusCode, body)
	}
}

// dpopClient is a client's DPoP key.
type dpopClient struct {
	key *ecdsa.PrivateKey
	jkt string // its JWK thumbprint (RFC 7638)
}

func newDPoPClient(t *testing.T) *dpopClient {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return &dpopClient{key: key, jkt: base64.RawURLEncoding.EncodeToString(tp)}
}

// proof is a DPoP proof (RFC 9449) for method, htu and token, signed by
// the client's key with its public key in the header.
func (c *dpopClient) proof(t *testing.T, method, htu, token string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: c.key},
		(&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	ath := sha256.Sum256([]byte(token))
	payload, _ := json.Marshal(map[string]any{
		"jti": rand.Text(), "htm": method, "htu": htu, "iat": time.Now().Unix(),
		"ath": base64.RawURLEncoding.EncodeToString(ath[:]),
	})
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBearerDPoP: a DPoP-bound token (cnf.jkt) passes with the DPoP scheme
// and a fresh proof of its key for this request. A replayed proof, one for
// another URL or method, or one signed by another key is refused (401
// with the DPoP challenge and its algs); so is the bound token sent as a
// plain bearer token, and an unbound one sent with the DPoP scheme.
func TestBearerDPoP(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, bearerSite(idp, "audiences "+apiAudience, ""))
	client := newDPoPClient(t)
	token := accessToken(t, idp, "alice", func(c jwt.MapClaims) { c["cnf"] = map[string]any{"jkt": client.jkt} })
	target := base + "/things"

	proof := client.proof(t, "GET", target, token)
	resp, body := callAPI(t, "GET", target, "DPoP "+token, "DPoP: "+proof)
	expectPassed(t, "bound token with its proof", resp, body, "alice", "bearer")

	proofChallenge := `DPoP error="invalid_dpop_proof"`
	resp, body = callAPI(t, "GET", target, "DPoP "+token, "DPoP: "+proof)
	expectRefused(t, "replayed proof", resp, body, http.StatusUnauthorized, "invalid_dpop_proof", proofChallenge)
	if ch := resp.Header.Get("WWW-Authenticate"); !strings.Contains(ch, `algs="ES256`) {
		t.Errorf("DPoP challenge %q has no algs", ch)
	}
	resp, body = callAPI(t, "GET", target, "DPoP "+token, "DPoP: "+client.proof(t, "GET", base+"/other", token))
	expectRefused(t, "proof for another URL", resp, body, http.StatusUnauthorized, "invalid_dpop_proof", proofChallenge)
	resp, body = callAPI(t, "GET", target, "DPoP "+token, "DPoP: "+client.proof(t, "POST", target, token))
	expectRefused(t, "proof for another method", resp, body, http.StatusUnauthorized, "invalid_dpop_proof", proofChallenge)
	resp, body = callAPI(t, "GET", target, "DPoP "+token, "DPoP: "+newDPoPClient(t).proof(t, "GET", target, token))
	expectRefused(t, "proof of another key", resp, body, http.StatusUnauthorized, "invalid_token", `DPoP error="invalid_token"`)
	resp, body = callAPI(t, "GET", target, "DPoP "+token)
	expectRefused(t, "no proof", resp, body, http.StatusUnauthorized, "invalid_dpop_proof", proofChallenge)
	resp, body = callAPI(t, "GET", target, "Bearer "+token)
	expectRefused(t, "bound token as a bearer token", resp, body, http.StatusUnauthorized, "invalid_token", `DPoP error="invalid_token"`)
	unbound := accessToken(t, idp, "alice", nil)
	resp, body = callAPI(t, "GET", target, "DPoP "+unbound, "DPoP: "+client.proof(t, "GET", target, unbound))
	expectRefused(t, "unbound token with the DPoP scheme", resp, body, http.StatusUnauthorized, "invalid_token", `DPoP error="invalid_token"`)
}

// TestBearerIdPUnavailable: when the token cannot be judged because the
// IdP cannot be reached, the answer is unavailable_status (a Caddy error),
// never a 401: introspection answering 503, or an extra issuer whose
// discovery fails. A token the introspection endpoint vouches for passes.
func TestBearerIdPUnavailable(t *testing.T) {
	idp := testcaddy.NewMockIdP(t, 0, false)
	introspection := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ParseForm() != nil || r.PostForm.Get("client_id") != idp.ClientID || r.PostForm.Get("client_secret") != idp.ClientSecret ||
			r.PostForm.Get("token") != "opaque-good-token" {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"active": true, "iss": idp.Issuer(), "sub": "dave", "aud": apiAudience, "scope": "read",
			"exp": time.Now().Add(time.Hour).Unix(), "email": "dave@example.com", "email_verified": true,
		})
	}))
	t.Cleanup(introspection.Close)
	if err := idp.AddMiddleware(advertise("introspection_endpoint", introspection.URL)); err != nil {
		t.Fatal(err)
	}
	testcaddy.StartIdP(t, idp)
	down := "http://" + testenv.FreeAddr(t)
	base := testcaddy.StartCaddy(t, bearerSite(idp, "audiences "+apiAudience+"\n\t\t\tintrospection\n\t\t\tissuers "+down, ""))

	resp, body := callAPI(t, "GET", base+"/things", "Bearer opaque-good-token")
	expectPassed(t, "introspected token", resp, body, "dave", "bearer")
	for what, token := range map[string]string{
		"introspection down":     "opaque-other-token",
		"issuer discovery fails": accessToken(t, idp, "alice", func(c jwt.MapClaims) { c["iss"] = down }),
	} {
		resp, body := callAPI(t, "GET", base+"/things", "Bearer "+token)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("WWW-Authenticate") != "" || strings.Contains(body, "id=") {
			t.Errorf("%s: %d %q %s; want 503 without a challenge", what, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
		}
	}
}

// advertise is mockoidc middleware adding a member to its discovery
// document.
func advertise(name, value string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasSuffix(r.URL.Path, mockoidc.DiscoveryEndpoint) {
				next.ServeHTTP(w, r)
				return
			}
			rec := testcaddy.NewRecorder()
			next.ServeHTTP(rec, r)
			var doc map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			doc[name] = value
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(doc)
		})
	}
}

// realClient is the confidential client of a real IdP that TestBearerDex
// and TestBearerZitadel log in with as an API client would, and protect a
// site with.
type realClient struct {
	issuer, id, secret, redirect string
	endpoint                     oauth2.Endpoint
}

// site is the site protected with the client's credentials and a bearer
// block (its body given), then bearerPage.
func (c realClient) site(bearerBody string) string {
	return fmt.Sprintf(`	oidc_session {
		issuer %s
		client_id %s
		client_secret %s
		cookie {
			secret %s
			secure off
		}
		headers
		bearer {
			%s
		}
	}
`, c.issuer, c.id, c.secret, testcaddy.TestSecret, bearerBody) + bearerPage
}

// token is the access token of a code login of user with login.
func (c realClient) token(t *testing.T, login testidp.LoginFunc, user, password string) string {
	t.Helper()
	return testidp.CodeLogin(t, &oauth2.Config{
		ClientID:     c.id,
		ClientSecret: c.secret,
		RedirectURL:  c.redirect,
		Endpoint:     c.endpoint,
		Scopes:       []string{"openid", "email", "profile"},
	}, login, user, password).AccessToken
}

// TestBearerDex: a real access token from a code login at Dex (a JWT,
// aud the client id) passes through Caddy with the user's identity, as an
// API call and as a navigation, with no cookie; the same token tampered is
// refused.
func TestBearerDex(t *testing.T) {
	redirect := testidp.CallbackServer(t)
	dex := testidp.StartDex(t, testidp.DexOptions{RedirectURIs: []string{redirect}})
	client := realClient{issuer: dex.Issuer, id: dex.ClientID, secret: dex.ClientSecret, redirect: redirect,
		endpoint: oauth2.Endpoint{AuthURL: dex.Issuer + "/auth", TokenURL: dex.Issuer + "/token"}}
	base := testcaddy.StartCaddy(t, client.site("audiences "+dex.ClientID))
	tok := client.token(t, testidp.LoginDex, dex.Email, dex.Password)

	resp, body := callAPI(t, "GET", base+"/things", "Bearer "+tok)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "email="+dex.Email+" ") || !strings.Contains(body, "method=bearer ") ||
		strings.Contains(body, "id= ") || strings.Contains(body, "xfu= ") || len(resp.Header.Values("Set-Cookie")) > 0 {
		t.Fatalf("Dex access token: %d %s %v", resp.StatusCode, body, resp.Header.Values("Set-Cookie"))
	}
	resp, body = testcaddy.NewBrowser(t).Navigate(base+"/page", "Authorization: Bearer "+tok)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "method=bearer ") {
		t.Errorf("navigation with the Dex token: %d %s", resp.StatusCode, body)
	}
	parts := strings.Split(tok, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"`+dex.Issuer+`","aud":"`+dex.ClientID+`","sub":"x","exp":9999999999}`)) + "." + parts[2]
	resp, body = callAPI(t, "GET", base+"/things", "Bearer "+tampered)
	expectRefused(t, "tampered Dex token", resp, body, http.StatusUnauthorized, "invalid_token", "Bearer ")
}

// TestBearerZitadel: an opaque access token from a code login at the
// zitadel OP is introspected with this client's credentials and passes as
// its user; a client-credentials token of another client (another
// audience: the OP answers inactive) is refused; with the OP down, the
// verified token goes on from the cache and an unknown one gets 503.
func TestBearerZitadel(t *testing.T) {
	redirect := testidp.CallbackServer(t)
	z := testidp.StartZitadel(t, testidp.ZitadelOptions{RedirectURIs: []string{redirect}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	op, err := gooidc.NewProvider(ctx, z.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	endpoint := op.Endpoint()
	endpoint.AuthStyle = oauth2.AuthStyleInHeader
	client := realClient{issuer: z.Issuer, id: z.ClientID, secret: z.ClientSecret, redirect: redirect, endpoint: endpoint}
	base := testcaddy.StartCaddy(t, client.site("audiences "+z.ClientID+"\n\t\t\tintrospection\n\t\t\tscopes_required email"))
	tok := client.token(t, testidp.LoginZitadel, z.Username, z.Password)

	resp, body := callAPI(t, "GET", base+"/things", "Bearer "+tok)
	expectPassed(t, "zitadel opaque token", resp, body, z.UserID, "bearer")
	if !strings.Contains(body, "xfu="+z.UserID+" ") {
		t.Errorf("identity header not set: %s", body)
	}

	cc, err := (&clientcredentials.Config{ClientID: "sid1", ClientSecret: "verysecret", TokenURL: endpoint.TokenURL,
		Scopes: []string{"openid"}, AuthStyle: oauth2.AuthStyleInHeader}).Token(ctx)
	if err != nil {
		t.Fatalf("client credentials grant: %v", err)
	}
	resp, body = callAPI(t, "GET", base+"/things", "Bearer "+cc.AccessToken)
	expectRefused(t, "another client's token", resp, body, http.StatusUnauthorized, "invalid_token", "Bearer ")

	z.Stop()
	resp, body = callAPI(t, "GET", base+"/things", "Bearer "+tok)
	expectPassed(t, "cached introspection, OP down", resp, body, z.UserID, "bearer")
	resp, body = callAPI(t, "GET", base+"/things", "Bearer another-opaque-token")
	if resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(body, "id=") {
		t.Errorf("unknown token, OP down: %d %s; want 503", resp.StatusCode, body)
	}
}
