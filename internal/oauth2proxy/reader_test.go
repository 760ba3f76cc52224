package oauth2proxy

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidc-session/oidc_session/internal/testenv"
)

// signedAt is the signing time of forged values; readers under test are
// set to read shortly after it.
var signedAt = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func atSignedAt(r *Reader) *Reader {
	r.now = func() time.Time { return signedAt.Add(time.Minute) }
	return r
}

func forgedCookie(t testing.TB, secret, name string, st *state) *http.Cookie {
	t.Helper()
	return &http.Cookie{Name: name, Value: sign(secret, name, encodeCookieSession(t, secret, st), signedAt)}
}

func TestReadForged(t *testing.T) {
	r := atSignedAt(newReader(t, Config{CookieNames: []string{"_a", "_b"}, CookieSecrets: []string{alphabetSecret}}))
	a := forgedCookie(t, alphabetSecret, "_a", &state{Email: "a@example.com"})
	b := forgedCookie(t, alphabetSecret, "_b", &state{Email: "b@example.com"})

	t.Run("fields", func(t *testing.T) {
		s := mustRead(t, r, requestWith(forgedCookie(t, alphabetSecret, "_a", testState())))
		want := testState()
		if s.Email != want.Email || s.RefreshToken != "rt" || !s.ExpiresOn.Equal(*want.ExpiresOn) ||
			!s.Expires.Equal(signedAt.Add(DefaultCookieExpire)) || s.CookieName != "_a" || s.Store != StoreCookie {
			t.Fatalf("%+v", s)
		}
	})
	t.Run("first configured name wins", func(t *testing.T) {
		if s := mustRead(t, r, requestWith(b, a)); s.Email != "a@example.com" {
			t.Fatalf("read %q", s.Email)
		}
	})
	t.Run("a refused name does not hide a good one", func(t *testing.T) {
		bad := &http.Cookie{Name: "_a", Value: "x|1|y"}
		if s := mustRead(t, r, requestWith(bad, b)); s.Email != "b@example.com" {
			t.Fatalf("read %q", s.Email)
		}
	})
	t.Run("error of the first name present", func(t *testing.T) {
		wantErr(t, r, requestWith(&http.Cookie{Name: "_b", Value: "no-bars"}), ErrMalformed)
		wantErr(t, r, requestWith(&http.Cookie{Name: "_a", Value: a.Value + "x"}, &http.Cookie{Name: "_b", Value: "no-bars"}), ErrSignature)
	})
	t.Run("no cookie", func(t *testing.T) {
		wantErr(t, r, requestWith(&http.Cookie{Name: "_c", Value: a.Value}), ErrNoCookie)
		wantErr(t, r, requestWith(), ErrNoCookie)
	})
	t.Run("IDs", func(t *testing.T) {
		again := forgedCookie(t, alphabetSecret, "_a", &state{Email: "a@example.com"})
		s1, s2 := mustRead(t, r, requestWith(a)), mustRead(t, r, requestWith(again))
		if s1.ID == s2.ID || s1.ID != mustRead(t, r, requestWith(a)).ID {
			t.Fatalf("IDs %q %q: want one per saved value, stable", s1.ID, s2.ID)
		}
		if strings.Contains(a.Value, s1.ID) {
			t.Fatal("the ID is part of the cookie")
		}
	})
	t.Run("our own cookie under the same name", func(t *testing.T) {
		// oidc_session's values (base64url, no '|') are not taken for
		// oauth2-proxy's.
		own := make([]byte, 300)
		rand.Read(own)
		wantErr(t, r, requestWith(&http.Cookie{Name: "_a", Value: base64.RawURLEncoding.EncodeToString(own)}), ErrMalformed)
	})
	t.Run("signed session that does not decrypt", func(t *testing.T) {
		v := sign(alphabetSecret, "_a", []byte(strings.Repeat("\x00", 40)), signedAt)
		wantErr(t, r, requestWith(&http.Cookie{Name: "_a", Value: v}), ErrDecrypt)
	})
	t.Run("ticket without Redis", func(t *testing.T) {
		v := sign(alphabetSecret, "_a", newTicket("_a").v2(), signedAt)
		err := wantErr(t, r, requestWith(&http.Cookie{Name: "_a", Value: v}), ErrDecrypt)
		if !strings.Contains(err.Error(), "no Redis") {
			t.Errorf("error %q does not say why", err)
		}
	})
}

