package oidc

import (
	"context"
	"errors"
	"fmt"
	"slices"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
)

// ErrIDTokenSignature means a stored ID token names this issuer and this
// client (iss, aud, azp) but its signature does not verify with the IdP's
// keys: it was signed with a key the IdP has rotated out since, or forged.
// None of its claims can be trusted; only the IdP, asked to redeem the
// session's refresh token for this client, can still vouch for it.
var ErrIDTokenSignature = errors.New("ID token names this issuer and client, but its signature does not verify with the IdP's keys")

// setVerifiers sets the ID token verifiers for algs: the login's, and the
// same without the expiry check for VerifyStoredIDToken.
func (p *Provider) setVerifiers(d *Discovered, algs []jose.SignatureAlgorithm) {
	d.verifier = p.idTokenVerifier(d.keys, algs, false)
	d.storedVerifier = p.idTokenVerifier(d.keys, algs, true)
}

// VerifyStoredIDToken verifies an ID token issued to this client earlier
// and kept since by another relying party (a session taken over from
// oauth2-proxy): its signature by the IdP's keys, its issuer, its audience
// and azp, as at login; but not its expiry, since such sessions outlive
// their ID token, nor a nonce, since the login that had one is long over.
// It returns the token's claims. A token for another issuer or client is
// refused with the verifier's error. One for this issuer and client that
// does not verify gets an error wrapping ErrIDTokenSignature: its key is
// not among the IdP's, or the keys cannot be had now (then the error also
// wraps ErrUnavailable; a kept token names a retired key more often than
// a new one, so it does not wait for the key cache's next fetch).
func (p *Provider) VerifyStoredIDToken(ctx context.Context, d *Discovered, raw string) (map[string]any, error) {
	_, claims, err := p.verifyWith(ctx, d.storedVerifier, raw)
	if err != nil && p.namesThisClient(raw) {
		return nil, fmt.Errorf("%w: %w", ErrIDTokenSignature, err)
	}
	return claims, err
}

// MergeUserInfo adds the userinfo endpoint's claims for an access token to
// those of a verified ID token, as a login with fetchUserInfo does, never
// letting userinfo change the subject: for a session taken over, whose
// ID token alone may lack claims the IdP gives only at userinfo.
func (p *Provider) MergeUserInfo(ctx context.Context, d *Discovered, accessToken string, claims map[string]any) error {
	return p.mergeUserInfo(p.clientContext(ctx), d, &oauth2.Token{AccessToken: accessToken, TokenType: "Bearer"}, claims)
}

// namesThisClient reports whether the unverified claims of a JWS name
// this issuer and this client as verifyWith requires. Since go-oidc checks
// the issuer and the audience before the signature, a token that names
// them and still fails did so on its signature (or its algorithm).
func (p *Provider) namesThisClient(raw string) bool {
	tok, err := jwt.ParseSigned(raw, signingAlgs)
	if err != nil {
		return false
	}
	var std jwt.Claims
	claims := map[string]any{}
	if tok.UnsafeClaimsWithoutVerification(&std, &claims) != nil {
		return false
	}
	return std.Issuer == p.cfg.Issuer && slices.Contains(std.Audience, p.cfg.ClientID) && p.checkAzp(std.Audience, claims) == nil
}

// signingAlgs are the algorithms an ID token is parsed with before its
// claims are read unverified: the asymmetric ones.
var signingAlgs = func() []jose.SignatureAlgorithm {
	var out []jose.SignatureAlgorithm
	for a := range asymmetricAlgs {
		out = append(out, jose.SignatureAlgorithm(a))
	}
	return out
}()
