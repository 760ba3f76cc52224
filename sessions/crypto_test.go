package sessions_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/oidc-session/oidc_session/sessions"
)

const (
	secretA = "0123456789abcdef0123456789abcdef"         // exactly 32
	secretB = "another secret, also long enough to use!" // > 32
)

func mustKeyring(t testing.TB, purpose string, secrets ...string) *sessions.Keyring {
	t.Helper()
	kr, err := sessions.NewKeyring(purpose, secrets...)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return kr
}

func TestKeyringSecretLength(t *testing.T) {
	for _, secrets := range [][]string{
		{""},
		{"short"},
		{secretA[:31]},
		{secretA, secretA[:31]}, // a short old secret is refused too
	} {
		_, err := sessions.NewKeyring("session", secrets...)
		if err == nil {
			t.Errorf("NewKeyring(%q) accepted a secret shorter than 32", secrets)
			continue
		}
		if !strings.Contains(err.Error(), "at least 32") {
			t.Errorf("NewKeyring(%q) error %q does not say \"at least 32\"", secrets, err)
		}
	}
	if _, err := sessions.NewKeyring("session"); err == nil {
		t.Error("NewKeyring with no secret succeeded")
	}
	if _, err := sessions.NewKeyring("session", secretA); err != nil {
		t.Errorf("a 32-character secret was refused: %v", err)
	}
}

func TestKeyringRoundTrip(t *testing.T) {
	kr := mustKeyring(t, "session", secretA)
	aad := []byte("https://idp.example.com\x00client")
	for _, plain := range [][]byte{nil, {0}, []byte("hello"), bytes.Repeat([]byte{0xAB}, 5000)} {
		sealed := kr.Seal(plain, aad)
		if len(sealed) != len(plain)+sessions.SealOverhead {
			t.Errorf("sealed %d bytes into %d, want %d", len(plain), len(sealed), len(plain)+sessions.SealOverhead)
		}
		if len(plain) > 4 && bytes.Contains(sealed, plain[:5]) {
			t.Errorf("sealed value contains the plaintext")
		}
		got, err := kr.Open(sealed, aad)
		if err != nil {
			t.Fatalf("Open(Seal(%d bytes)): %v", len(plain), err)
		}
		if !bytes.Equal(got, plain) {
			t.Errorf("Open(Seal(x)) = %q, want %q", got, plain)
		}
		// Another keyring from the same secret and purpose (another
		// instance, a restart) opens it too.
		if _, err := mustKeyring(t, "session", secretA).Open(sealed, aad); err != nil {
			t.Errorf("a keyring made from the same secret cannot open: %v", err)
		}
	}
}

func TestKeyringSealsDiffer(t *testing.T) {
	kr := mustKeyring(t, "session", secretA)
	plain := []byte("the same plaintext")
	a, b := kr.Seal(plain, nil), kr.Seal(plain, nil)
	if bytes.Equal(a, b) {
		t.Fatal("two Seals of the same plaintext are identical")
	}
	// Same header (version, key id), different nonce.
	if !bytes.Equal(a[:5], b[:5]) {
		t.Errorf("headers differ: %x vs %x", a[:5], b[:5])
	}
	if bytes.Equal(a[5:17], b[5:17]) {
		t.Error("two Seals used the same nonce")
	}
}