// TestReadRedisUnreachable needs no redis-server: a client for a port
// nobody listens on stands for Redis down.
func TestReadRedisUnreachable(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: testenv.FreeAddr(t), MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { client.Close() })
	r := atSignedAt(newReader(t, Config{CookieSecrets: []string{alphabetSecret}, Redis: client}))
	v := sign(alphabetSecret, DefaultCookieName, newTicket(DefaultCookieName).legacy(), signedAt)
	err := wantErr(t, r, requestWith(&http.Cookie{Name: DefaultCookieName, Value: v}), ErrUnavailable)
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrDecrypt) {
		t.Fatalf("%v: unavailable must be told apart from refusals", err)
	}
	// A bad signature is refused before Redis is asked.
	wantErr(t, r, requestWith(&http.Cookie{Name: DefaultCookieName, Value: tamper(v, 2)}), ErrSignature)
}

// FuzzRead: whatever the Cookie header, Read returns a session or one of
// its errors, and the only session it can return is one signed with the
// secret (the fuzzer cannot make a signature).
func FuzzRead(f *testing.F) {
	r := atSignedAt(newReader(f, Config{CookieSecrets: []string{alphabetSecret}}))
	good := forgedCookie(f, alphabetSecret, DefaultCookieName, &state{Email: "fuzz@example.com", Groups: []string{"g"}})
	f.Add(good.String())
	v := good.Value
	f.Add(DefaultCookieName + "_0=" + v[:len(v)/2] + "; " + DefaultCookieName + "_1=" + v[len(v)/2:])
	f.Add(DefaultCookieName + "=" + sign(alphabetSecret, DefaultCookieName, newTicket(DefaultCookieName).v2(), signedAt))
	f.Add(DefaultCookieName + "=a|b|c")
	f.Add(DefaultCookieName + "_3=x; " + DefaultCookieName + "_0=||")
	sentinels := []error{ErrNoCookie, ErrMalformed, ErrSignature, ErrExpired, ErrDecrypt}
	f.Fuzz(func(t *testing.T, header string) {
		req, _ := http.NewRequest(http.MethodGet, "http://site.test/", nil)
		req.Header.Set("Cookie", header)
		s, err := r.Read(context.Background(), req)
		if err == nil {
			if s == nil || s.Email != "fuzz@example.com" {
				t.Fatalf("a session nobody signed: %+v", s)
			}
			return
		}
		for _, e := range sentinels {
			if errors.Is(err, e) {
				return
			}
		}
		t.Fatalf("error wraps no sentinel: %v", err)
	})
}

// realisticState is the size of a typical OIDC session: two JWTs of about
// 900 characters, a refresh token, a few groups.
func realisticState() *state {
	jwt := func() string {
		b := make([]byte, 670)
		rand.Read(b)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	st := testState()
	st.IDToken, st.AccessToken, st.RefreshToken = jwt(), jwt(), "ChlzZXNzaW9uLXJlZnJlc2gtdG9rZW4tMTIzNDU2"
	st.Groups = []string{"staff", "admins", "engineering", "oncall", "vpn"}
	return st
}

func BenchmarkReadCookieSession(b *testing.B) {
	r := atSignedAt(newReader(b, Config{CookieSecrets: []string{alphabetSecret}}))
	req := requestWith(forgedCookie(b, alphabetSecret, DefaultCookieName, realisticState()))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Read(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadBadSignature(b *testing.B) {
	r := atSignedAt(newReader(b, Config{CookieSecrets: []string{alphabetSecret}}))
	c := forgedCookie(b, otherSecret, DefaultCookieName, realisticState())
	req := requestWith(c)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Read(context.Background(), req); !errors.Is(err, ErrSignature) {
			b.Fatal(err)
		}
	}
}

func TestCookies(t *testing.T) {
	r := newReader(t, Config{CookieNames: []string{"_a", "_b"}, CookieSecrets: []string{alphabetSecret}})
	req := requestWith(
		&http.Cookie{Name: "_a", Value: "junk"}, &http.Cookie{Name: "_b_0", Value: "x"}, &http.Cookie{Name: "_b_1", Value: "y"},
		&http.Cookie{Name: "_b_x", Value: "not a chunk"}, &http.Cookie{Name: "_c", Value: "another name"}, &http.Cookie{Name: "_a_01", Value: "not canonical"},
	)
	if got, want := r.Cookies(req), []string{"_a", "_b_0", "_b_1"}; !slices.Equal(got, want) {
		t.Fatalf("Cookies = %q, want %q", got, want)
	}
	if got := r.Cookies(requestWith(&http.Cookie{Name: "_c", Value: "v"})); got != nil {
		t.Fatalf("Cookies of a request without any = %q", got)
	}
}
