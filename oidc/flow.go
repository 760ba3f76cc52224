package oidc

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/url"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Flow is one login attempt: what the callback needs to check that the
// response belongs to this browser and this request. It lives in an
// encrypted short-lived cookie; nothing is kept on the server.
type Flow struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v,omitempty"` // PKCE code verifier; empty when PKCE is off
	ReturnTo string `json:"r"`
	// Origin is scheme://host of the request that started the login, so
	// a callback on another host (an absolute redirect_url) sends the
	// browser back to the right one.
	Origin  string    `json:"o,omitempty"`
	Created time.Time `json:"t"`
	// RequireACR and MaxAge are what a step-up login asked for (acr_values
	// it requires, max_age in seconds): the callback checks the ID token's
	// acr and auth_time against them, so a weaker answer is refused
	// rather than taken for the step-up.
	RequireACR []string `json:"a,omitempty"`
	MaxAge     int64    `json:"m,omitempty"`
	// DPoP is the key of the session this login will make (nil without
	// DPoP): the authorization request names it (dpop_jkt), so the code
	// can only be redeemed with proofs signed by it.
	DPoP *DPoPKey `json:"k,omitempty"`
	// Provider names the IdP the login went to, on a site with several
	// (empty: the site's first): only that IdP's answer is taken at the
	// callback, and its code redeemed only there (mix-up defence).
	Provider string `json:"p,omitempty"`
	// Issuer is that IdP's issuer (with Provider): a reload that gives
	// the name to another IdP does not send this flow's code there.
	Issuer string `json:"i,omitempty"`
}

// NewFlow starts a login attempt that returns to returnTo (already
// validated by the caller) when it succeeds.
func NewFlow(returnTo string, pkce bool) *Flow {
	f := &Flow{
		State:    rand.Text(),
		Nonce:    rand.Text(),
		ReturnTo: returnTo,
		Created:  time.Now().Truncate(time.Second),
	}
	if pkce {
		f.Verifier = oauth2.GenerateVerifier()
	}
	return f
}

// ID is a short, non-secret handle of the flow, used to name its cookie so
// several tabs can log in at once, each with its own flow.
func (f *Flow) ID() string { return f.State[:10] }

// IDFromState returns the handle of the flow a callback's state refers to.
func IDFromState(state string) (string, bool) {
	if len(state) < 10 || len(state) > 64 {
		return "", false
	}
	return state[:10], true
}

// Matches reports, in constant time, whether the callback's state is this
// flow's.
func (f *Flow) Matches(state string) bool {
	return subtle.ConstantTimeCompare([]byte(f.State), []byte(state)) == 1
}

// Marshal and UnmarshalFlow give the cookie form (before encryption).
func (f *Flow) Marshal() []byte {
	b, _ := json.Marshal(f) // cannot fail for this type
	return b
}

// UnmarshalFlow parses what Marshal made.
func UnmarshalFlow(b []byte) (*Flow, error) {
	var f Flow
	if err := json.Unmarshal(b, &f); err != nil || f.State == "" || f.Nonce == "" {
		return nil, errors.New("malformed login flow")
	}
	return &f, nil
}

// AuthCodeURL is where the browser is sent to log in.
func (d *Discovered) AuthCodeURL(f *Flow, redirectURL string, params url.Values) string {
	cfg := *d.oauth
	cfg.RedirectURL = redirectURL
	opts := []oauth2.AuthCodeOption{gooidc.Nonce(f.Nonce)}
	if f.Verifier != "" {
		opts = append(opts, oauth2.S256ChallengeOption(f.Verifier))
	}
	if f.DPoP != nil {
		opts = append(opts, oauth2.SetAuthURLParam("dpop_jkt", f.DPoP.Thumbprint()))
	}
	authURL := cfg.AuthCodeURL(f.State, opts...)
	if len(params) == 0 {
		return authURL
	}
	u, err := url.Parse(authURL)
	if err != nil {
		return authURL
	}
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	return u.String()
}
