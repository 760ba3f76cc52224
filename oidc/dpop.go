package oidc

// DPoP (RFC 9449) for the plugin's own calls to the IdP: each session has
// its own key pair; token, refresh, pushed authorization and userinfo
// requests carry a proof signed with it, so the tokens the IdP issues are
// bound to the key (cnf.jkt) and useless to whoever steals them from a
// session store, a log or an upstream without also stealing the key.
// Proofs are added by the IdP transport (transport.go) for requests whose
// context carries a key (WithDPoPKey).

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
)

// DPoPMode is the dpop setting.
type DPoPMode string

const (
	// DPoPDefault (the zero value) is off, unless a profile turns it on.
	DPoPDefault DPoPMode = ""
	// DPoPOn sends proofs and requires DPoP-bound tokens: an IdP that
	// answers with a Bearer token fails the login or refresh.
	DPoPOn DPoPMode = "on"
	// DPoPOff sends no proofs; a profile that needs DPoP refuses it.
	DPoPOff DPoPMode = "off"
)

// ParseDPoPMode parses a dpop setting: "on", "off", or "" (the default).
func ParseDPoPMode(s string) (DPoPMode, error) {
	switch m := DPoPMode(s); m {
	case DPoPDefault, DPoPOn, DPoPOff:
		return m, nil
	}
	return "", fmt.Errorf("dpop %q: want on or off", s)
}

// Enabled reports whether DPoP proofs are sent.
func (m DPoPMode) Enabled() bool { return m == DPoPOn }

// DPoPKey is a session's DPoP key pair (ECDSA P-256, proofs signed ES256,
// the one algorithm every DPoP server supports).
type DPoPKey struct {
	priv       *ecdsa.PrivateKey
	thumbprint string
}

// dpopKeyVersion prefixes the binary form: P-256 scalar, ES256.
const dpopKeyVersion = 1

// NewDPoPKey makes a fresh key pair, one per session (a key shared by
// sessions would let one session's tokens be used with another's key).
func NewDPoPKey() (*DPoPKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("DPoP key: %w", err)
	}
	return newDPoPKey(priv)
}

func newDPoPKey(priv *ecdsa.PrivateKey) (*DPoPKey, error) {
	tp, err := (&jose.JSONWebKey{Key: &priv.PublicKey}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("DPoP key thumbprint: %w", err)
	}
	return &DPoPKey{priv: priv, thumbprint: base64.RawURLEncoding.EncodeToString(tp)}, nil
}

// MarshalBinary returns the private key in 33 bytes (a version byte and
// the P-256 scalar), to be stored in the session: it is as secret as the
// refresh token and must travel encrypted with it.
func (k *DPoPKey) MarshalBinary() ([]byte, error) {
	raw, err := k.priv.Bytes()
	if err != nil {
		return nil, fmt.Errorf("DPoP key: %w", err)
	}
	return append([]byte{dpopKeyVersion}, raw...), nil
}

// UnmarshalDPoPKey parses what MarshalBinary made.
func UnmarshalDPoPKey(b []byte) (*DPoPKey, error) {
	if len(b) != 33 || b[0] != dpopKeyVersion {
		return nil, errors.New("malformed DPoP key")
	}
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), b[1:])
	if err != nil {
		return nil, fmt.Errorf("malformed DPoP key: %w", err)
	}
	return newDPoPKey(priv)
}

// MarshalText and UnmarshalText give the base64url of the binary form, so
// a key can sit in JSON (the login flow cookie, before encryption).
func (k *DPoPKey) MarshalText() ([]byte, error) {
	b, err := k.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return []byte(base64.RawURLEncoding.EncodeToString(b)), nil
}

// UnmarshalText parses what MarshalText made.
func (k *DPoPKey) UnmarshalText(text []byte) error {
	b, err := base64.RawURLEncoding.Strict().DecodeString(string(text))
	if err != nil {
		return errors.New("malformed DPoP key")
	}
	parsed, err := UnmarshalDPoPKey(b)
	if err != nil {
		return err
	}
	*k = *parsed
	return nil
}

