package oauth2proxy

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func testState() *state {
	created := time.Date(2026, 12, 1, 10, 0, 0, 123, time.UTC)
	expires := created.Add(time.Hour)
	return &state{
		CreatedAt: &created, ExpiresOn: &expires,
		AccessToken: "at", IDToken: "it", RefreshToken: "rt",
		Email: "e@example.com", User: "u", Groups: []string{"g1", "g2"}, PreferredUsername: "pu",
	}
}

func TestStateFieldNames(t *testing.T) {
	// The short names are the format: a renamed tag would read nothing.
	packed, err := msgpack.Marshal(testState())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := msgpack.Unmarshal(packed, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ca", "eo", "at", "it", "rt", "e", "u", "g", "pu"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no field %q in %v", k, m)
		}
	}
	// Fields this package does not read (the login nonce, anything a later
	// version adds) are skipped.
	m["n"] = []byte{1, 2, 3}
	m["zz"] = map[string]any{"future": true}
	packed, _ = msgpack.Marshal(m)
	st, err := decodeState(packed)
	if err != nil || st.Email != "e@example.com" || !slices.Equal(st.Groups, []string{"g1", "g2"}) {
		t.Fatalf("decode with extra fields: %+v, %v", st, err)
	}
}

func TestDecodeCookieSession(t *testing.T) {
	cs, err := newCookieSecret(encodedSecret)
	if err != nil {
		t.Fatal(err)
	}
	st, err := cs.decodeCookieSession(encodeCookieSession(t, encodedSecret, testState()))
	if err != nil {
		t.Fatal(err)
	}
	var s Session
	st.fill(&s)
	want := testState()
	if s.Email != want.Email || s.User != want.User || s.PreferredUsername != want.PreferredUsername ||
		s.AccessToken != "at" || s.IDToken != "it" || s.RefreshToken != "rt" || !slices.Equal(s.Groups, want.Groups) ||
		!s.CreatedAt.Equal(*want.CreatedAt) || !s.ExpiresOn.Equal(*want.ExpiresOn) || s.CreatedAt.Location() != time.UTC {
		t.Fatalf("got %+v", s)
	}

	refuse := map[string][]byte{
		"shorter than the IV": make([]byte, 15),
		"IV only":             make([]byte, 16),
		"not LZ4":             cfbPayload(t, encodedSecret, []byte("plain msgpack, no frame")),
		"another key":         encodeCookieSession(t, otherSecret, testState()),
		"LZ4 of non-msgpack":  cfbPayload(t, encodedSecret, lz4Frame(t, []byte{0xc1, 0xc1})),
		// 64 MiB of zeros compress to a few hundred KB of LZ4: a holder
		// of the secret could send it; it stops at maxStateLen.
		"decompression bomb": cfbPayload(t, encodedSecret, lz4Frame(t, make([]byte, 64<<20))),
	}
	for what, payload := range refuse {
		if _, err := cs.decodeCookieSession(payload); !errors.Is(err, ErrDecrypt) {
			t.Errorf("%s: %v", what, err)
		}
	}
}

func TestOpenRecord(t *testing.T) {
	tk := newTicket(DefaultCookieName)
	record := sealRecord(t, tk.secret, testState())
	st, err := openRecord(tk.secret, record)
	if err != nil || st.Email != "e@example.com" {
		t.Fatalf("open: %+v, %v", st, err)
	}
	flipped := bytes.Clone(record)
	flipped[len(flipped)/2] ^= 1
	refuse := map[string][]byte{
		"empty":          nil,
		"nonce only":     record[:12],
		"shorter by one": record[:len(record)-1],
		"one bit":        flipped,
		"another secret": sealRecord(t, newTicket(DefaultCookieName).secret, testState()),
	}
	for what, rec := range refuse {
		if _, err := openRecord(tk.secret, rec); !errors.Is(err, ErrDecrypt) {
			t.Errorf("%s: %v", what, err)
		}
	}
}
