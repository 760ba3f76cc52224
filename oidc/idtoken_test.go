package oidc

import (
	"context"
	"errors"
	"testing"
	"time"
)

// idClaims are the claims of an ID token the fake IdP issued to "app" an
// hour ago, expired for half an hour.
func (f *fakeIdP) idClaims() map[string]any {
	issued := time.Now().Add(-time.Hour)
	return map[string]any{
		"iss":   f.srv.URL,
		"aud":   "app",
		"sub":   "alice",
		"email": "alice@example.com",
		"iat":   issued.Unix(),
		"exp":   issued.Add(30 * time.Minute).Unix(),
		"nonce": "of-a-login-long-over",
	}
}

func TestVerifyStoredIDToken(t *testing.T) {
	f := newFakeIdP(t)
	ctx := context.Background()
	expired := f.sign(t, f.idClaims(), signOpts{})

	claims, err := f.provider.VerifyStoredIDToken(ctx, f.discovery, expired)
	if err != nil || claims["sub"] != "alice" || claims["email"] != "alice@example.com" {
		t.Fatalf("expired token of this issuer and client: %v, claims %v", err, claims)
	}
	// The login's verifier refuses the very same token: the expiry is all
	// that VerifyStoredIDToken leaves out.
	if _, _, err := f.provider.verify(ctx, f.discovery, expired); err == nil {
		t.Fatal("the login verifier accepts an expired ID token")
	}

	with := func(edit func(map[string]any)) map[string]any {
		c := f.idClaims()
		edit(c)
		return c
	}
	refused := map[string]map[string]any{
		"another client":           with(func(c map[string]any) { c["aud"] = "other-app" }),
		"another issuer":           with(func(c map[string]any) { c["iss"] = "https://idp.example.com" }),
		"azp of another client":    with(func(c map[string]any) { c["aud"] = []string{"app", "other-app"}; c["azp"] = "other-app" }),
		"several audiences no azp": with(func(c map[string]any) { c["aud"] = []string{"app", "other-app"} }),
	}
	for what, c := range refused {
		t.Run(what, func(t *testing.T) {
			_, err := f.provider.VerifyStoredIDToken(ctx, f.discovery, f.sign(t, c, signOpts{}))
			if err == nil || errors.Is(err, ErrIDTokenSignature) {
				t.Fatalf("err = %v; want a refusal that is not about the signature", err)
			}
		})
	}
	t.Run("unknown key", func(t *testing.T) {
		// Signed with a key the IdP does not (or no longer) publish, and
		// the keys were fetched moments ago: not refused outright, but
		// not trusted either.
		raw := f.sign(t, f.idClaims(), signOpts{key: newRSAKey(t), kid: "retired"})
		_, err := f.provider.VerifyStoredIDToken(ctx, f.discovery, raw)
		if !errors.Is(err, ErrIDTokenSignature) || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v; want ErrIDTokenSignature and ErrUnavailable", err)
		}
	})
	t.Run("known key, bad signature", func(t *testing.T) {
		raw := f.sign(t, f.idClaims(), signOpts{key: newRSAKey(t)})
		_, err := f.provider.VerifyStoredIDToken(ctx, f.discovery, raw)
		if !errors.Is(err, ErrIDTokenSignature) || errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v; want ErrIDTokenSignature only", err)
		}
	})
	t.Run("another client, unknown key", func(t *testing.T) {
		c := with(func(c map[string]any) { c["aud"] = "other-app" })
		_, err := f.provider.VerifyStoredIDToken(ctx, f.discovery, f.sign(t, c, signOpts{key: newRSAKey(t), kid: "retired"}))
		if err == nil || errors.Is(err, ErrIDTokenSignature) {
			t.Fatalf("err = %v; want a refusal that is not about the signature", err)
		}
	})
	for what, raw := range map[string]string{"garbage": "not.a.jwt", "empty": "", "unsigned": b64(`{"alg":"none"}`) + "." + b64(`{"iss":"`+f.srv.URL+`","aud":"app","sub":"alice"}`) + "."} {
		t.Run(what, func(t *testing.T) {
			if _, err := f.provider.VerifyStoredIDToken(ctx, f.discovery, raw); err == nil || errors.Is(err, ErrIDTokenSignature) {
				t.Fatalf("err = %v; want a plain refusal", err)
			}
		})
	}
}
