package oidc

// Pushed authorization requests (RFC 9126): the authorization request's
// parameters go to the IdP over the back channel, with client
// authentication, and the browser carries only client_id and the
// request_uri the IdP returned. The parameters can then be neither read
// nor changed in the browser, and the IdP knows the request came from
// this client before showing anything to the user.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// PARMode is the par setting.
type PARMode string

const (
	// PARAuto (the zero value) pushes when the IdP advertises a
	// pushed_authorization_request_endpoint.
	PARAuto PARMode = ""
	// PAROn always pushes; logins fail with a clear error when the IdP has
	// no PAR endpoint.
	PAROn PARMode = "on"
	// PAROff never pushes; logins fail with a clear error when the IdP
	// requires it (require_pushed_authorization_requests).
	PAROff PARMode = "off"
)

// ParsePARMode parses a par setting: "auto" (or ""), "on" or "off".
func ParsePARMode(s string) (PARMode, error) {
	switch m := PARMode(s); m {
	case PARAuto, PAROn, PAROff:
		return m, nil
	case "auto":
		return PARAuto, nil
	}
	return "", fmt.Errorf("par %q: want auto, on or off", s)
}

// choosePAR decides whether logins push, or why they cannot work.
func choosePAR(mode PARMode, endpoint string, required bool) (bool, error) {
	switch {
	case mode == PAROff && required:
		return false, fmt.Errorf("the IdP requires pushed authorization requests (require_pushed_authorization_requests) but par is off")
	case mode == PAROff:
		return false, nil
	case endpoint != "":
		return true, nil
	case mode == PAROn:
		return false, fmt.Errorf("par on (or profile fapi2), but the IdP advertises no pushed_authorization_request_endpoint")
	case required:
		return false, fmt.Errorf("the IdP requires pushed authorization requests but advertises no pushed_authorization_request_endpoint")
	}
	return false, nil
}

// LoginURL returns where to send the browser for flow f: AuthCodeURL's
// URL, pushed first when d says so (see PushAuthorization). With a DPoP
// key in the flow the push carries a proof, which binds the authorization
// code to the key; with dpop on, a flow without a key is ErrNoDPoPKey.
//
// The request carries Config.AuthParams and extra (whose values win), the
// parameters of this one login (a login_hint, a step-up's acr_values and
// max_age).
func (p *Provider) LoginURL(ctx context.Context, d *Discovered, f *Flow, redirectURL string, extra url.Values) (string, error) {
	if err := p.checkDPoPKey(WithDPoPKey(ctx, f.DPoP)); err != nil {
		return "", fmt.Errorf("login flow: %w", err)
	}
	params := url.Values{}
	for k, vs := range p.cfg.AuthParams {
		params[k] = vs
	}
	for k, vs := range extra {
		params[k] = vs
	}
	return p.PushAuthorization(WithDPoPKey(ctx, f.DPoP), d, d.AuthCodeURL(f, redirectURL, params))
}

// PushAuthorization takes an authorization URL built by AuthCodeURL (with
// whatever parameters the caller added) and, when the provider pushes
// (par on, or auto and the IdP has a PAR endpoint), POSTs its parameters
// to the PAR endpoint with client authentication and returns the
// authorization endpoint with only client_id and request_uri. Otherwise it
// returns authURL unchanged.
//
// A PAR endpoint that cannot be reached or answers 5xx is ErrUnavailable
// (the login can be retried; answer 503, do not redirect). A refusal (4xx,
// e.g. invalid_client, invalid_request) and a par setting the IdP cannot
// meet are other errors: a configuration problem, not a reason to retry.
func (p *Provider) PushAuthorization(ctx context.Context, d *Discovered, authURL string) (string, error) {
	if d.Security.parErr != nil {
		return "", d.Security.parErr
	}
	if !d.Security.PAR {
		return authURL, nil
	}
	u, err := url.Parse(authURL)
	if err != nil {
		return "", fmt.Errorf("authorization URL: %w", err)
	}
	endpoint, err := url.Parse(d.oauth.Endpoint.AuthURL)
	if err != nil {
		return "", fmt.Errorf("authorization endpoint: %w", err)
	}
	// The endpoint's own query (some IdPs have one) stays in the front
	// channel; everything AuthCodeURL added is pushed.
	form := u.Query()
	own := endpoint.Query()
	for k := range own {
		form.Del(k)
	}
	form.Set("client_id", p.cfg.ClientID)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.Security.PAREndpoint, nil)
	if err != nil {
		return "", fmt.Errorf("pushed authorization request: %w", err)
	}
	switch d.Security.ClientAuth {
	case ClientSecretBasic:
		req.SetBasicAuth(url.QueryEscape(p.cfg.ClientID), url.QueryEscape(p.cfg.ClientSecret))
	case ClientSecretPost:
		form.Set("client_secret", p.cfg.ClientSecret)
	} // private_key_jwt: the IdP transport adds the assertion; none: nothing
	setBody(req, []byte(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")

	resp, err := p.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: pushed authorization request: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("%w: pushed authorization request: %w", ErrUnavailable, err)
	}
	if resp.StatusCode >= http.StatusInternalServerError {
		return "", fmt.Errorf("%w: pushed authorization request: status %d", ErrUnavailable, resp.StatusCode)
	}
	var out struct {
		RequestURI       string `json:"request_uri"`
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		_ = json.Unmarshal(body, &out)
		return "", fmt.Errorf("pushed authorization request refused by the IdP (status %d): %s %s", resp.StatusCode, truncate(out.Error, 64), truncate(out.ErrorDescription, 200))
	}
	if err := json.Unmarshal(body, &out); err != nil || out.RequestURI == "" {
		return "", fmt.Errorf("pushed authorization request: the IdP's answer has no request_uri (status %d)", resp.StatusCode)
	}
	q := own
	q.Set("client_id", p.cfg.ClientID)
	q.Set("request_uri", out.RequestURI)
	endpoint.RawQuery = q.Encode()
	return endpoint.String(), nil
}

// truncate bounds text from the IdP that goes into an error message.
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "")
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
