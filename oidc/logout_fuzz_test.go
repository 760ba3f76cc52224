package oidc

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/oauth2-proxy/mockoidc"
)

// signedByTestKey verifies raw's signature independently of the code under
// test, with go-jose and the IdP's public key.
func (f *fakeIdP) signedByTestKey(raw string) bool {
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512})
	if err != nil {
		return false
	}
	_, err = jws.Verify(&f.key.PublicKey)
	return err == nil
}

// FuzzVerifyLogoutToken feeds raw logout tokens to VerifyLogoutToken: it
// never panics, refuses with ErrInvalidLogoutToken and without echoing the
// token, and accepts only tokens signed by the IdP's key whose claims are
// those of a logout token for this issuer and client.
func FuzzVerifyLogoutToken(f *testing.F) {
	fi := newFakeIdP(f)
	sign := func(c map[string]any, hdr string) string {
		payload, _ := json.Marshal(c)
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: fi.key},
			(&jose.SignerOptions{}).WithHeader("kid", "k1").WithType(jose.ContentType(hdr)))
		if err != nil {
			f.Fatal(err)
		}
		jws, err := signer.Sign(payload)
		if err != nil {
			f.Fatal(err)
		}
		raw, _ := jws.CompactSerialize()
		return raw
	}
	good := sign(fi.claims(), "logout+jwt")
	f.Add(good)
	parts := strings.Split(good, ".")
	noNonce := fi.claims()
	noNonce["nonce"] = "n"
	for _, raw := range []string{
		sign(noNonce, "JWT"),
		b64(`{"alg":"none"}`) + "." + parts[1] + ".",
		b64(`{"alg":"HS256","kid":"k1"}`) + "." + parts[1] + "." + parts[2],
		b64(`{"alg":"RS256","kid":"k2"}`) + "." + parts[1] + "." + parts[2],
		parts[0] + "." + parts[1] + "." + parts[2][:10],
		parts[0] + "." + parts[1],
		"a.b.c.d.e", "", "....",
	} {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		lt, err := fi.verify(raw)
		if err != nil {
			// A token naming a key the IdP may have rotated to is not
			// refused but put off (ErrUnavailable: retry later).
			if lt != nil || (!errors.Is(err, ErrInvalidLogoutToken) && !errors.Is(err, ErrUnavailable)) {
				t.Fatalf("refusal (%v, %v) wraps neither ErrInvalidLogoutToken nor ErrUnavailable", lt, err)
			}
			for _, part := range strings.Split(raw, ".") {
				if len(part) >= 24 && strings.Contains(err.Error(), part) {
					t.Fatalf("error %q echoes the token", err)
				}
			}
			return
		}
		if !fi.signedByTestKey(raw) {
			t.Fatalf("accepted a token not signed by the IdP's key: %q", raw)
		}
		payload, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
		if err != nil {
			t.Fatalf("accepted a token go-jose cannot parse: %v", err)
		}
		var c map[string]any
		claims, _ := payload.Verify(&fi.key.PublicKey)
		if json.Unmarshal(claims, &c) != nil {
			t.Fatal("accepted claims that are not a JSON object")
		}
		if _, ok := c["nonce"]; ok || c["iss"] != fi.srv.URL || lt.Issuer != fi.srv.URL || lt.JTI == "" || (lt.Subject == "" && lt.SID == "") {
			t.Fatalf("accepted a token that is no logout token for this IdP: %v -> %+v", c, lt)
		}
		if age := time.Since(lt.IssuedAt); age > DefaultLogoutMaxAge+time.Minute || age < -LogoutClockSkew-time.Minute {
			t.Fatalf("accepted a token issued at %v", lt.IssuedAt)
		}
	})
}

// viaJSON is s as it comes out of a JSON string (invalid UTF-8 replaced).
func viaJSON(s string) string {
	b, _ := json.Marshal(s)
	var out string
	_ = json.Unmarshal(b, &out)
	return out
}

