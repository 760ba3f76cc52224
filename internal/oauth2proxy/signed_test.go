package oauth2proxy

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAESKey(t *testing.T) {
	key32 := bytes.Repeat([]byte{0xfb}, 32) // encodes with '-' and '_' in base64url
	cases := []struct {
		name, secret string
		want         []byte
	}{
		{"base64url padded", base64.URLEncoding.EncodeToString(key32), key32},
		{"base64url unpadded", base64.RawURLEncoding.EncodeToString(key32), key32},
		{"base64url of 16 bytes", base64.RawURLEncoding.EncodeToString(key32[:16]), key32[:16]},
		// Standard base64 with '+' or '/' is not base64url: oauth2-proxy
		// takes the string itself (44 bytes, so it refuses to start).
		{"standard base64", base64.StdEncoding.EncodeToString(key32), []byte(base64.StdEncoding.EncodeToString(key32))},
		{"not base64", plainSecret, []byte(plainSecret)},
		// 32 characters of the base64url alphabet decode to 24 bytes, a
		// valid key: the decoding is the key, not the string.
		{"32 base64url characters", alphabetSecret, mustDecode(t, alphabetSecret)},
		// Decodes, but not to an AES length: the string itself.
		{"decodes to 18 bytes", alphabetSecret[:24], []byte(alphabetSecret[:24])},
	}
	for _, c := range cases {
		if got := aesKey(c.secret); !bytes.Equal(got, c.want) {
			t.Errorf("%s: key %x, want %x", c.name, got, c.want)
		}
	}
}

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewRefusesWhatTheProxyRefuses(t *testing.T) {
	bad := map[string]Config{
		"no secret":          {},
		"empty secret":       {CookieSecrets: []string{""}},
		"20-byte secret":     {CookieSecrets: []string{"twenty-bytes-secret!"}},
		"std base64 secret":  {CookieSecrets: []string{base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32))}},
		"empty cookie name":  {CookieNames: []string{""}, CookieSecrets: []string{plainSecret}},
		"bad cookie name":    {CookieNames: []string{"a b"}, CookieSecrets: []string{plainSecret}},
		"257-byte name":      {CookieNames: []string{strings.Repeat("n", 257)}, CookieSecrets: []string{plainSecret}},
		"negative lifetime":  {CookieSecrets: []string{plainSecret}, CookieExpire: -time.Second},
		"one bad of two":     {CookieSecrets: []string{plainSecret, "short"}},
		"second bad name":    {CookieNames: []string{"ok", "b;d"}, CookieSecrets: []string{plainSecret}},
		"secret 33 chars":    {CookieSecrets: []string{plainSecret + "x"}},
		"alphabet, 36 chars": {CookieSecrets: []string{alphabetSecret + "abcd"}},
		"secret of 15 chars": {CookieSecrets: []string{"fifteen-chars!!"}},
	}
	for what, cfg := range bad {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", what)
		} else if strings.Contains(err.Error(), plainSecret) {
			t.Errorf("%s: error echoes the secret: %v", what, err)
		}
	}
	r, err := New(Config{CookieSecrets: []string{plainSecret}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.names, []string{DefaultCookieName}) || r.expire != DefaultCookieExpire {
		t.Errorf("defaults: names %q lifetime %v", r.names, r.expire)
	}
}

func TestChunkName(t *testing.T) {
	if got := chunkName("_oauth2_proxy", 3); got != "_oauth2_proxy_3" {
		t.Errorf("chunkName = %q", got)
	}
	long := strings.Repeat("n", 255)
	for _, i := range []int{0, 10} {
		got := chunkName(long, i)
		if len(got) != maxCookieNameLen || !isOfName(got, long) {
			t.Errorf("chunk %d of a 255-byte name: %q (%d bytes)", i, got, len(got))
		}
	}
}

func TestIsOfName(t *testing.T) {
	for cookie, want := range map[string]bool{
		"_oauth2_proxy":        true,
		"_oauth2_proxy_0":      true,
		"_oauth2_proxy_12":     true,
		"_oauth2_proxy_csrf":   false,
		"_oauth2_proxy_":       false,
		"_oauth2_proxy_01":     false, // oauth2-proxy never writes it
		"_oauth2_proxy_-1":     false,
		"_oauth2_proxy_0_1":    false,
		"x_oauth2_proxy_1":     false,
		"_oauth2_proxy_flow_a": false,
		"_oauth2_prox_1":       false,
	} {
		if got := isOfName(cookie, "_oauth2_proxy"); got != want {
			t.Errorf("isOfName(%q) = %v", cookie, got)
		}
	}
}