// Thumbprint is the key's RFC 7638 JWK SHA-256 thumbprint (base64url): the
// cnf.jkt of the tokens bound to it and the dpop_jkt of an authorization
// request.
func (k *DPoPKey) Thumbprint() string { return k.thumbprint }

// Proof returns a DPoP proof JWT for one request: method and target URL
// (query and fragment are left out of htu, as RFC 9449 says), the access
// token it presents ("" for none; else its hash is the ath claim), and the
// server's latest DPoP-Nonce ("" for none). Each proof has a fresh jti and
// is meant for a single request: call it again for a retry, and for each
// request forwarded upstream with the access token.
func (k *DPoPKey) Proof(method, target, accessToken, nonce string) (string, error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("DPoP proof: bad target URL %q", target)
	}
	htu := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	opts := (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt")
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.priv}, opts)
	if err != nil {
		return "", fmt.Errorf("DPoP proof signer: %w", err)
	}
	claims := struct {
		JTI   string `json:"jti"`
		HTM   string `json:"htm"`
		HTU   string `json:"htu"`
		IAT   int64  `json:"iat"`
		Nonce string `json:"nonce,omitempty"`
		ATH   string `json:"ath,omitempty"`
	}{JTI: rand.Text(), HTM: method, HTU: htu.String(), IAT: time.Now().Unix(), Nonce: nonce}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		claims.ATH = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

type dpopKeyCtx struct{}

// WithDPoPKey returns ctx carrying key: the IdP calls made with it (code
// exchange, refresh, pushed authorization request, userinfo) carry DPoP
// proofs signed with key. A nil key returns ctx unchanged.
func WithDPoPKey(ctx context.Context, key *DPoPKey) context.Context {
	if key == nil {
		return ctx
	}
	return context.WithValue(ctx, dpopKeyCtx{}, key)
}

func dpopKeyFrom(ctx context.Context) *DPoPKey {
	k, _ := ctx.Value(dpopKeyCtx{}).(*DPoPKey)
	return k
}

// ErrNotDPoPBound means a proof was sent but the IdP issued a token of
// another type: with dpop on, an unbound token is refused rather than
// silently kept.
var ErrNotDPoPBound = errors.New("the IdP issued a token that is not DPoP-bound")

// ErrNoDPoPKey means dpop is on but a token request's context carries no
// DPoP key (WithDPoPKey): the request is not made, so no unbound token is
// issued and no refresh token is spent. A session from before dpop was
// turned on has no key: end it, and the new login makes one.
var ErrNoDPoPKey = errors.New("dpop on, but no DPoP key for this request (oidc.WithDPoPKey)")

// checkDPoPKey is ErrNoDPoPKey when dpop is on and ctx has no key.
func (p *Provider) checkDPoPKey(ctx context.Context) error {
	if p.cfg.DPoP.Enabled() && dpopKeyFrom(ctx) == nil {
		return ErrNoDPoPKey
	}
	return nil
}

// checkDPoPBound refuses a token response to a request that carried a
// proof (ctx has a key) unless its token_type is DPoP.
func checkDPoPBound(ctx context.Context, tok *oauth2.Token) error {
	if dpopKeyFrom(ctx) != nil && !strings.EqualFold(tok.TokenType, "DPoP") {
		return fmt.Errorf("%w (token_type %q; is DPoP enabled for this client at the IdP?)", ErrNotDPoPBound, tok.TokenType)
	}
	return nil
}

// dpopNonces keeps the latest DPoP-Nonce each server (origin) gave. A
// nonce belongs to the server, not to a key or session, so one cache per
// provider serves every session.
type dpopNonces struct {
	mu sync.Mutex
	m  map[string]string
}

// maxDPoPNonceOrigins bounds the cache; the IdP has one or two origins.
const maxDPoPNonceOrigins = 16

func (n *dpopNonces) get(origin string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.m[origin]
}

func (n *dpopNonces) put(origin, nonce string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil || (len(n.m) >= maxDPoPNonceOrigins && n.m[origin] == "") {
		n.m = map[string]string{}
	}
	n.m[origin] = nonce
}
