package bearer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// introspectionTTL is the longest an introspection answer is trusted: a
// token revoked at the IdP passes for at most this long.
const introspectionTTL = 60 * time.Second

// introspect asks the main issuer about an opaque token (RFC 7662),
// once for concurrent requests with the same token.
func (v *Verifier) introspect(ctx context.Context, raw string) (*verified, error) {
	// Keyed by the token itself: requests with different tokens never
	// share an answer.
	res, err, _ := v.flights.Do(raw, func() (any, error) {
		// Shared by every waiting request: not one client's cancellation.
		return v.askIdP(context.WithoutCancel(ctx), raw)
	})
	if err != nil {
		return nil, err
	}
	return res.(*verified), nil
}

func (v *Verifier) askIdP(ctx context.Context, raw string) (*verified, error) {
	m, err := v.main.meta(ctx)
	if err != nil {
		return nil, err
	}
	if m.introspection == "" {
		return nil, fmt.Errorf("%w: %s advertises no introspection_endpoint, which introspection needs", ErrUnavailable, v.main.url)
	}
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	if !m.introspectBasic {
		form.Set("client_id", v.clientID)
		form.Set("client_secret", v.clientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.introspection, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%w: introspection request: %v", ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if m.introspectBasic {
		// RFC 6749 section 2.3.1: form-encoded, then Basic.
		req.SetBasicAuth(url.QueryEscape(v.clientID), url.QueryEscape(v.clientSecret))
	}
	asked := v.now()
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: introspection at %s: %v", ErrUnavailable, v.main.url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: introspection answer: %v", ErrUnavailable, err)
	}
	// RFC 7662 answers 200 for every token, active or not: any other
	// status is about us (credentials, rate) or the IdP, never the token.
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: introspection at %s answered %s (are client_id and client_secret allowed to introspect?)", ErrUnavailable, v.main.url, resp.Status)
	}
	if len(body) > maxMetadataSize {
		return nil, fmt.Errorf("%w: introspection answer larger than %d bytes", ErrUnavailable, maxMetadataSize)
	}
	var c map[string]any
	if err := json.Unmarshal(body, &c); err != nil || c == nil {
		return nil, fmt.Errorf("%w: introspection answer is not a JSON object", ErrUnavailable)
	}
	return v.judgeIntrospection(c, asked, len(body))
}

// judgeIntrospection checks an introspection answer: active exactly true,
// iss (when given) the main issuer, a token type that is an access token,
// then the claims every token must pass (aud among Audiences: many IdPs
// happily introspect tokens minted for other clients; an answer without
// aud counts as one for this client_id). The verdict lasts until exp, and
// at most introspectionTTL.
func (v *Verifier) judgeIntrospection(c map[string]any, asked time.Time, size int) (*verified, error) {
	if active, _ := c["active"].(bool); !active {
		return nil, invalidToken(nil, "token is not active")
	}
	if iss, ok, err := stringClaim(c, "iss"); err != nil || ok && iss != v.main.url {
		return nil, invalidToken(nil, "introspection names another issuer")
	}
	if typ, ok, err := stringClaim(c, "token_type"); err != nil || ok && !accessTokenType(typ) {
		return nil, invalidToken(nil, "not an access token (token_type)")
	}
	aud := c["aud"]
	if aud == nil {
		// RFC 7662 makes aud optional. An IdP that leaves it out (the
		// zitadel OP does) answers active only for tokens meant for the
		// client asking: their audience is this client. So they pass
		// only if its client_id is among Audiences.
		aud = v.clientID
	}
	verdict, err := v.judge(c, aud, v.main.url, asked, false, asked.Add(introspectionTTL))
	if err != nil {
		return nil, err
	}
	verdict.principal.Introspected = true
	// The IdP vouches for now, not for the leeway after exp.
	if exp := verdict.principal.Expiry; !exp.IsZero() && exp.Before(verdict.until) {
		verdict.until = exp
	}
	verdict.size = entryOverhead + 3*size
	return verdict, nil
}

// accessTokenType reports whether an introspection token_type names an
// access token (RFC 6749 types, or the RFC 8693 URN); a refresh token
// presented as a bearer token is refused.
func accessTokenType(typ string) bool {
	switch strings.ToLower(typ) {
	case "bearer", "dpop", "access_token", "urn:ietf:params:oauth:token-type:access_token":
		return true
	}
	return false
}
