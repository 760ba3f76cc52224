package sessions_test

import (
	"strings"
	"testing"

	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/storetest"
)

// FuzzParseTicket: a ticket parses only in its canonical spelling (what
// parses prints back unchanged, but for CR/LF, which no HTTP header carries) and only for the cookie name it was made
// for, whatever dots and dashes that name holds; a minted ticket always
// parses back to itself, secret included (it opens what it sealed).
func FuzzParseTicket(f *testing.F) {
	env := storetest.NewEnvWith(f, storetest.Binding, strings.Repeat("k", 32))
	sess := storetest.DexSession(false)
	for _, name := range []string{"_oauth2_proxy", "my.app-session", "a.b.c", "-", ".", "x-0123456789abcdef0123456789abcdef"} {
		f.Add(name, sessions.NewTicket(name).Value())
	}
	f.Fuzz(func(t *testing.T, cookieName, value string) {
		if tk, ok := sessions.ParseTicket(cookieName, value); ok {
			// CR and LF are skipped by base64 decoding (see withoutCRLF).
			if tk.Value() != withoutCRLF(value) {
				t.Fatalf("%q parsed, but prints back as %q", value, tk.Value())
			}
			id, found := strings.CutPrefix(tk.Handle, cookieName+"-")
			if !found || len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
				t.Fatalf("handle %q is not %q-<32 lowercase hex>", tk.Handle, cookieName)
			}
		} else if tk != nil {
			t.Fatal("ParseTicket returned a ticket and false")
		}

		minted := sessions.NewTicket(cookieName)
		back, ok := sessions.ParseTicket(cookieName, minted.Value())
		if !ok || back.Handle != minted.Handle || back.Value() != minted.Value() {
			t.Fatalf("a ticket minted for %q does not parse back: %q", cookieName, minted.Value())
		}
		for _, other := range []string{cookieName + "-", cookieName + ".", strings.TrimSuffix(cookieName, cookieName[len(cookieName)/2:]), value} {
			if other == cookieName {
				continue
			}
			if _, ok := sessions.ParseTicket(other, minted.Value()); ok {
				t.Fatalf("a ticket for %q parses as one for %q", cookieName, other)
			}
		}
		sealed, err := minted.Seal(sess, env)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := back.Open(sealed, env); err != nil {
			t.Fatalf("the parsed ticket does not open what the minted one sealed: %v", err)
		}
	})
}