func TestKeyringOpenRejects(t *testing.T) {
	kr := mustKeyring(t, "session", secretA)
	aad := []byte("binding")
	plain := []byte("a sample plaintext of a few dozen bytes, enough for a body")
	sealed := kr.Seal(plain, aad)
	if _, err := kr.Open(sealed, aad); err != nil {
		t.Fatalf("positive control: %v", err)
	}

	t.Run("Truncated", func(t *testing.T) {
		// Every length: below the overhead the header or tag is missing,
		// above it the tag no longer matches.
		for n := 0; n < len(sealed); n++ {
			if got, err := kr.Open(sealed[:n], aad); err == nil {
				t.Errorf("Open of the first %d of %d bytes succeeded: %q", n, len(sealed), got)
			}
		}
		if _, err := kr.Open(nil, aad); err == nil {
			t.Error("Open(nil) succeeded")
		}
	})

	t.Run("Extended", func(t *testing.T) {
		if _, err := kr.Open(append(bytes.Clone(sealed), 0), aad); err == nil {
			t.Error("Open of the value with a byte appended succeeded")
		}
	})

	t.Run("BitFlips", func(t *testing.T) {
		for i := range sealed {
			for bit := range 8 {
				b := bytes.Clone(sealed)
				b[i] ^= 1 << bit
				if _, err := kr.Open(b, aad); err == nil {
					t.Errorf("Open succeeded with bit %d of byte %d flipped", bit, i)
				}
			}
		}
	})

	t.Run("WrongAAD", func(t *testing.T) {
		for _, bad := range [][]byte{nil, []byte("Binding"), []byte("binding\x00"), aad[:len(aad)-1]} {
			if _, err := kr.Open(sealed, bad); err == nil {
				t.Errorf("Open with aad %q succeeded (sealed with %q)", bad, aad)
			}
		}
	})

	t.Run("WrongPurpose", func(t *testing.T) {
		flow := mustKeyring(t, "flow", secretA)
		if _, err := flow.Open(sealed, aad); err == nil {
			t.Error(`keyring "flow" opened a value sealed by keyring "session" with the same secret`)
		}
		if _, err := kr.Open(flow.Seal(plain, aad), aad); err == nil {
			t.Error(`keyring "session" opened a value sealed by keyring "flow" with the same secret`)
		}
	})

	t.Run("WrongSecret", func(t *testing.T) {
		if _, err := mustKeyring(t, "session", secretB).Open(sealed, aad); err == nil {
			t.Error("a keyring with another secret opened the value")
		}
	})
}

func TestKeyringRotation(t *testing.T) {
	old := mustKeyring(t, "session", secretA)
	rotated := mustKeyring(t, "session", secretB, secretA)
	newOnly := mustKeyring(t, "session", secretB)

	fromOld := old.Seal([]byte("old"), nil)
	if got, err := rotated.Open(fromOld, nil); err != nil || string(got) != "old" {
		t.Errorf("[new, old] cannot open what [old] sealed: %q, %v", got, err)
	}
	if _, err := newOnly.Open(fromOld, nil); err == nil {
		t.Error("[new] opened what [old] sealed")
	}
	fromRotated := rotated.Seal([]byte("new"), nil)
	if got, err := newOnly.Open(fromRotated, nil); err != nil || string(got) != "new" {
		t.Errorf("[new] cannot open what [new, old] sealed: %q, %v", got, err)
	}
	if _, err := old.Open(fromRotated, nil); err == nil {
		t.Error("[old] opened what [new, old] sealed: Seal must use the first secret")
	}
	// The key id differs between secrets and is not the secret itself.
	if bytes.Equal(fromOld[1:5], fromRotated[1:5]) {
		t.Errorf("two secrets have the same key id %x", fromOld[1:5])
	}
	if bytes.Contains([]byte(secretA), fromOld[1:5]) {
		t.Error("the key id is a piece of the secret")
	}
}

// Each purpose has its own key: the index MACs are not keyed with the AES
// key (v1 did that), and per-session keys are not salted with it; records
// and indexes written by v1 are still read.
func TestKeyringKeySeparation(t *testing.T) {
	kr := mustKeyring(t, "session", secretA, secretB)
	macs := kr.MACs("sub\x00alice")
	if len(macs) != 4 {
		t.Fatalf("MACs returned %d names, want 2 keys x (current, v1)", len(macs))
	}
	m := hmac.New(sha256.New, kr.AESKey())
	m.Write([]byte("oidc_session/v1/index\x00sub\x00alice"))
	v1 := hex.EncodeToString(m.Sum(nil)[:16])
	if macs[0] == v1 {
		t.Error("the index MAC to write is keyed with the AES key")
	}
	if macs[2] != v1 {
		t.Errorf("v1 index names are not looked up: %q not at [2] of %q", v1, macs)
	}

	secret := []byte("0123456789abcdef")
	aad := []byte("handle\x00binding")
	sealed, err := kr.SealSession(secret, []byte("new record"), aad)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := kr.OpenSession(secret, sealed, aad); err != nil || string(got) != "new record" {
		t.Fatalf("OpenSession of a current record: %q, %v", got, err)
	}
	old := kr.SealSessionV1(secret, []byte("v1 record"), aad)
	if got, err := kr.OpenSession(secret, old, aad); err != nil || string(got) != "v1 record" {
		t.Fatalf("OpenSession of a v1 record: %q, %v", got, err)
	}
	if _, err := kr.OpenSession([]byte("fedcba9876543210"), old, aad); err == nil {
		t.Error("a v1 record opened with another session secret")
	}
}
