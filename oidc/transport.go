package oidc

// The IdP transport: an http.RoundTripper under the IdP HTTP client that
// adds what golang.org/x/oauth2 and go-oidc cannot: the private_key_jwt
// client assertion on client-authenticated endpoints, and DPoP proofs
// (with the server's nonce, and one retry on use_dpop_nonce). Hooking the
// transport keeps x/oauth2's token requests and response parsing
// (including *oauth2.RetrieveError, which classify relies on) and go-oidc's
// userinfo call as they are.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxFormBody bounds the request bodies the transport rewrites (token and
// PAR requests are a few KiB).
const maxFormBody = 1 << 20

type idpTransport struct {
	base   http.RoundTripper
	p      *Provider
	nonces dpopNonces
}

// hookedClient returns c with its transport wrapped by the IdP transport.
// Without private_key_jwt or DPoP configured it returns c unchanged.
func (p *Provider) hookedClient(c *http.Client) *http.Client {
	if len(p.cfg.ClientKeys) == 0 && !p.cfg.DPoP.Enabled() && p.cfg.Profile == ProfileNone {
		return c
	}
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hooked := *c
	hooked.Transport = &idpTransport{base: base, p: p}
	return &hooked
}

func (t *idpTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	d := t.p.ready.Load()
	if d == nil { // discovery itself: nothing to add
		return t.base.RoundTrip(req)
	}
	ep := endpointOf(req.URL)
	assert := d.Security.auth.method == PrivateKeyJWT && req.Method == http.MethodPost && d.Security.authEndpoints[ep]
	key := dpopKeyFrom(req.Context())
	scheme, accessToken, _ := strings.Cut(req.Header.Get("Authorization"), " ")
	dpopAuthz := strings.EqualFold(scheme, "DPoP")
	if dpopAuthz && key == nil {
		return nil, errors.New("a DPoP-bound access token needs the session's DPoP key (oidc.WithDPoPKey)")
	}
	if !dpopAuthz {
		accessToken = ""
	}
	prove := key != nil && (dpopAuthz || d.Security.dpopEndpoints[ep])
	if !assert && !prove {
		return t.base.RoundTrip(req)
	}

	body, err := readRequestBody(req)
	if err != nil {
		return nil, err
	}
	var form url.Values
	if assert {
		if form, err = url.ParseQuery(string(body)); err != nil {
			return nil, fmt.Errorf("client assertion: request form: %w", err)
		}
	}
	origin := req.URL.Scheme + "://" + req.URL.Host
	for attempt := 1; ; attempt++ {
		out := req.Clone(req.Context())
		if assert {
			a, err := t.p.assertion(d)
			if err != nil {
				return nil, err
			}
			form.Set("client_assertion_type", jwtBearerAssertion)
			form.Set("client_assertion", a) // replaces the spent one on a retry
			body = []byte(form.Encode())
		}
		setBody(out, body)
		if prove {
			proof, err := key.Proof(req.Method, req.URL.String(), accessToken, t.nonces.get(origin))
			if err != nil {
				return nil, err
			}
			out.Header.Set("DPoP", proof)
		}
		resp, err := t.base.RoundTrip(out)
		if err != nil || !prove {
			return resp, err
		}
		nonce := resp.Header.Get("DPoP-Nonce")
		if nonce != "" {
			t.nonces.put(origin, nonce)
		}
		if attempt > 1 || nonce == "" || !askedForNonce(resp) {
			return resp, nil
		}
		// RFC 9449 8 and 9: the server wants its nonce in the proof; one
		// retry with a new proof (and a new assertion: its jti is spent).
		resp.Body.Close()
	}
}

// assertion signs a fresh client assertion for d's IdP.
func (p *Provider) assertion(d *Discovered) (string, error) {
	return p.cfg.ClientKeys[0].assertion(d.Security.auth.alg, p.cfg.ClientID, p.cfg.Issuer, time.Now())
}

// askedForNonce reports whether resp is a use_dpop_nonce error: from an
// authorization server as a JSON error (400), from a resource server such
// as userinfo in WWW-Authenticate (401). A JSON body that was read is put
// back for the caller.
func askedForNonce(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return strings.Contains(resp.Header.Get("WWW-Authenticate"), "use_dpop_nonce")
	case http.StatusBadRequest:
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(b))
		if err != nil {
			return false
		}
		var e struct {
			Error string `json:"error"`
		}
		return json.Unmarshal(b, &e) == nil && e.Error == "use_dpop_nonce"
	}
	return false
}

// endpointOf is u without query and fragment, the key of the endpoint
// sets (the IdP's metadata gives endpoints without a query, as does
// x/oauth2's TokenURL).
func endpointOf(u *url.URL) string {
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host) + u.EscapedPath()
}

func readRequestBody(req *http.Request) ([]byte, error) {
	if req.Body == nil {
		return nil, nil
	}
	defer req.Body.Close()
	b, err := io.ReadAll(io.LimitReader(req.Body, maxFormBody+1))
	if err != nil {
		return nil, fmt.Errorf("read IdP request body: %w", err)
	}
	if len(b) > maxFormBody {
		return nil, errors.New("IdP request body too large")
	}
	return b, nil
}

func setBody(req *http.Request, body []byte) {
	if body == nil {
		req.Body, req.GetBody, req.ContentLength = nil, nil, 0
		return
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	req.ContentLength = int64(len(body))
}
