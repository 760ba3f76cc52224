package sessions_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/oidc-session/oidc_session/internal/testenv"
	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/storetest"
)

// fuzzCookieSecret sealed the valid cookie values of the committed
// FuzzCookieStoreLoad corpus (sessions of storetest.Binding).
const fuzzCookieSecret = "fuzz-cookie-secret-0123456789-0123456789"

// withoutCRLF drops the CR and LF bytes that base64 decoding ignores.
func withoutCRLF(s string) string {
	return strings.NewReplacer("\r", "", "\n", "").Replace(s)
}

// FuzzCookieStoreLoad feeds session cookie values to CookieStore.Load
// (FuzzDecode covers the plaintext codec behind it). A value loads only if
// it is, unchanged, one the server sealed (those of the committed corpus):
// no edit of a sealed value, and nothing made up, passes. A value that
// loads never loads for another issuer/client nor under another secret,
// still loads after a secret rotation, and survives Save and Load
// unchanged. Every refusal is ErrNoSession, never a half session.
func FuzzCookieStoreLoad(f *testing.F) {
	env := storetest.NewEnvWith(f, storetest.Binding, fuzzCookieSecret)
	store := newCookieStore(f, env)
	otherClient := newCookieStore(f, storetest.NewEnvWith(f, "https://dex.example.com/dex\x00other-client", fuzzCookieSecret))
	otherSecret := newCookieStore(f, storetest.NewEnvWith(f, storetest.Binding, strings.Repeat("x", 40)))
	rotated := newCookieStore(f, storetest.NewEnvWith(f, storetest.Binding, strings.Repeat("n", 40), fuzzCookieSecret))

	sealed := map[string]bool{}
	for _, args := range testenv.CorpusStrings(f, "FuzzCookieStoreLoad") {
		if len(args) == 1 {
			sealed[args[0]] = true
		}
	}
	// Near misses of the sealed values (the same in every fuzzing process).
	for _, v := range []string{"", "A", "AQ", strings.Repeat("A", 80), strings.Repeat("_", 5000)} {
		f.Add(v)
	}
	for _, args := range testenv.CorpusStrings(f, "FuzzCookieStoreLoad") {
		if v := args[0]; len(v) > 8 {
			f.Add(v[:len(v)-1])
			f.Add(v + "A")
			f.Add(v[:10] + "A" + v[11:])
			f.Add(strings.ReplaceAll(strings.ReplaceAll(v, "-", "+"), "_", "/"))
		}
	}
	f.Fuzz(func(t *testing.T, value string) {
		ctx := t.Context()
		s, err := store.Load(ctx, value)
		if err != nil {
			if s != nil || !errors.Is(err, sessions.ErrNoSession) {
				t.Fatalf("refusal is (%v, %v), want (nil, ErrNoSession)", s, err)
			}
			return
		}
		if s == nil {
			t.Fatal("Load returned neither a session nor an error")
		}
		// Go's base64 decoder skips CR and LF even in strict mode; no HTTP
		// header can carry them (the server refuses the request), so they
		// are no other spelling a client could send.
		if !sealed[withoutCRLF(value)] {
			t.Fatalf("loaded a cookie value the server never sealed: %q", value)
		}
		for name, st := range map[string]*sessions.CookieStore{"another client": otherClient, "another secret": otherSecret} {
			if _, err := st.Load(ctx, value); !errors.Is(err, sessions.ErrNoSession) {
				t.Fatalf("a value sealed for this client with this secret loads for %s: %v", name, err)
			}
		}
		if _, err := rotated.Load(ctx, value); err != nil {
			t.Fatalf("the value stops loading once the secret is rotated: %v", err)
		}
		v2, err := store.Save(ctx, "", s)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := store.Load(ctx, v2)
		if err != nil {
			t.Fatalf("a re-saved session does not load: %v", err)
		}
		if d := storetest.Diff(s, s2); d != "" {
			t.Fatalf("Save and Load changed the session:\n%s", d)
		}
	})
}
