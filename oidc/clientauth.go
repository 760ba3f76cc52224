package oidc

// Client authentication at the IdP's token, pushed authorization request,
// revocation and introspection endpoints: client secrets (left to
// golang.org/x/oauth2 for token requests), none (public clients), and
// private_key_jwt (RFC 7523 and OIDC Core 9), which x/oauth2 cannot do: its
// assertion is added to the request form by the IdP transport (transport.go).

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
)

// ClientAuthMethod is how the client proves its identity to the IdP, by
// the names of OAuth's token_endpoint_auth_method.
type ClientAuthMethod string

const (
	// ClientAuthAuto (the zero value) picks from what the IdP advertises
	// and the config has: private_key_jwt when keys are configured,
	// else client_secret_basic or _post with a secret, else none.
	ClientAuthAuto ClientAuthMethod = ""
	// ClientSecretBasic sends the secret in an Authorization: Basic header.
	ClientSecretBasic ClientAuthMethod = "client_secret_basic"
	// ClientSecretPost sends the secret as a form parameter.
	ClientSecretPost ClientAuthMethod = "client_secret_post"
	// PrivateKeyJWT signs a short-lived assertion with the client's private
	// key (RFC 7523): no shared secret exists that could leak from the IdP
	// or be replayed, and the assertion is good for one request.
	PrivateKeyJWT ClientAuthMethod = "private_key_jwt"
	// ClientAuthNone is a public client: only client_id is sent, so PKCE
	// (and DPoP, which binds its refresh tokens) is its only protection.
	ClientAuthNone ClientAuthMethod = "none"
)

// ParseClientAuthMethod parses a client_auth setting; "" and "auto" are
// ClientAuthAuto.
func ParseClientAuthMethod(s string) (ClientAuthMethod, error) {
	switch m := ClientAuthMethod(s); m {
	case ClientSecretBasic, ClientSecretPost, PrivateKeyJWT, ClientAuthNone:
		return m, nil
	case ClientAuthAuto, "auto":
		return ClientAuthAuto, nil
	}
	return "", fmt.Errorf("client_auth %q: want client_secret_basic, client_secret_post, private_key_jwt or none", s)
}

// AssertionLifetime is how long a private_key_jwt assertion is valid: long
// enough for clock skew and one request, short enough that a captured one
// is of no use (its jti is single-use at the IdP anyway).
const AssertionLifetime = 60 * time.Second

// ClientKey is a private key for private_key_jwt: RSA (2048 bits or more),
// EC (P-256, P-384, P-521) or Ed25519.
type ClientKey struct {
	signer crypto.Signer
	// kid is the configured key id, sent in the assertion header; "" sends
	// none, so the IdP tries each key it has registered for the client.
	kid string
}

// LoadClientKey reads a private key from source, which is either the PEM
// text itself (it contains "-----BEGIN") or the path of a PEM file, so
// {file.*} and {env.*} placeholders both work. PKCS#8 ("PRIVATE KEY"),
// PKCS#1 ("RSA PRIVATE KEY") and SEC 1 ("EC PRIVATE KEY") are accepted;
// encrypted keys, public keys and certificates are refused with a message
// saying so. kid is the key's id as registered at the IdP ("" for none).
func LoadClientKey(source, kid string) (*ClientKey, error) {
	data := []byte(source)
	if !strings.Contains(source, "-----BEGIN") {
		var err error
		if data, err = os.ReadFile(source); err != nil {
			return nil, fmt.Errorf("client_key: %w", err)
		}
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("client_key: no PEM block found (want a PEM private key: PKCS#8, PKCS#1 or SEC 1)")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("client_key: the key is encrypted; give it unencrypted (e.g. openssl pkcs8 -nocrypt) and protect the file instead")
	case "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE":
		return nil, fmt.Errorf("client_key: PEM block %q is not a private key: client_key is the private key, the IdP gets the public one (see jwks.json)", block.Type)
	default:
		return nil, fmt.Errorf("client_key: PEM block %q is not a supported private key (want PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("client_key: %s block: %w", block.Type, err)
	}
	return newClientKey(key, kid)
}

func newClientKey(key any, kid string) (*ClientKey, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("client_key: RSA key of %d bits; at least 2048 are required", k.N.BitLen())
		}
		return &ClientKey{signer: k, kid: kid}, nil
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return &ClientKey{signer: k, kid: kid}, nil
		}
		return nil, fmt.Errorf("client_key: EC curve %s not supported (want P-256, P-384 or P-521)", k.Curve.Params().Name)
	case ed25519.PrivateKey:
		return &ClientKey{signer: k, kid: kid}, nil
	}
	return nil, fmt.Errorf("client_key: %T keys are not supported (want RSA, EC or Ed25519)", key)
}

// KeyID returns the configured key id ("" when none was given).
func (k *ClientKey) KeyID() string { return k.kid }

// publicJWK is the key's public half as published in jwks.json: its kid
// is the configured one, else its RFC 7638 thumbprint.
func (k *ClientKey) publicJWK() (jose.JSONWebKey, error) {
	jwk := jose.JSONWebKey{Key: k.signer.Public(), KeyID: k.kid, Use: "sig"}
	if jwk.KeyID == "" {
		tp, err := jwk.Thumbprint(crypto.SHA256)
		if err != nil {
			return jose.JSONWebKey{}, err
		}
		jwk.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	}
	return jwk, nil
}

