package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

// fetchLimit bounds what check reads of one document, so a broken or
// hostile server cannot make it read forever.
const fetchLimit = 1 << 20

// wellKnownURL is where discovery is read from, the way go-oidc (and so
// the plugin) forms it: with or without a trailing slash on the issuer,
// the same URL. That is why a wrong trailing slash shows up only as an
// issuer mismatch.
func wellKnownURL(issuer string) string {
	return strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
}

// fetchError is a document that could not be had: Unreachable tells a
// network failure, timeout or 5xx (exit 2) from an answer that is wrong
// (exit 3).
type fetchError struct {
	URL         string
	Unreachable bool
	Err         error
}

func (e *fetchError) Error() string { return fmt.Sprintf("%s: %v", e.URL, e.Err) }
func (e *fetchError) Unwrap() error { return e.Err }

// fetch GETs a JSON document with the client's timeout.
func fetch(ctx context.Context, client *http.Client, target string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, &fetchError{URL: target, Err: err}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, &fetchError{URL: target, Unreachable: true, Err: networkError(err, client.Timeout)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, fetchLimit+1))
	switch {
	case err != nil:
		return nil, &fetchError{URL: target, Unreachable: true, Err: networkError(err, client.Timeout)}
	case resp.StatusCode >= 500:
		return nil, &fetchError{URL: target, Unreachable: true, Err: fmt.Errorf("the server failed: %s", resp.Status)}
	case resp.StatusCode != http.StatusOK:
		return nil, &fetchError{URL: target, Err: fmt.Errorf("answered %s, not the document (is the URL right?)", resp.Status)}
	case len(body) > fetchLimit:
		return nil, &fetchError{URL: target, Err: fmt.Errorf("larger than %d bytes", fetchLimit)}
	}
	return body, nil
}

// networkError says what went wrong without repeating the URL, and names
// the flag behind a timeout.
func networkError(err error, timeout time.Duration) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("no answer within %v (--timeout): %w", timeout, err)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// metadata is what check reads of the discovery document: OpenID Connect
// Discovery 1.0 and Session/Back-/Front-Channel Logout, RFC 8414, 7009
// (revocation), 9126 (PAR), 9449 (DPoP) and 9207 (iss parameter).
type metadata struct {
	Issuer                    string
	AuthorizationEndpoint     string
	TokenEndpoint             string
	JWKSURI                   string
	UserinfoEndpoint          string
	EndSessionEndpoint        string
	RevocationEndpoint        string
	PAREndpoint               string
	RequirePAR                bool
	BackchannelLogout         bool
	BackchannelLogoutSession  bool
	FrontchannelLogout        bool
	FrontchannelLogoutSession bool
	IssParameter              bool
	CodeChallengeMethods      []string
	DPoPAlgs                  []string
	IDTokenAlgs               []string
	TokenAuthMethods          []string
	ResponseTypes             []string
	Scopes                    []string
}

// parseMetadata reads the document leniently: a member of the wrong type
// is a warning and counts as absent, as it does for go-oidc, which reads
// only a few members and ignores the rest.
func parseMetadata(body []byte) (metadata, []string, error) {
	var f lenient
	if err := json.Unmarshal(body, &f.raw); err != nil {
		return metadata{}, nil, fmt.Errorf("not a JSON object: %w", err)
	}
	m := metadata{
		Issuer:                    f.str("issuer"),
		AuthorizationEndpoint:     f.str("authorization_endpoint"),
		TokenEndpoint:             f.str("token_endpoint"),
		JWKSURI:                   f.str("jwks_uri"),
		UserinfoEndpoint:          f.str("userinfo_endpoint"),
		EndSessionEndpoint:        f.str("end_session_endpoint"),
		RevocationEndpoint:        f.str("revocation_endpoint"),
		PAREndpoint:               f.str("pushed_authorization_request_endpoint"),
		RequirePAR:                f.flag("require_pushed_authorization_requests"),
		BackchannelLogout:         f.flag("backchannel_logout_supported"),
		BackchannelLogoutSession:  f.flag("backchannel_logout_session_supported"),
		FrontchannelLogout:        f.flag("frontchannel_logout_supported"),
		FrontchannelLogoutSession: f.flag("frontchannel_logout_session_supported"),
		IssParameter:              f.flag("authorization_response_iss_parameter_supported"),
		CodeChallengeMethods:      f.list("code_challenge_methods_supported"),
		DPoPAlgs:                  f.list("dpop_signing_alg_values_supported"),
		IDTokenAlgs:               f.list("id_token_signing_alg_values_supported"),
		TokenAuthMethods:          f.list("token_endpoint_auth_methods_supported"),
		ResponseTypes:             f.list("response_types_supported"),
		Scopes:                    f.list("scopes_supported"),
	}
	return m, f.warnings, nil
}

