package oidc

// The FAPI 2.0 Security Profile (final, 2025) for the client: one switch
// that turns on what the profile requires and refuses a config that
// cannot meet it.

import (
	"errors"
	"fmt"
	"slices"
)

// Profile is a security profile the client follows.
type Profile string

const (
	// ProfileNone (the zero value) follows the individual settings.
	ProfileNone Profile = ""
	// ProfileFAPI2 is the FAPI 2.0 Security Profile: PKCE S256, pushed
	// authorization requests, private_key_jwt, DPoP-bound tokens, the RFC
	// 9207 iss check, and ID tokens signed only with PS256, ES256 or
	// EdDSA. Discovery fails, naming what is missing, for an IdP that
	// cannot do all of it (an IdP that also offers weaker options is fine).
	ProfileFAPI2 Profile = "fapi2"
)

// ParseProfile parses a profile setting ("fapi2").
func ParseProfile(s string) (Profile, error) {
	if p := Profile(s); p == ProfileFAPI2 || p == ProfileNone {
		return p, nil
	}
	return "", fmt.Errorf("profile %q: want fapi2", s)
}

// ApplyFAPI2 puts cfg under profile fapi2 (client assertions signed with
// PS256, ES256 or EdDSA, as ID tokens must be): client_auth becomes
// private_key_jwt, par on and dpop on where they were left to their
// defaults. pkce and issuerCheck say whether the handler sends PKCE S256
// and checks the authorization response's iss (CheckIssuer). It returns
// every reason the config cannot meet the profile, each naming the
// setting to change; cfg is only changed when there is none.
func ApplyFAPI2(cfg *Config, pkce, issuerCheck bool) error {
	var errs []error
	switch cfg.ClientAuth {
	case ClientAuthAuto, PrivateKeyJWT:
	default:
		errs = append(errs, fmt.Errorf("client_auth %s: FAPI 2.0 needs private_key_jwt", cfg.ClientAuth))
	}
	if len(cfg.ClientKeys) == 0 {
		errs = append(errs, errors.New("no client_key: FAPI 2.0 authenticates the client with a private key (private_key_jwt)"))
	}
	if len(cfg.ClientKeys) > 0 && cfg.ClientKeys[0] != nil {
		if alg := cfg.ClientKeys[0].algorithm(nil, true); !slices.Contains(fapi2IDTokenAlgs, string(alg)) {
			errs = append(errs, fmt.Errorf("the first client_key signs %s: FAPI 2.0 allows only PS256, ES256 and EdDSA (use an RSA, P-256 or Ed25519 key)", alg))
		}
	}
	if cfg.ClientSecret != "" {
		errs = append(errs, errors.New("client_secret is set: FAPI 2.0 allows no shared secrets; remove it and use client_key"))
	}
	if cfg.PAR == PAROff {
		errs = append(errs, errors.New("par off: FAPI 2.0 needs pushed authorization requests"))
	}
	if cfg.DPoP == DPoPOff {
		errs = append(errs, errors.New("dpop off: FAPI 2.0 needs sender-constrained (DPoP) tokens"))
	}
	if !pkce {
		errs = append(errs, errors.New("PKCE is disabled (disable_pkce): FAPI 2.0 needs PKCE S256"))
	}
	if !issuerCheck {
		errs = append(errs, errors.New("the authorization response iss check (RFC 9207) is off: FAPI 2.0 needs it"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("profile fapi2: %w", err)
	}
	cfg.Profile = ProfileFAPI2
	cfg.ClientAuth = PrivateKeyJWT
	cfg.PAR = PAROn
	cfg.DPoP = DPoPOn
	return nil
}