// algorithm picks the JWS algorithm for this key: for RSA PS256 when the
// IdP lists it (or fapi requires it), else RS256; for EC the curve's
// ES256/384/512; EdDSA for Ed25519.
func (k *ClientKey) algorithm(advertised []string, fapi bool) jose.SignatureAlgorithm {
	switch pub := k.signer.Public().(type) {
	case *rsa.PublicKey:
		if fapi || slices.Contains(advertised, string(jose.PS256)) {
			return jose.PS256
		}
		return jose.RS256
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P384():
			return jose.ES384
		case elliptic.P521():
			return jose.ES512
		}
		return jose.ES256
	}
	return jose.EdDSA
}

// assertion is a private_key_jwt client assertion: iss and sub are the
// client id, aud the IdP's issuer (RFC 7523bis and FAPI 2.0: a single
// audience, the issuer, so an assertion cannot be replayed at another
// endpoint or server), a fresh jti, and exp AssertionLifetime from now.
func (k *ClientKey) assertion(alg jose.SignatureAlgorithm, clientID, audience string, now time.Time) (string, error) {
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if k.kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), k.kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: k.signer}, opts)
	if err != nil {
		return "", fmt.Errorf("client assertion signer: %w", err)
	}
	claims := jwt.Claims{
		Issuer:    clientID,
		Subject:   clientID,
		Audience:  jwt.Audience{audience},
		ID:        rand.Text(),
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		Expiry:    jwt.NewNumericDate(now.Add(AssertionLifetime)),
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

// jwtBearerAssertion is the client_assertion_type of private_key_jwt.
const jwtBearerAssertion = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// clientAuth is the client authentication decided at discovery.
type clientAuth struct {
	method ClientAuthMethod
	// alg signs assertions (private_key_jwt only).
	alg jose.SignatureAlgorithm
}

// chooseClientAuth decides the method from the config and the IdP's
// token_endpoint_auth_methods_supported. An explicit method is used as
// configured (Config.Check has made sure it has what it needs; an IdP
// that refuses it answers invalid_client, a clear error). Auto prefers a
// key over a secret over nothing.
func chooseClientAuth(cfg *Config, advertised, assertionAlgs []string) clientAuth {
	m := cfg.ClientAuth
	if m == ClientAuthAuto {
		switch {
		case len(cfg.ClientKeys) > 0 && (cfg.ClientSecret == "" || len(advertised) == 0 || slices.Contains(advertised, string(PrivateKeyJWT))):
			m = PrivateKeyJWT
		case cfg.ClientSecret != "":
			m = secretMethod(authStyle(advertised))
		default:
			m = ClientAuthNone
		}
	}
	a := clientAuth{method: m}
	if m == PrivateKeyJWT {
		a.alg = cfg.ClientKeys[0].algorithm(assertionAlgs, cfg.Profile == ProfileFAPI2)
	}
	return a
}

// secretMethod names the method x/oauth2 uses with a secret and style.
// AutoDetect (the IdP advertises neither) keeps x/oauth2's probing, as
// before; it is reported as basic, what it tries first.
func secretMethod(style oauth2.AuthStyle) ClientAuthMethod {
	if style == oauth2.AuthStyleInParams {
		return ClientSecretPost
	}
	return ClientSecretBasic
}

// oauthStyle is how x/oauth2 must send the credentials for method: it
// sends the secret itself for the secret methods and only client_id (in
// the form) otherwise; the assertion of private_key_jwt is added by the
// IdP transport.
func (a clientAuth) oauthStyle(cfg *Config, advertised []string) (oauth2.AuthStyle, string) {
	switch a.method {
	case ClientSecretBasic:
		if cfg.ClientAuth == ClientAuthAuto {
			return authStyle(advertised), cfg.ClientSecret
		}
		return oauth2.AuthStyleInHeader, cfg.ClientSecret
	case ClientSecretPost:
		return oauth2.AuthStyleInParams, cfg.ClientSecret
	}
	return oauth2.AuthStyleInParams, ""
}

// Check reports settings that cannot work together, naming the setting:
// a method without the secret or key it needs, PAR or DPoP modes that are
// not known. The handler calls it at provision, so a broken config fails
// at start instead of at the first login.
func (c *Config) Check() error {
	var errs []error
	if c.ClientID == "" {
		errs = append(errs, errors.New("client_id is required"))
	}
	switch c.ClientAuth {
	case ClientAuthAuto:
	case ClientSecretBasic, ClientSecretPost:
		if c.ClientSecret == "" {
			errs = append(errs, fmt.Errorf("client_auth %s needs client_secret", c.ClientAuth))
		}
	case PrivateKeyJWT:
		if len(c.ClientKeys) == 0 {
			errs = append(errs, errors.New("client_auth private_key_jwt needs client_key"))
		}
	case ClientAuthNone:
		if c.ClientSecret != "" || len(c.ClientKeys) > 0 {
			errs = append(errs, errors.New("client_auth none: remove client_secret and client_key, a public client has neither"))
		}
	default:
		_, err := ParseClientAuthMethod(string(c.ClientAuth))
		errs = append(errs, err)
	}
	if slices.Contains(c.ClientKeys, nil) {
		errs = append(errs, errors.New("client_key: nil key"))
	}
	if _, err := ParsePARMode(string(c.PAR)); err != nil {
		errs = append(errs, err)
	}
	if _, err := ParseDPoPMode(string(c.DPoP)); err != nil {
		errs = append(errs, err)
	}
	if c.Profile != ProfileNone && c.Profile != ProfileFAPI2 {
		errs = append(errs, fmt.Errorf("profile %q: want fapi2", c.Profile))
	}
	return errors.Join(errs...)
}
