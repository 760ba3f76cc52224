package bearer

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/oidc-session/oidc_session/internal/testidp"
)

// Real access tokens from Dex and the zitadel example OP. Each IdP is a
// real process; without its binary the test is skipped, and fails with
// CI=true (testidp's locateBinary).

// TestDexAccessToken: Dex's access tokens are JWTs (RS256, aud = the
// client id, no scope claim, typ absent or JWT). One from a real code
// login passes with the client id as audience, is refused for another
// audience, for a required scope it lacks (403), when Dex is declared an
// RFC 9068 issuer (its tokens are not typed at+jwt), and once tampered.
func TestDexAccessToken(t *testing.T) {
	redirect := testidp.CallbackServer(t)
	dex := testidp.StartDex(t, testidp.DexOptions{RedirectURIs: []string{redirect}})
	conf := &oauth2.Config{
		ClientID:     dex.ClientID,
		ClientSecret: dex.ClientSecret,
		RedirectURL:  redirect,
		Endpoint:     oauth2.Endpoint{AuthURL: dex.Issuer + "/auth", TokenURL: dex.Issuer + "/token"},
		Scopes:       []string{"openid", "email", "profile"},
	}
	tok := testidp.CodeLogin(t, conf, testidp.LoginDex, dex.Email, dex.Password)
	if !looksLikeJWT(tok.AccessToken) {
		t.Fatalf("Dex access token is not a JWT")
	}
	idp := IdP{Issuer: dex.Issuer, ClientID: dex.ClientID, ClientSecret: dex.ClientSecret}
	verifier := func(cfg Config) *Verifier {
		v, err := NewVerifier(cfg, idp)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ctx := context.Background()

	p, err := verifier(Config{Audiences: []string{dex.ClientID}}).Verify(ctx, apiRequest("Bearer "+tok.AccessToken))
	if err != nil {
		t.Fatalf("Dex access token refused: %v", err)
	}
	if p.Issuer != dex.Issuer || p.Subject == "" || p.Claims["email"] != dex.Email || p.Expiry.Before(time.Now()) {
		t.Errorf("principal %+v", p)
	}

	_, err = verifier(Config{Audiences: []string{"https://api.example.com"}}).Verify(ctx, apiRequest("Bearer "+tok.AccessToken))
	refusal(t, err, http.StatusUnauthorized, CodeInvalidToken, bearerInvalid, tok.AccessToken)

	_, err = verifier(Config{Audiences: []string{dex.ClientID}, ScopesRequired: []string{"api.read"}}).Verify(ctx, apiRequest("Bearer "+tok.AccessToken))
	refusal(t, err, http.StatusForbidden, CodeInsufficientScope, `Bearer realm="api.test", error="insufficient_scope"`, tok.AccessToken)

	_, err = verifier(Config{Audiences: []string{dex.ClientID}, ATJWTIssuers: []string{dex.Issuer}}).Verify(ctx, apiRequest("Bearer "+tok.AccessToken))
	refusal(t, err, http.StatusUnauthorized, CodeInvalidToken, bearerInvalid, tok.AccessToken)

	parts := strings.Split(tok.AccessToken, ".")
	sig := []byte(parts[2])
	// Another base64url letter (flipping a bit could make '-' or '_' a
	// character that is no b64token: a 400, not the bad signature).
	if sig[len(sig)/2] == 'A' {
		sig[len(sig)/2] = 'B'
	} else {
		sig[len(sig)/2] = 'A'
	}
	tampered := parts[0] + "." + parts[1] + "." + string(sig)
	_, err = verifier(Config{Audiences: []string{dex.ClientID}}).Verify(ctx, apiRequest("Bearer "+tampered))
	refusal(t, err, http.StatusUnauthorized, CodeInvalidToken, bearerInvalid, tampered)

	// Dex down: a verifier that has not fetched Dex's keys yet cannot
	// judge the token (unavailable); one that has keeps judging.
	warm := verifier(Config{Audiences: []string{dex.ClientID}})
	if _, err := warm.Verify(ctx, apiRequest("Bearer "+tok.AccessToken)); err != nil {
		t.Fatal(err)
	}
	dex.Stop()
	if _, err := verifier(Config{Audiences: []string{dex.ClientID}}).Verify(ctx, apiRequest("Bearer "+tok.AccessToken)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Dex down, cold verifier: %v", err)
	}
	if _, err := warm.Verify(ctx, apiRequest("Bearer "+tok.AccessToken)); err != nil {
		t.Errorf("Dex down, token already verified: %v", err)
	}
}

// TestZitadelIntrospection: the zitadel example OP issues opaque access
// tokens. One from a code login of the "web" client is introspected with
// that client's credentials: active, with the user and its scopes. A
// client-credentials token of the service user "sid1" is for another
// audience: the OP answers inactive, so it is refused (401).
func TestZitadelIntrospection(t *testing.T) {
	redirect := testidp.CallbackServer(t)
	z := testidp.StartZitadel(t, testidp.ZitadelOptions{RedirectURIs: []string{redirect}})
	var doc struct {
		Auth  string `json:"authorization_endpoint"`
		Token string `json:"token_endpoint"`
	}
	getJSON(t, z.Issuer+".well-known/openid-configuration", &doc)
	conf := &oauth2.Config{
		ClientID:     z.ClientID,
		ClientSecret: z.ClientSecret,
		RedirectURL:  redirect,
		Endpoint:     oauth2.Endpoint{AuthURL: doc.Auth, TokenURL: doc.Token, AuthStyle: oauth2.AuthStyleInHeader},
		Scopes:       []string{"openid", "email", "profile"},
	}
	tok := testidp.CodeLogin(t, conf, testidp.LoginZitadel, z.Username, z.Password)
	if looksLikeJWT(tok.AccessToken) {
		t.Fatalf("zitadel's example web client was expected to issue opaque tokens")
	}
	idp := IdP{Issuer: z.Issuer, ClientID: z.ClientID, ClientSecret: z.ClientSecret}
	v, err := NewVerifier(Config{Audiences: []string{z.ClientID}, Introspection: true, ScopesRequired: []string{"email"}}, idp)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := v.Verify(ctx, apiRequest("Bearer "+tok.AccessToken))
	if err != nil {
		t.Fatalf("introspected token refused: %v", err)
	}
	if !p.Introspected || p.Subject != z.UserID || p.Issuer != z.Issuer || p.Claims["email"] != z.Email {
		t.Errorf("principal %+v", p)
	}
	if strings.Join(p.Scopes, " ") != "openid email profile" {
		t.Errorf("scopes %q", p.Scopes)
	}

	// Without introspection an opaque token cannot be judged: refused.
	noIntro, err := NewVerifier(Config{Audiences: []string{z.ClientID}}, idp)
	if err != nil {
		t.Fatal(err)
	}
	_, err = noIntro.Verify(ctx, apiRequest("Bearer "+tok.AccessToken))
	refusal(t, err, http.StatusUnauthorized, CodeInvalidToken, bearerInvalid, tok.AccessToken)

	// Client credentials of the example's service user.
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"openid"}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, doc.Token, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("sid1", "verysecret")
	cc, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Body.Close()
	var ccTok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(cc.Body).Decode(&ccTok); err != nil || cc.StatusCode != http.StatusOK || ccTok.AccessToken == "" {
		t.Fatalf("client credentials grant: %d %v", cc.StatusCode, err)
	}
	_, err = v.Verify(ctx, apiRequest("Bearer "+ccTok.AccessToken))
	if e := refusal(t, err, http.StatusUnauthorized, CodeInvalidToken, bearerInvalid, ccTok.AccessToken); e.Description != "token is not active" {
		t.Errorf("description %q", e.Description)
	}

	// The OP down: a token not yet cached is unavailable, the cached one
	// still passes (for at most introspectionTTL).
	z.Stop()
	if _, err := v.Verify(ctx, apiRequest("Bearer "+tok.AccessToken)); err != nil {
		t.Errorf("cached introspection with the OP down: %v", err)
	}
	if _, err := v.Verify(ctx, apiRequest("Bearer another-opaque-token")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("OP down: %v, want ErrUnavailable", err)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
}