// lenient reads members of a JSON object, noting those of the wrong type.
type lenient struct {
	raw      map[string]json.RawMessage
	warnings []string
}

func (f *lenient) str(name string) (v string)    { f.get(name, &v, "a string"); return v }
func (f *lenient) flag(name string) (v bool)     { f.get(name, &v, "true or false"); return v }
func (f *lenient) list(name string) (v []string) { f.get(name, &v, "a list of strings"); return v }

func (f *lenient) get(name string, v any, want string) {
	raw, ok := f.raw[name]
	if !ok || string(raw) == "null" {
		return
	}
	if err := json.Unmarshal(raw, v); err != nil {
		f.warnings = append(f.warnings, fmt.Sprintf("%s is not %s; taken as absent", name, want))
	}
}

// issuerMismatch says how the issuer the operator gave differs from the
// discovery document's, or "" when they are the same string (the plugin,
// through go-oidc, compares them exactly).
func issuerMismatch(given, discovered string) string {
	switch {
	case given == discovered:
		return ""
	case discovered == "":
		return "the discovery document has no issuer"
	case strings.TrimSuffix(given, "/") == strings.TrimSuffix(discovered, "/"):
		if strings.HasSuffix(given, "/") {
			return "yours ends with a slash and the IdP's does not"
		}
		return "the IdP's ends with a slash and yours does not"
	case strings.EqualFold(given, discovered):
		return "they differ in upper and lower case"
	}
	g, err1 := url.Parse(given)
	d, err2 := url.Parse(discovered)
	if err1 != nil || err2 != nil {
		return "they differ"
	}
	var diffs []string
	for _, p := range []struct{ part, g, d string }{
		{"scheme", g.Scheme, d.Scheme},
		{"host", g.Host, d.Host},
		{"path", g.EscapedPath(), d.EscapedPath()},
		{"query", g.RawQuery, d.RawQuery},
	} {
		if p.g != p.d {
			diffs = append(diffs, fmt.Sprintf("%s %q instead of %q", p.part, p.d, p.g))
		}
	}
	if len(diffs) == 0 {
		return "they differ"
	}
	return "the IdP's has " + strings.Join(diffs, ", ")
}

// verifiableAlgs are the signature algorithms go-oidc verifies ID tokens
// with; the plugin accepts no others.
var verifiableAlgs = []string{
	gooidc.RS256, gooidc.RS384, gooidc.RS512,
	gooidc.ES256, gooidc.ES384, gooidc.ES512,
	gooidc.PS256, gooidc.PS384, gooidc.PS512,
	gooidc.EdDSA,
}

func verifiable(alg string) bool {
	for _, a := range verifiableAlgs {
		if a == alg {
			return true
		}
	}
	return false
}

// jwk is one key of the IdP's key set as check reports it.
type jwk struct {
	ID, Type, Alg, Use string
	// Usable: a public signing key the plugin can verify ID tokens with.
	Usable bool
	// Note says why a key is not usable.
	Note string
	// Leaked: the key set publishes private or secret key material.
	Leaked bool
}

// analyzeJWKS reads each key on its own, as go-oidc does (a key of an
// unsupported type is skipped, not fatal), and says which ones can verify
// ID tokens.
func analyzeJWKS(body []byte) ([]jwk, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("not a JSON Web Key Set: %w", err)
	}
	keys := make([]jwk, 0, len(set.Keys))
	for _, raw := range set.Keys {
		var k jwk
		var head struct {
			Kid string `json:"kid"`
			Kty string `json:"kty"`
			Alg string `json:"alg"`
			Use string `json:"use"`
		}
		_ = json.Unmarshal(raw, &head) // what is readable, for the report
		k.ID, k.Type, k.Alg, k.Use = head.Kid, head.Kty, head.Alg, head.Use
		var key jose.JSONWebKey
		err := key.UnmarshalJSON(raw)
		switch {
		case errors.Is(err, jose.ErrUnsupportedKeyType):
			k.Note = "key type not supported; ignored"
		case err != nil:
			k.Note = "invalid: " + err.Error()
		case !key.IsPublic():
			k.Leaked = true
			k.Note = "PRIVATE OR SECRET KEY MATERIAL PUBLISHED"
		case key.Use != "" && key.Use != "sig":
			k.Note = "not for signatures (use " + key.Use + ")"
		case key.Algorithm != "" && !verifiable(key.Algorithm):
			k.Note = "algorithm " + key.Algorithm + " is not one the plugin verifies"
		default:
			k.Usable = true
		}
		keys = append(keys, k)
	}
	return keys, nil
}