func TestCookieValue(t *testing.T) {
	name := DefaultCookieName
	chunks := func(values ...string) []*http.Cookie {
		var out []*http.Cookie
		for i, v := range values {
			out = append(out, &http.Cookie{Name: chunkName(name, i), Value: v})
		}
		return out
	}
	t.Run("joined in index order, whatever the header order", func(t *testing.T) {
		c := chunks("aa", "bb", "cc")
		v, names, err := parseCookies(requestWith(c[2], c[0], c[1])).value(name)
		if err != nil || v != "aabbcc" {
			t.Fatalf("value %q, %v", v, err)
		}
		if want := []string{c[2].Name, c[0].Name, c[1].Name}; !slices.Equal(names, want) {
			t.Errorf("names %q, want %q", names, want)
		}
	})
	t.Run("stops at a gap, like the proxy", func(t *testing.T) {
		c := chunks("aa", "bb", "cc")
		v, names, err := parseCookies(requestWith(c[0], c[2])).value(name)
		if err != nil || v != "aa" || len(names) != 2 {
			t.Fatalf("value %q names %q, %v", v, names, err)
		}
	})
	t.Run("first of duplicate names", func(t *testing.T) {
		v, _, err := parseCookies(requestWith(&http.Cookie{Name: name, Value: "one"}, &http.Cookie{Name: name, Value: "two"})).value(name)
		if err != nil || v != "one" {
			t.Fatalf("value %q, %v", v, err)
		}
	})
	t.Run("none", func(t *testing.T) {
		_, _, err := parseCookies(requestWith(&http.Cookie{Name: name + "_csrf", Value: "x"})).value(name)
		if !errors.Is(err, ErrNoCookie) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("too many chunks", func(t *testing.T) {
		values := make([]string, maxChunks+1)
		for i := range values {
			values[i] = "v"
		}
		_, _, err := parseCookies(requestWith(chunks(values...)...)).value(name)
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("%d chunks: %v", len(values), err)
		}
		if _, _, err := parseCookies(requestWith(chunks(values[:maxChunks]...)...)).value(name); err != nil {
			t.Fatalf("%d chunks: %v", maxChunks, err)
		}
	})
	t.Run("too many bytes", func(t *testing.T) {
		big := strings.Repeat("v", maxValueLen/2+1)
		if _, _, err := parseCookies(requestWith(chunks(big, big)...)).value(name); !errors.Is(err, ErrMalformed) {
			t.Fatalf("chunks: %v", err)
		}
		one := &http.Cookie{Name: name, Value: strings.Repeat("v", maxValueLen+1)}
		if _, _, err := parseCookies(requestWith(one)).value(name); !errors.Is(err, ErrMalformed) {
			t.Fatalf("one cookie: %v", err)
		}
	})
}

// TestVerifyOrder: a value that fails its signature is refused as such
// even when it is also old or undecodable, so an attacker learns nothing
// about the checks behind the signature.
func TestVerifyOrder(t *testing.T) {
	r := newReader(t, Config{CookieSecrets: []string{plainSecret}})
	old := time.Now().Add(-1000 * time.Hour)
	v := sign(otherSecret, DefaultCookieName, []byte("x"), old)
	if _, _, _, err := r.verify(DefaultCookieName, v); !errors.Is(err, ErrSignature) {
		t.Errorf("old value under another secret: %v", err)
	}
	v = sign(plainSecret, DefaultCookieName, []byte("x"), old)
	if _, _, _, err := r.verify(DefaultCookieName, v); !errors.Is(err, ErrExpired) {
		t.Errorf("old value: %v", err)
	}
	// Signed but not base64 (only a secret holder can make it).
	_, ts, _ := fields(t, sign(plainSecret, DefaultCookieName, []byte("x"), time.Now()))
	cs := cookieSecret{macKey: []byte(plainSecret)}
	bad := "!!!" + "|" + ts + "|" + base64.URLEncoding.EncodeToString(cs.mac(DefaultCookieName, "!!!", ts))
	if _, _, _, err := r.verify(DefaultCookieName, bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("signed non-base64 payload: %v", err)
	}
	nonNumeric := "eA==" + "|" + "12x" + "|" + base64.URLEncoding.EncodeToString(cs.mac(DefaultCookieName, "eA==", "12x"))
	if _, _, _, err := r.verify(DefaultCookieName, nonNumeric); !errors.Is(err, ErrMalformed) {
		t.Errorf("signed non-numeric time: %v", err)
	}
}
