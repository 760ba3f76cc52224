package bearer

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// MetadataPath is where RFC 9728 protected resource metadata lives: the
// resource's path (if any) is appended to it.
const MetadataPath = "/.well-known/oauth-protected-resource"

// ResourceMetadata is the RFC 9728 protected resource metadata document.
type ResourceMetadata struct {
	// Resource is this resource's identifier (Config.Resource, resolved
	// against the request).
	Resource string `json:"resource"`
	// AuthorizationServers are the trusted issuers, the main one first.
	AuthorizationServers []string `json:"authorization_servers"`
	// ScopesSupported are the scopes tokens need here (scopes_required).
	ScopesSupported []string `json:"scopes_supported,omitempty"`
	// BearerMethodsSupported is always ["header"]: query and form tokens
	// are refused.
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	// DPoPSigningAlgValuesSupported are the DPoP proof algorithms, when
	// DPoP is not off.
	DPoPSigningAlgValuesSupported []string `json:"dpop_signing_alg_values_supported,omitempty"`
	// DPoPBoundAccessTokensRequired is true when dpop is required.
	DPoPBoundAccessTokensRequired bool `json:"dpop_bound_access_tokens_required,omitempty"`
}

// resourceURL is the resource identifier for r: Config.Resource when it
// is absolute, else the request's origin followed by Config.Resource (a
// path, or nothing).
func (v *Verifier) resourceURL(r *http.Request) *url.URL {
	if strings.HasPrefix(v.resource, "http://") || strings.HasPrefix(v.resource, "https://") {
		u, _ := url.Parse(v.resource) // checked by Validate
		return u
	}
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return &url.URL{Scheme: scheme, Host: r.Host, Path: v.resource}
}

// metadataURL is the URL of the metadata of resource u (RFC 9728 section
// 3.1: the well-known path inserted before the resource's path).
func metadataURL(u *url.URL) *url.URL {
	return &url.URL{Scheme: u.Scheme, Host: u.Host, Path: MetadataPath + strings.TrimSuffix(u.Path, "/")}
}

// Metadata returns the metadata document when r asks for this resource's
// metadata (its path is MetadataPath followed by the resource's path),
// and false otherwise.
func (v *Verifier) Metadata(r *http.Request) (*ResourceMetadata, bool) {
	if !strings.HasPrefix(r.URL.Path, MetadataPath) {
		return nil, false // the common case, at no cost
	}
	res := v.resourceURL(r)
	if r.URL.Path != metadataURL(res).Path {
		return nil, false
	}
	m := &ResourceMetadata{
		Resource:               res.String(),
		AuthorizationServers:   v.serverList,
		ScopesSupported:        v.required,
		BearerMethodsSupported: []string{"header"},
	}
	if v.mode != dpopOff {
		m.DPoPSigningAlgValuesSupported = algsParam
		m.DPoPBoundAccessTokensRequired = v.mode == dpopRequired
	}
	return m, true
}

// ServeMetadata answers r with the metadata document (GET or HEAD; other
// methods get 405) and returns true when r asks for it; otherwise it
// writes nothing and returns false. The document is public (RFC 9728):
// any origin may read it, and caches may keep it for five minutes.
func (v *Verifier) ServeMetadata(w http.ResponseWriter, r *http.Request) bool {
	m, ok := v.Metadata(r)
	if !ok {
		return false
	}
	h := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return true
	}
	body, _ := json.Marshal(m) // plain strings and bools
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("Access-Control-Allow-Origin", "*")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
	return true
}

// Challenge is the 401 for a request without credentials that is not a
// browser navigation (RFC 6750 section 3, RFC 9728 section 5.1): no error
// code, and where the metadata is:
//
//	Bearer resource_metadata="https://<host>/.well-known/oauth-protected-resource"
//
// with, when DPoP is allowed, a second challenge `DPoP algs="ES256 ..."`;
// when DPoP is required, only `DPoP algs="...", resource_metadata="..."`.
func (v *Verifier) Challenge(r *http.Request) *Error {
	meta := metadataURL(v.resourceURL(r)).String()
	algs := strings.Join(algsParam, " ")
	e := &Error{Status: http.StatusUnauthorized, Description: "access token required"}
	switch v.mode {
	case dpopOff:
		e.Challenges = []string{challenge(schemeBearer, "resource_metadata", meta)}
	case dpopAllowed:
		e.Challenges = []string{challenge(schemeBearer, "resource_metadata", meta), challenge(schemeDPoP, "algs", algs)}
	case dpopRequired:
		e.Challenges = []string{challenge(schemeDPoP, "algs", algs, "resource_metadata", meta)}
	}
	return e
}
