package oidcsession

// The high-security client (issue 17): client_auth, client_key, par, dpop
// and profile fapi2 turned into the oidc package's settings, the
// <prefix>/jwks.json document of the client's public keys, and the
// session's DPoP key for the IdP calls made on its behalf.

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oidc-session/oidc_session/oidc"
	"github.com/oidc-session/oidc_session/sessions"
)

// clientSecurity sets cfg's client authentication, client keys, PAR, DPoP
// and profile from the configuration, loading the keys, and applies
// profile fapi2. cfg comes with the client id and secret. repl replaces
// the placeholders of the keys at Provision; validate passes nil, and a
// key that is a placeholder is then left for Provision, as are the checks
// that need every key. Each error names its subdirective.
func (p *ProviderConfig) clientSecurity(cfg *oidc.Config, repl *caddy.Replacer) []error {
	var errs []error
	bad := func(field string, err error) { errs = append(errs, &configError{field, err}) }
	var err error
	if cfg.ClientAuth, err = oidc.ParseClientAuthMethod(p.ClientAuth); err != nil {
		bad("client_auth", err)
	}
	if cfg.PAR, err = oidc.ParsePARMode(p.PAR); err != nil {
		bad("par", err)
	}
	if cfg.DPoP, err = oidc.ParseDPoPMode(p.DPoP); err != nil {
		bad("dpop", err)
	}
	profile, err := oidc.ParseProfile(p.Profile)
	if err != nil {
		bad("profile", err)
	}
	if len(p.ClientKeyIDs) > len(p.ClientKeys) {
		bad("client_key_id", fmt.Errorf("client_key_id: %d key ids for %d client_key; give one per key, in the same order", len(p.ClientKeyIDs), len(p.ClientKeys)))
	}
	pending := false
	for i, source := range p.ClientKeys {
		switch {
		case repl != nil:
			if replaced := repl.ReplaceKnown(source, ""); replaced != "" {
				source = replaced
			} else {
				bad(clientKeyField(i), fmt.Errorf("client_key %q is empty once its placeholders are replaced", source))
				continue
			}
		case isPlaceholder(source):
			pending = true
			continue
		}
		kid := ""
		if i < len(p.ClientKeyIDs) {
			kid = p.ClientKeyIDs[i]
		}
		key, err := oidc.LoadClientKey(source, kid)
		if err != nil {
			bad(clientKeyField(i), err)
			continue
		}
		cfg.ClientKeys = append(cfg.ClientKeys, key)
	}
	if len(errs) > 0 || pending || cfg.ClientID == "" { // validate reports a missing client_id
		return errs
	}
	if profile == oidc.ProfileFAPI2 {
		// The handler always checks the authorization response's iss.
		if err := oidc.ApplyFAPI2(cfg, !p.DisablePKCE, true); err != nil {
			bad("profile", err)
			return errs
		}
	}
	if err := cfg.Check(); err != nil {
		bad("client_auth", err)
	}
	return errs
}

// clientKeyField names the i-th client_key (from 0) in configErrors, so
// the Caddyfile parser reports a bad key at its own line.
func clientKeyField(i int) string { return fmt.Sprintf("client_key.%d", i+1) }

// serveJWKS answers <prefix>/jwks.json with the public halves of the
// client keys, the document to register as the client's jwks_uri at the
// IdP; 404 without client keys. It is public, as public keys are, and
// cacheable for a few minutes: an IdP that caches it longer still finds a
// new key, since keys are added before they sign.
func (h *Handler) serveJWKS(w http.ResponseWriter, r *http.Request) error {
	if h.jwks == nil {
		return caddyhttp.Error(http.StatusNotFound, errors.New("no client keys (client_key) configured"))
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("jwks.json takes GET"))
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, err := w.Write(h.jwks)
	return err
}

// newDPoPKey makes the DPoP key of a login when dpop is on (nil when off).
func (p *idp) newDPoPKey() (*oidc.DPoPKey, error) {
	if !p.dpop {
		return nil, nil
	}
	return oidc.NewDPoPKey()
}

// keepDPoPKey stores the login's DPoP key in its new session.
func keepDPoPKey(s *sessions.Session, key *oidc.DPoPKey) error {
	if key == nil {
		return nil
	}
	b, err := key.MarshalBinary()
	if err != nil {
		return err
	}
	s.DPoPKey = b
	return nil
}

// withSessionDPoPKey returns ctx carrying the session's DPoP key when dpop
// is on, so that the IdP calls of its refresh carry proofs. A session
// without a key (made before dpop was on) gets none; its refresh is then
// refused (oidc.ErrNoDPoPKey) and the user logs in again, with a key.
func (p *idp) withSessionDPoPKey(ctx context.Context, s *sessions.Session) (context.Context, error) {
	if !p.dpop || s.DPoPKey == nil {
		return ctx, nil
	}
	key, err := oidc.UnmarshalDPoPKey(s.DPoPKey)
	if err != nil {
		return nil, err
	}
	return oidc.WithDPoPKey(ctx, key), nil
}
