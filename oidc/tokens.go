package oidc

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// ErrInvalidGrant means the IdP refused the refresh token for good (revoked,
// expired, already used): the session is over and the user must log in.
var ErrInvalidGrant = errors.New("refresh token rejected (invalid_grant)")

// Tokens is the outcome of a code exchange or a refresh.
type Tokens struct {
	IDToken      string
	AccessToken  string
	RefreshToken string
	Issued       time.Time
	Expiry       time.Time // zero if the IdP gave no expires_in
	// Claims are the verified ID token's claims (merged with userinfo when
	// that was fetched); nil after a refresh that returned no ID token.
	Claims map[string]any

	// TokenType is the access token's type: "Bearer", or "DPoP" when it is
	// bound to the session's DPoP key (send it upstream as
	// "Authorization: DPoP <token>" with a proof, DPoPKey.Proof).
	TokenType string
}

// Exchange trades the callback's code for tokens and verifies the ID token,
// including its nonce against the flow's. Errors from a reachable IdP (bad
// code, failed verification) are returned as they are; a failure to reach
// it wraps ErrUnavailable.
func (p *Provider) Exchange(ctx context.Context, d *Discovered, f *Flow, code, redirectURL string) (*Tokens, error) {
	if err := p.checkDPoPKey(ctx); err != nil {
		return nil, err
	}
	ctx = p.clientContext(ctx)
	cfg := *d.oauth
	cfg.RedirectURL = redirectURL
	var opts []oauth2.AuthCodeOption
	if f.Verifier != "" {
		opts = append(opts, oauth2.VerifierOption(f.Verifier))
	}
	tok, err := cfg.Exchange(ctx, code, opts...)
	if err != nil {
		return nil, classify("code exchange", err)
	}
	if err := checkDPoPBound(ctx, tok); err != nil {
		return nil, err
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, errors.New("token response has no id_token (is the openid scope requested?)")
	}
	idt, claims, err := p.verify(ctx, d, raw)
	if err != nil {
		return nil, err
	}
	if idt.Nonce != f.Nonce {
		return nil, errors.New("ID token nonce does not match the login flow")
	}
	if p.wantsUserInfo(d, claims) {
		if err := p.mergeUserInfo(ctx, d, tok, claims); err != nil {
			return nil, err
		}
	}
	return newTokens(tok, raw, claims), nil
}

// Refresh redeems a refresh token. It decides nothing about expiry itself:
// the caller chose to refresh, so the token endpoint is always called. The
// new access token brings userinfo again as at login (UserInfoMode judged
// on the new ID token, or on previousIDToken, the session's, when the IdP
// sent none); Claims are then the ID token's with userinfo's added, and nil
// when there is neither a new ID token nor userinfo.
func (p *Provider) Refresh(ctx context.Context, d *Discovered, refreshToken, previousIDToken string) (*Tokens, error) {
	if err := p.checkDPoPKey(ctx); err != nil {
		return nil, err
	}
	ctx = p.clientContext(ctx)
	// An already expired token makes x/oauth2 call the token endpoint.
	src := d.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken, Expiry: time.Unix(1, 0)})
	tok, err := src.Token()
	if err != nil {
		return nil, classify("refresh", err)
	}
	if err := checkDPoPBound(ctx, tok); err != nil {
		return nil, err
	}
	out := newTokens(tok, "", nil)
	if out.RefreshToken == "" {
		out.RefreshToken = refreshToken // the IdP keeps the old one valid
	}
	var claims map[string]any
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		if _, claims, err = p.verify(ctx, d, raw); err != nil {
			return nil, err
		}
		out.IDToken = raw
	} else if previous, err := UnverifiedClaims(previousIDToken); err == nil {
		claims = previous // verified when it was issued
	}
	if claims != nil && p.wantsUserInfo(d, claims) {
		if err := p.mergeUserInfo(ctx, d, tok, claims); err != nil {
			return nil, err
		}
		out.Claims = claims
	}
	if out.IDToken != "" {
		out.Claims = claims
	}
	return out, nil
}