// FuzzVerifyLogoutTokenClaims builds logout tokens from fuzzed claims and
// header choices, signs them, and checks VerifyLogoutToken against an
// independent reading of the spec's rules: it accepts exactly the tokens
// signed by the IdP's key with an advertised algorithm whose claims are
// right. Times within a few seconds of a limit are not judged.
func FuzzVerifyLogoutTokenClaims(f *testing.F) {
	fi := newFakeIdP(f)
	otherKey, err := mockoidc.RandomKeypair(2048)
	if err != nil {
		f.Fatal(err)
	}
	// iss, aud, alg/key, events, flags: choices; iat and exp: seconds from
	// now; typ: header typ ("" for none); jti, sub, sid: claim values.
	f.Add(uint8(0), uint8(0), uint8(0), uint8(0), uint8(0b0011), int32(0), int32(120), "", "jti-1", "alice", "s1")
	f.Add(uint8(0), uint8(1), uint8(0), uint8(5), uint8(0b0001), int32(-590), int32(0), "logout+jwt", "j", "", "s1")
	f.Add(uint8(1), uint8(0), uint8(0), uint8(0), uint8(0b0011), int32(0), int32(120), "JWT", "j", "alice", "")
	f.Add(uint8(0), uint8(2), uint8(0), uint8(0), uint8(0b0011), int32(0), int32(120), "", "j", "alice", "")
	f.Add(uint8(0), uint8(0), uint8(1), uint8(0), uint8(0b0011), int32(0), int32(120), "", "j", "alice", "")
	f.Add(uint8(0), uint8(0), uint8(2), uint8(0), uint8(0b0011), int32(0), int32(120), "", "j", "alice", "")
	f.Add(uint8(0), uint8(0), uint8(0), uint8(2), uint8(0b0011), int32(0), int32(120), "", "j", "alice", "")
	f.Add(uint8(0), uint8(0), uint8(0), uint8(0), uint8(0b0111), int32(0), int32(120), "", "j", "alice", "")
	f.Add(uint8(0), uint8(0), uint8(0), uint8(0), uint8(0b0011), int32(300), int32(-300), "at+jwt", "", "", "")
	f.Fuzz(func(t *testing.T, iss, aud, alg, events, flags uint8, iat, exp int32, typ, jti, sub, sid string) {
		now := time.Now()
		c := map[string]any{}
		accept := true
		unsure := false
		switch iss % 4 {
		case 0:
			c["iss"] = fi.srv.URL
		case 1:
			c["iss"] = fi.srv.URL + "/"
			accept = false
		case 2:
			c["iss"] = 7
			accept = false
		default:
			accept = false // missing
		}
		switch aud % 5 {
		case 0:
			c["aud"] = "app"
		case 1:
			c["aud"] = []string{"other", "app"}
		case 2:
			c["aud"] = "other"
			accept = false
		case 3:
			c["aud"] = []string{"x"}
			accept = false
		default:
			accept = false // missing
		}
		if flags&1 != 0 {
			c["iat"] = now.Unix() + int64(iat)
			switch d := int64(iat); {
			case d > int64(LogoutClockSkew/time.Second)+3 || d < -int64(DefaultLogoutMaxAge/time.Second)-3:
				accept = false
			case d > int64(LogoutClockSkew/time.Second)-3 || d < -int64(DefaultLogoutMaxAge/time.Second)+3:
				unsure = true
			}
		} else {
			accept = false
		}
		if flags&2 != 0 {
			c["exp"] = now.Unix() + int64(exp)
			switch d := int64(exp); {
			case d < -int64(LogoutClockSkew/time.Second)-3:
				accept = false
			case d < -int64(LogoutClockSkew/time.Second)+3:
				unsure = true
			}
		}
		if flags&4 != 0 {
			c["nonce"] = "n"
			accept = false
		}
		if jti != "" || flags&8 != 0 {
			c["jti"] = jti
		}
		if jti == "" {
			accept = false
		}
		if sub != "" {
			c["sub"] = sub
		}
		if sid != "" {
			c["sid"] = sid
		}
		if sub == "" && sid == "" {
			accept = false
		}
		ev := map[string]any{backchannelLogoutEvent: map[string]any{}}
		switch events % 6 {
		case 0:
			c["events"] = ev
		case 1:
			accept = false // missing
		case 2:
			c["events"] = backchannelLogoutEvent
			accept = false
		case 3:
			c["events"] = map[string]any{backchannelLogoutEvent: true}
			accept = false
		case 4:
			c["events"] = map[string]any{"http://schemas.openid.net/event/other": map[string]any{}}
			accept = false
		default:
			ev["other"] = 1
			ev[backchannelLogoutEvent] = map[string]any{"reason": "x"}
			c["events"] = ev
		}
		if typ != "" {
			switch strings.TrimPrefix(strings.ToLower(typ), "application/") {
			case "logout+jwt", "jwt":
			default:
				accept = false
			}
		}
		o := signOpts{typ: typ}
		switch alg % 4 {
		case 1:
			o.key = otherKey.PrivateKey // same kid "k1", wrong key
			accept = false
		case 2:
			o.alg = jose.PS256 // a real signature, but not advertised
			accept = false
		case 3:
			o.alg, o.key = jose.HS256, []byte(testClientSecret)
			accept = false
		}
		raw := fi.sign(t, c, o)
		lt, err := fi.verify(raw)
		if unsure {
			return
		}
		if accept && err != nil {
			t.Fatalf("refused a valid logout token: %v\nclaims %v, typ %q", err, c, typ)
		}
		if !accept && err == nil {
			t.Fatalf("accepted an invalid logout token: %+v\nclaims %v, typ %q, alg choice %d", lt, c, typ, alg%4)
		}
		if err == nil && (lt.Subject != viaJSON(sub) || lt.SID != viaJSON(sid) || lt.JTI != viaJSON(jti)) {
			t.Fatalf("token fields %+v, want sub %q sid %q jti %q", lt, sub, sid, jti)
		}
	})
}
