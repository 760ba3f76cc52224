package oidc

import (
	"errors"
	"fmt"
)

// ErrIssuerMismatch means an authorization response's iss parameter (RFC
// 9207) is not this IdP's issuer, or is missing where the IdP promised it:
// the response may come from another IdP the user was sent to (a mix-up
// attack), so its code must not be redeemed here.
var ErrIssuerMismatch = errors.New("authorization response issuer mismatch")

// CheckIssuer checks the iss parameter of an authorization response
// (success or error) against the IdP, before the code is used: a present
// iss must equal the issuer exactly; a missing one is refused when the IdP
// advertises authorization_response_iss_parameter_supported or profile
// fapi2 is on, and accepted otherwise (an IdP without RFC 9207).
func (d *Discovered) CheckIssuer(iss string, present bool) error {
	switch {
	case present && iss == d.Security.issuer:
		return nil
	case present:
		return fmt.Errorf("%w: iss %q", ErrIssuerMismatch, truncate(iss, 100))
	case d.Security.requireIss:
		return fmt.Errorf("%w: the IdP sends iss (RFC 9207) but this response has none", ErrIssuerMismatch)
	}
	return nil
}
