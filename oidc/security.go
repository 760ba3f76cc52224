package oidc

// What discovery decides for the high-security features: client
// authentication, PAR, DPoP, the RFC 9207 iss parameter and, with profile
// fapi2, the ID token algorithms. It runs right after the base discovery,
// from the same metadata document, so nothing more is fetched.

import (
	"errors"
	"fmt"
	"net/url"
	"slices"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

// Security is what discovery decided about client authentication, pushed
// authorization requests, DPoP and the iss response parameter, from the
// config and the IdP's metadata.
type Security struct {
	// ClientAuth is the method in use at the token, PAR, revocation and
	// introspection endpoints.
	ClientAuth ClientAuthMethod
	// PAREndpoint is the IdP's pushed_authorization_request_endpoint ("").
	PAREndpoint string
	// PAR reports whether logins push their authorization requests.
	PAR bool
	// RequirePAR is the IdP's require_pushed_authorization_requests.
	RequirePAR bool
	// IssuerParameter is the IdP's
	// authorization_response_iss_parameter_supported (RFC 9207): its
	// authorization responses carry iss, so one without it is refused.
	IssuerParameter bool
	// DPoPAlgs is the IdP's dpop_signing_alg_values_supported.
	DPoPAlgs []string

	// issuer is the IdP's issuer identifier, as configured and verified
	// against the metadata.
	issuer string
	auth   clientAuth
	// parErr says why logins cannot work with this par setting and IdP.
	parErr error
	// requireIss: an authorization response without iss is refused.
	requireIss bool
	// authEndpoints get the private_key_jwt assertion; dpopEndpoints get
	// DPoP proofs (besides requests presenting a DPoP access token). Keys
	// are endpointOf.
	authEndpoints, dpopEndpoints map[string]bool
}

// fapi2IDTokenAlgs are the only ID token algorithms FAPI 2.0 allows.
var fapi2IDTokenAlgs = []string{gooidc.PS256, gooidc.ES256, gooidc.EdDSA}

// discoverSecurity fills d.Security and, for private_key_jwt and the
// secret methods, how x/oauth2 authenticates. With profile fapi2 an IdP
// that cannot meet the profile fails discovery with a message naming
// what it lacks.
func (p *Provider) discoverSecurity(d *Discovered) error {
	var m struct {
		AuthMethods   []string `json:"token_endpoint_auth_methods_supported"`
		AuthAlgs      []string `json:"token_endpoint_auth_signing_alg_values_supported"`
		PAR           string   `json:"pushed_authorization_request_endpoint"`
		RequirePAR    bool     `json:"require_pushed_authorization_requests"`
		DPoPAlgs      []string `json:"dpop_signing_alg_values_supported"`
		IssParam      bool     `json:"authorization_response_iss_parameter_supported"`
		Revocation    string   `json:"revocation_endpoint"`
		Introspection string   `json:"introspection_endpoint"`
		IDTokenAlgs   []string `json:"id_token_signing_alg_values_supported"`
	}
	_ = d.provider.Claims(&m) // optional metadata: absent is fine
	auth := chooseClientAuth(&p.cfg, m.AuthMethods, m.AuthAlgs)
	d.oauth.Endpoint.AuthStyle, d.oauth.ClientSecret = auth.oauthStyle(&p.cfg, m.AuthMethods)
	par := p.cfg.PAR
	if p.cfg.Profile == ProfileFAPI2 && par == PARAuto {
		par = PAROn
	}
	usePAR, parErr := choosePAR(par, m.PAR, m.RequirePAR)
	d.RevocationEndpoint = m.Revocation
	s := Security{
		ClientAuth:      auth.method,
		PAREndpoint:     m.PAR,
		PAR:             usePAR,
		RequirePAR:      m.RequirePAR,
		IssuerParameter: m.IssParam,
		DPoPAlgs:        m.DPoPAlgs,
		issuer:          p.cfg.Issuer,
		auth:            auth,
		parErr:          parErr,
		requireIss:      m.IssParam || p.cfg.Profile == ProfileFAPI2,
		authEndpoints:   map[string]bool{},
		dpopEndpoints:   map[string]bool{},
	}
	for _, e := range []string{d.oauth.Endpoint.TokenURL, m.PAR, m.Revocation, m.Introspection} {
		if key, ok := endpointKey(e); ok {
			s.authEndpoints[key] = true
		}
	}
	for _, e := range []string{d.oauth.Endpoint.TokenURL, m.PAR} {
		if key, ok := endpointKey(e); ok {
			s.dpopEndpoints[key] = true
		}
	}
	d.Security = s
	if p.cfg.Profile != ProfileFAPI2 {
		return nil
	}
	var errs []error
	algs := m.IDTokenAlgs
	if len(algs) == 0 {
		algs = []string{gooidc.RS256} // the discovery spec's default
	}
	accepted := slices.DeleteFunc(slices.Clone(algs), func(a string) bool { return !slices.Contains(fapi2IDTokenAlgs, a) })
	if len(accepted) == 0 {
		errs = append(errs, fmt.Errorf("it signs ID tokens with %v, none of PS256, ES256, EdDSA", algs))
	}
	fapiAlgs := make([]jose.SignatureAlgorithm, len(accepted))
	for i, a := range accepted {
		fapiAlgs[i] = jose.SignatureAlgorithm(a)
	}
	p.setVerifiers(d, fapiAlgs)
	if parErr != nil {
		errs = append(errs, parErr)
	}
	if !m.IssParam {
		errs = append(errs, errors.New("it does not advertise authorization_response_iss_parameter_supported (RFC 9207)"))
	}
	if !slices.Contains(m.DPoPAlgs, gooidc.ES256) {
		errs = append(errs, fmt.Errorf("its dpop_signing_alg_values_supported %v lacks ES256", m.DPoPAlgs))
	}
	if len(m.AuthMethods) > 0 && !slices.Contains(m.AuthMethods, string(PrivateKeyJWT)) {
		errs = append(errs, fmt.Errorf("its token_endpoint_auth_methods_supported %v lacks private_key_jwt", m.AuthMethods))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("profile fapi2: the IdP cannot meet FAPI 2.0: %w", err)
	}
	return nil
}

// endpointKey is endpointOf for an endpoint URL from the metadata.
func endpointKey(raw string) (string, bool) {
	if raw == "" {
		return "", false
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", false
	}
	return endpointOf(u), true
}