func (p *Provider) verify(ctx context.Context, d *Discovered, raw string) (*gooidc.IDToken, map[string]any, error) {
	return p.verifyWith(ctx, d.verifier, raw)
}

// verifyWith verifies an ID token with v and checks its azp. When the
// IdP's keys cannot be had, the error wraps ErrUnavailable: the token is
// not refused.
func (p *Provider) verifyWith(ctx context.Context, v *gooidc.IDTokenVerifier, raw string) (*gooidc.IDToken, map[string]any, error) {
	vctx, keyFailure := withKeyFailure(ctx)
	idt, err := v.Verify(vctx, raw)
	if err != nil {
		if *keyFailure != nil {
			// The keys could not be had: the token is not refused, and
			// the login or refresh can be tried again.
			return nil, nil, *keyFailure
		}
		return nil, nil, fmt.Errorf("ID token rejected: %w", err)
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return nil, nil, fmt.Errorf("ID token claims: %w", err)
	}
	if err := p.checkAzp(idt.Audience, claims); err != nil {
		return nil, nil, err
	}
	return idt, claims, nil
}

// checkAzp applies OIDC Core 3.1.3.7: a token for several audiences must
// say which party it was issued to, and an azp must be this client:
// otherwise a token issued to another client that lists us among its
// audiences would log its holder in here.
func (p *Provider) checkAzp(audience []string, claims map[string]any) error {
	azp, hasAzp := claims["azp"]
	switch {
	case hasAzp && azp != p.cfg.ClientID:
		return errors.New("ID token rejected: azp is not this client")
	case !hasAzp && len(audience) > 1:
		return errors.New("ID token rejected: several audiences and no azp")
	}
	return nil
}

func newTokens(tok *oauth2.Token, idToken string, claims map[string]any) *Tokens {
	t := &Tokens{
		IDToken:      idToken,
		AccessToken:  tok.AccessToken,
		RefreshToken: tok.RefreshToken,
		TokenType:    tok.Type(),
		Issued:       time.Now(),
		Claims:       claims,
	}
	// x/oauth2 fills Expiry from expires_in; a zero Expiry means none given.
	if !tok.Expiry.IsZero() {
		t.Expiry = tok.Expiry
	}
	return t
}

// classify tells a refusal by the IdP from a failure to reach it. Only an
// OAuth error answer (RFC 6749 section 5.2: a 400 or 401 with an error
// code) is the IdP's final word; everything else, a network error, a
// timeout, a 5xx, a 429 or 408 of a rate limiter, a WAF's HTML page, is the
// IdP (or what stands before it) not answering now, and a session must not
// end for it.
func classify(what string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil && re.ErrorCode != "" &&
		(re.Response.StatusCode == http.StatusBadRequest || re.Response.StatusCode == http.StatusUnauthorized) {
		if re.ErrorCode == "invalid_grant" {
			return fmt.Errorf("%s: %w", what, ErrInvalidGrant)
		}
		return fmt.Errorf("%s refused by the IdP: %s %s", what, re.ErrorCode, re.ErrorDescription)
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
}

// Claims helpers used to build a session's identity.

// ClaimString returns a claim as a string ("" when absent or not a string).
func ClaimString(claims map[string]any, name string) string {
	s, _ := claims[name].(string)
	return s
}

// ClaimStrings returns a claim as a list of strings: a string claim is a
// list of one, a list keeps its string and number elements, a bool or
// number is formatted.
func ClaimStrings(claims map[string]any, name string) []string {
	switch v := claims[name].(type) {
	case nil:
		return nil
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			switch e := e.(type) {
			case string:
				out = append(out, e)
			case float64, bool, json.Number:
				out = append(out, fmt.Sprint(e))
			}
		}
		return out
	case float64, bool, json.Number:
		return []string{fmt.Sprint(v)}
	default:
		return nil
	}
}

// UnverifiedClaims returns the claims of a JWT without checking anything:
// only for a token verified before, kept in a session.
func UnverifiedClaims(raw string) (map[string]any, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	claims := map[string]any{}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, err
	}
	return claims, nil
}
