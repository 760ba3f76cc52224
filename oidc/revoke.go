package oidc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
)

// Revoke asks the IdP to revoke a token (RFC 7009) with this client's
// authentication; hint is refresh_token or access_token. An IdP without a
// revocation endpoint is not an error: there is nothing to do.
func (p *Provider) Revoke(ctx context.Context, d *Discovered, token, hint string) error {
	if d.RevocationEndpoint == "" || token == "" {
		return nil
	}
	form := url.Values{"token": {token}, "token_type_hint": {hint}}
	basic := false
	switch {
	case d.Security.ClientAuth == PrivateKeyJWT:
		form.Set("client_id", p.cfg.ClientID) // the IdP transport adds the assertion
	case d.oauth.Endpoint.AuthStyle == oauth2.AuthStyleInHeader && d.oauth.ClientSecret != "":
		basic = true
	default:
		form.Set("client_id", p.cfg.ClientID)
		if d.oauth.ClientSecret != "" {
			form.Set("client_secret", d.oauth.ClientSecret)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.RevocationEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		// RFC 6749 2.3.1: form-encoded before Basic.
		req.SetBasicAuth(url.QueryEscape(p.cfg.ClientID), url.QueryEscape(d.oauth.ClientSecret))
	}
	resp, err := p.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("%w: revocation: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return errors.New("revocation refused by the IdP: " + resp.Status)
	}
	return nil
}
