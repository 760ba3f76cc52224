package sessions_test

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/storetest"
)

func decodeNoPanic(t testing.TB, b []byte) (s *sessions.Session, err error) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("Decode(%x) panicked: %v", b, p)
		}
	}()
	return sessions.Decode(b)
}

func roundTrip(t *testing.T, s *sessions.Session) *sessions.Session {
	t.Helper()
	rec := sessions.Encode(s)
	got, err := sessions.Decode(rec)
	if err != nil {
		t.Fatalf("Decode(Encode(s)): %v", err)
	}
	if d := storetest.Diff(s, got); d != "" {
		t.Fatalf("Decode(Encode(s)) differs from s:\n%s", d)
	}
	return got
}

func TestCodecRoundTrip(t *testing.T) {
	now := storetest.Now()
	for name, s := range map[string]*sessions.Session{
		"full":          storetest.FullSession(),
		"dex":           storetest.DexSession(true),
		"dex no tokens": storetest.DexSession(false),
		"empty":         {},
		"identity only": {Subject: "s", Email: "e@x", Name: "n", Groups: []string{""}, Claims: map[string][]string{"": nil}},
		"times only":    {CreatedAt: now, ExpiresAt: now.Add(time.Hour), TokenExpiry: time.Unix(1, 0), LastSeen: time.Unix(-1, 0)},
		"far future":    {ExpiresAt: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)},
		"pre-1970":      {CreatedAt: time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)},
		"long strings":  {Subject: strings.Repeat("s", 70000), Groups: []string{strings.Repeat("g", 300)}},
		"dpop key":      {Subject: "s", DPoPKey: dpopKey()},
	} {
		t.Run(name, func(t *testing.T) {
			roundTrip(t, s)
			if a, b := sessions.Encode(s), sessions.Encode(s); !bytes.Equal(a, b) {
				t.Error("Encode is not deterministic")
			}
			lazyRoundTrip(t, s, sessions.Encode(s))
		})
	}
}

// lazyRoundTrip checks that a record read by DecodeLazy has the identity
// and times of s, no tokens until DecodeTokens (a version 3 record) and
// then those of s, and
// that encoding it before its tokens are decoded keeps them.
func lazyRoundTrip(t *testing.T, s *sessions.Session, rec []byte) {
	t.Helper()
	lazy, err := sessions.DecodeLazy(rec)
	if err != nil {
		t.Fatalf("DecodeLazy: %v", err)
	}
	if rec[0] == 3 && lazy.IDToken+lazy.AccessToken+lazy.RefreshToken != "" {
		t.Error("DecodeLazy decoded the tokens of a version 3 record")
	}
	if lazy.HasRefreshToken() != (s.RefreshToken != "") {
		t.Errorf("HasRefreshToken() = %v before DecodeTokens", lazy.HasRefreshToken())
	}
	again, err := sessions.Decode(sessions.Encode(lazy))
	if err != nil {
		t.Fatalf("Decode(Encode(lazy)): %v", err)
	}
	if d := storetest.Diff(s, again); d != "" {
		t.Errorf("a session encoded before its tokens were decoded lost them:\n%s", d)
	}
	if d := storetest.Diff(s, lazy.WithoutTokens()); d != "" && !strings.Contains(d, "Token") && !strings.Contains(d, "DPoPKey") {
		t.Errorf("DecodeLazy's identity differs:\n%s", d)
	}
	if err := lazy.DecodeTokens(); err != nil {
		t.Fatalf("DecodeTokens: %v", err)
	}
	if d := storetest.Diff(s, lazy); d != "" {
		t.Errorf("DecodeLazy + DecodeTokens differs:\n%s", d)
	}
}

// A lazy session without its tokens has none left to encode.
func TestWithoutTokensOfLazySession(t *testing.T) {
	s := storetest.DexSession(true)
	lazy, err := sessions.DecodeLazy(sessions.Encode(s))
	if err != nil {
		t.Fatal(err)
	}
	got, err := sessions.Decode(sessions.Encode(lazy.WithoutTokens()))
	if err != nil {
		t.Fatal(err)
	}
	if d := storetest.Diff(s.WithoutTokens(), got); d != "" {
		t.Errorf("WithoutTokens of a lazy session: %+v", got)
	}
}

func TestCodecCompressesFullSession(t *testing.T) {
	s := storetest.DexSession(true)
	rec := sessions.Encode(s)
	if rec[0] != 3 {
		t.Errorf("version byte %d, want 3", rec[0])
	}
	if rec[1]&1 == 0 {
		t.Error("a Dex session with tokens was not compressed")
	}
	if raw := len(s.IDToken) + len(s.AccessToken) + len(s.RefreshToken); len(rec) >= raw*3/4 {
		t.Errorf("record is %d bytes, tokens alone %d as text: JWTs are not stored decoded/compressed", len(rec), raw)
	}
	small := sessions.Encode(&sessions.Session{Subject: "x"})
	if small[1]&1 != 0 {
		t.Error("a tiny session was compressed")
	}
}

func TestCodecTokensVerbatim(t *testing.T) {
	jwt := storetest.FakeJWT(map[string]any{"alg": "RS256"}, map[string]any{"sub": "x"})
	segs := strings.Split(jwt, ".")

	// A canonical segment of 7 bytes ends in a character with 4 padding
	// bits; setting one gives another spelling of the same bytes.
	canon := base64.RawURLEncoding.EncodeToString([]byte(`{"a":1}`))
	nonCanon := canon[:len(canon)-1] + string(canon[len(canon)-1]+1)
	if b, err := base64.RawURLEncoding.DecodeString(nonCanon); err != nil || string(b) != `{"a":1}` || nonCanon == canon {
		t.Fatalf("test setup: %q is not a non-canonical spelling of %q (%q, %v)", nonCanon, canon, b, err)
	}

	tokens := map[string]string{
		"jwt":                    jwt,
		"opaque":                 "ya29.a0AfH6SMBx-opaque_token",
		"opaque 40":              "Chl6bXl2b2VxZnJ0Y2V4dGFvYnN3ZGNidmNlEhlv",
		"two dots, bad base64":   "eyJhbGciOiJub25lIn0.not*base64!.sig",
		"two dots, bad length":   "a.b.c",
		"empty parts":            "..",
		"non-canonical segment":  segs[0] + "." + nonCanon + "." + segs[2],
		"non-canonical last seg": segs[0] + "." + segs[1] + "." + nonCanon,
		"padded segments":        base64.URLEncoding.EncodeToString([]byte("{\"alg\":\"x\"}")) + "." + segs[1] + "." + segs[2],
		"std alphabet":           strings.ReplaceAll(strings.ReplaceAll(jwt, "-", "+"), "_", "/"),
		"four parts":             jwt + ".extra",
		"JWE-like five parts":    "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d",
		"leading dot":            "." + segs[1] + "." + segs[2],
		"whitespace":             segs[0] + ".\n" + segs[1] + "." + segs[2],
		"binary":                 "\x00\xff.\x01.\x02",
	}
	for name, tok := range tokens {
		t.Run(name, func(t *testing.T) {
			s := &sessions.Session{IDToken: tok, AccessToken: tok, RefreshToken: tok}
			got := roundTrip(t, s)
			for _, g := range []string{got.IDToken, got.AccessToken, got.RefreshToken} {
				if g != tok {
					t.Errorf("token altered:\n got %q\nwant %q", g, tok)
				}
			}
		})
	}

	// The JWT form is used where it can be: a small (uncompressed) record
	// holds the signature's raw bytes, not their base64url text.
	sig := bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 16)
	small := segs[0] + ".eyJzdWIiOiJ4In0." + base64.RawURLEncoding.EncodeToString(sig)
	rec := sessions.Encode(&sessions.Session{IDToken: small})
	if rec[1] != 0 {
		t.Fatal("test setup: small record is compressed")
	}
	if !bytes.Contains(rec, sig) || len(rec) >= len(small) {
		t.Errorf("a %d-byte JWT encodes into %d bytes without its decoded signature: not stored decoded", len(small), len(rec))
	}
}

func validRecords() map[string][]byte {
	return map[string][]byte{
		"compressed":   sessions.Encode(storetest.FullSession()),
		"uncompressed": sessions.Encode(&sessions.Session{Subject: "u", Groups: []string{"g"}, IDToken: "a.b.c", ExpiresAt: time.Unix(1e9, 0)}),
		"empty":        sessions.Encode(&sessions.Session{}),
		"dpop key":     sessions.Encode(&sessions.Session{Subject: "u", DPoPKey: dpopKey()}),
	}
}

// dpopKey is a DPoP key's binary form as the handler stores it (version
// byte and P-256 scalar); the codec keeps it as opaque bytes.
func dpopKey() []byte { return append([]byte{1}, bytes.Repeat([]byte{0x5a}, 32)...) }

// TestCodecDPoPKey: the DPoP key is an optional field at the end of the
// token section, decoded with the tokens: sessions without one encode as
// before it existed.
func TestCodecDPoPKey(t *testing.T) {
	plain, keyed := storetest.FullSession(), storetest.FullSession()
	plain.DPoPKey = nil
	got := roundTrip(t, keyed)
	if !bytes.Equal(got.DPoPKey, keyed.DPoPKey) {
		t.Errorf("DPoP key %x after the round trip", got.DPoPKey)
	}
	if s, _ := sessions.Decode(sessions.Encode(plain)); s.DPoPKey != nil {
		t.Error("a session without a key came back with one")
	}
}

func TestDecodeTruncated(t *testing.T) {
	recs := validRecords()
	if recs["compressed"][1]&1 != 1 || recs["uncompressed"][1] != 0 {
		t.Fatal("test setup: the records are not compressed/uncompressed as named")
	}
	for name, rec := range recs {
		if _, err := sessions.Decode(rec); err != nil {
			t.Fatalf("%s: positive control: %v", name, err)
		}
		for n := range len(rec) {
			if s, err := decodeNoPanic(t, rec[:n]); err == nil || s != nil {
				t.Errorf("%s: Decode of the first %d of %d bytes = (%v, %v), want an error", name, n, len(rec), s, err)
			}
		}
		if _, err := decodeNoPanic(t, append(bytes.Clone(rec), 0)); err == nil && rec[1] == 0 {
			t.Errorf("%s: Decode accepted a trailing byte", name)
		}
	}
	for _, bad := range [][]byte{nil, {}, {1}, {0, 0}, {2, 0}, {0xff, 0xff}} {
		if _, err := decodeNoPanic(t, bad); err == nil {
			t.Errorf("Decode(%x) succeeded", bad)
		}
	}
}

func TestDecodeRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		b := make([]byte, r.IntN(400))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		// Mostly a valid header, so the body parser gets exercised.
		if len(b) >= 2 && i%10 != 0 {
			b[0], b[1] = byte(1+2*(i/2%2)), byte(i%2) // versions 1 and 3
		}
		if s, err := decodeNoPanic(t, b); err == nil || s != nil {
			t.Errorf("Decode of %d random bytes (%x…) succeeded", len(b), b[:min(len(b), 16)])
		}
	}
	// Random bytes in place of a valid record's body, keeping its start.
	rec := validRecords()["uncompressed"]
	for n := 2; n < len(rec); n++ {
		for range 50 {
			b := bytes.Clone(rec)
			for j := n; j < len(b); j++ {
				b[j] = byte(r.Uint32())
			}
			if bytes.Equal(b, rec) {
				continue
			}
			_, _ = decodeNoPanic(t, b) // may be valid; must not panic
		}
	}
}

func deflateRaw(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDecodeRefusesInflationBomb(t *testing.T) {
	// A version 3 record of an identity, with a hand-made token section:
	// it ends with the token presence byte (none), the section's length
	// and the section (three empty raw tokens).
	ident := sessions.Encode(&sessions.Session{Subject: "hand-made", Email: "x@example.com"})
	tail := []byte{0, 6, 0, 0, 0, 0, 0, 0}
	if ident[1] != 0 || !bytes.HasSuffix(ident, tail) {
		t.Fatalf("test setup: small record is compressed or has tokens: %x", ident)
	}
	withSection := func(present byte, z []byte) []byte {
		b := append([]byte{ident[0], 1}, ident[2:len(ident)-len(tail)]...)
		b = append(b, present)
		b = binary.AppendUvarint(b, uint64(len(z)))
		return append(b, z...)
	}
	bombs := map[string][]byte{
		"v3 token section": withSection(1, deflateRaw(t, make([]byte, 2<<20))),
		"v2 body":          append([]byte{2, 1}, deflateRaw(t, make([]byte, 2<<20))...),
	}
	// Positive controls: hand-made compressed records are understood, so
	// the refusals below are about size, not format.
	s, err := sessions.Decode(withSection(1, deflateRaw(t, []byte{0, 3, 'a', 'b', 'c', 0, 0, 0, 0})))
	if err != nil || s.Subject != "hand-made" || s.IDToken != "abc" {
		t.Fatalf("hand-made compressed v3 record: (%v, %v)", s, err)
	}
	v2, err := hex.DecodeString(fixture(t, "v2", "codec"))
	if err != nil || v2[0] != 2 || v2[1] != 1 {
		t.Fatalf("fixture: not a compressed v2 record (%v)", err)
	}
	if _, err := sessions.Decode(v2); err != nil {
		t.Fatalf("compressed v2 record: %v", err)
	}

	for name, bomb := range bombs {
		t.Logf("%s bomb: %d bytes inflating to 2 MB", name, len(bomb))
		if s, err := decodeNoPanic(t, bomb); err == nil || s != nil {
			t.Errorf("Decode of a %s inflating to 2 MB = (%v, %v), want an error", name, s, err)
		}
	}

	// Just under the bound decodes; just over does not.
	under := &sessions.Session{IDToken: strings.Repeat("a", sessions.MaxDecoded-100)}
	roundTrip(t, under)
	over := &sessions.Session{IDToken: strings.Repeat("a", sessions.MaxDecoded+1)}
	if _, err := sessions.Decode(sessions.Encode(over)); err == nil {
		t.Error("a record whose token section inflates past the bound was decoded")
	}
}

// TestCookieSize measures what a realistic Dex session costs in cookie
// bytes, with and without tokens.
func TestCookieSize(t *testing.T) {
	env := storetest.NewEnv(t)
	store := newCookieStore(t, env)
	for _, tc := range []struct {
		tokens bool
		limit  int
	}{{true, 4000}, {false, 600}} {
		s := storetest.DexSession(tc.tokens)
		encoded := sessions.Encode(s)
		sealed := env.Keys.Seal(encoded, env.Binding)
		value, err := store.Save(t.Context(), "", s)
		if err != nil {
			t.Fatal(err)
		}
		if len(value) != base64.RawURLEncoding.EncodedLen(len(sealed)) {
			t.Errorf("cookie value is %d bytes, expected base64url of the %d sealed bytes", len(value), len(sealed))
		}
		if tc.tokens {
			t.Logf("tokens: id %d, access %d, refresh %d bytes (%d as text)", len(s.IDToken), len(s.AccessToken),
				len(s.RefreshToken), len(s.IDToken)+len(s.AccessToken)+len(s.RefreshToken))
		}
		t.Logf("tokens=%v: encoded %d, sealed %d, cookie value %d bytes", tc.tokens, len(encoded), len(sealed), len(value))
		if len(value) >= tc.limit {
			t.Errorf("tokens=%v: cookie value is %d bytes, want < %d", tc.tokens, len(value), tc.limit)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, rec := range validRecords() {
		f.Add(rec)
	}
	f.Add(sessions.Encode(storetest.DexSession(false)))
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 1, 0x03, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := sessions.Decode(b)
		if err != nil {
			if s != nil {
				t.Fatal("Decode returned a session and an error")
			}
			return
		}
		again, err := sessions.Decode(sessions.Encode(s))
		if err != nil {
			t.Fatalf("Decode accepted %x but not its re-encoding: %v", b, err)
		}
		if d := storetest.Diff(s, again); d != "" {
			t.Fatalf("re-encoding changed the session:\n%s", d)
		}
	})
}

// fixture reads a value committed in testdata/<version>: v1 written by
// the code before codec version 2 (and before the per-purpose keys), v2
// by the code before codec version 3.
func fixture(t *testing.T, version, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + version + "/" + name + ".txt")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func v1Fixture(t *testing.T, name string) string { return fixture(t, "v1", name) }

// v1Env is the environment the testdata/v1 values were made in.
func v1Env(t *testing.T) sessions.Env {
	t.Helper()
	kr, err := sessions.NewKeyring("session", "v1-secret-0123456789-0123456789-abcdef")
	if err != nil {
		t.Fatal(err)
	}
	return sessions.Env{CookieName: "_oauth2_proxy", Keys: kr, Binding: []byte("https://idp.example.com\x00app")}
}

// checkV1Session checks a session read from a v1 value against what was
// stored (storetest.FullSession at fixed times).
func checkV1Session(t *testing.T, s *sessions.Session) {
	t.Helper()
	want := storetest.FullSession()
	if s.Issuer != "" || s.Subject != want.Subject || s.Email != want.Email || !s.EmailVerified ||
		s.SID != want.SID || strings.Join(s.Groups, "|") != strings.Join(want.Groups, "|") ||
		len(s.Claims) != len(want.Claims) || strings.Count(s.IDToken, ".") != 2 || len(s.RefreshToken) != 40 ||
		!s.CreatedAt.Equal(time.UnixMilli(1800000000000)) || !s.ExpiresAt.Equal(time.UnixMilli(4102444800000)) {
		t.Errorf("v1 session read as %+v", s)
	}
}

// Records, cookies and server-side records written before codec version 2
// keep working: a cookie or Redis session made before an upgrade survives it.
func TestV1ValuesStillRead(t *testing.T) {
	rec, err := hex.DecodeString(v1Fixture(t, "codec"))
	if err != nil || rec[0] != 1 {
		t.Fatalf("fixture: %v", err)
	}
	s, err := sessions.Decode(rec)
	if err != nil {
		t.Fatalf("Decode of a v1 record: %v", err)
	}
	checkV1Session(t, s)
	if again, err := sessions.Decode(sessions.Encode(s)); err != nil || storetest.Diff(s, again) != "" {
		t.Errorf("a v1 session re-encoded as v2 changed: %v", err)
	}

	env := v1Env(t)
	s, err = newCookieStore(t, env).Load(t.Context(), v1Fixture(t, "cookie"))
	if err != nil {
		t.Fatalf("cookie store Load of a v1 cookie: %v", err)
	}
	checkV1Session(t, s)

	tk, ok := sessions.ParseTicket(env.CookieName, v1Fixture(t, "ticket"))
	sealed, err := hex.DecodeString(v1Fixture(t, "record"))
	if !ok || err != nil {
		t.Fatal("fixture: bad ticket or record")
	}
	if s, err = tk.Open(sealed, env); err != nil {
		t.Fatalf("a v1 server-side record: %v", err)
	}
	checkV1Session(t, s)
	if macs := env.Keys.MACs("sub\x00" + s.Subject); !slices.Contains(macs, v1Fixture(t, "submac")) {
		t.Errorf("the v1 subject index name %s is not looked up (%v)", v1Fixture(t, "submac"), macs)
	}
}

// Cookies and server-side records written by codec version 2 (the
// session of testdata/v2/session.json) keep working after version 3.
func TestV2ValuesStillRead(t *testing.T) {
	raw, err := os.ReadFile("testdata/v2/session.json")
	if err != nil {
		t.Fatal(err)
	}
	want := &sessions.Session{}
	if err := json.Unmarshal(raw, want); err != nil {
		t.Fatal(err)
	}
	check := func(what string, s *sessions.Session, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if d := storetest.Diff(want, s); d != "" {
			t.Errorf("%s differs:\n%s", what, d)
		}
	}
	rec, err := hex.DecodeString(fixture(t, "v2", "codec"))
	if err != nil || rec[0] != 2 {
		t.Fatalf("fixture: %v", err)
	}
	s, err := sessions.Decode(rec)
	check("v2 record", s, err)
	lazy, err := sessions.DecodeLazy(rec)
	check("v2 record read lazily", lazy, err)
	again, err := sessions.Decode(sessions.Encode(s))
	check("v2 session re-encoded as v3", again, err)

	env := v1Env(t)
	s, err = newCookieStore(t, env).Load(t.Context(), fixture(t, "v2", "cookie"))
	check("v2 cookie", s, err)
	s, err = newCookieStore(t, env).LoadLazy(t.Context(), fixture(t, "v2", "cookie"))
	check("v2 cookie read lazily", s, err)

	tk, ok := sessions.ParseTicket(env.CookieName, fixture(t, "v2", "ticket"))
	sealed, err := hex.DecodeString(fixture(t, "v2", "record"))
	if !ok || err != nil {
		t.Fatal("fixture: bad ticket or record")
	}
	s, err = tk.Open(sealed, env)
	check("v2 server-side record", s, err)
	// Written by the code before version 3 too: a session with a DPoP key
	// (flagDPoPKey) and one with 260 groups (what version 3 writes as
	// version 2).
	for _, name := range []string{"dpop", "big"} {
		want = v2Session(t, name)
		rec, err := hex.DecodeString(fixture(t, "v2", name))
		if err != nil || rec[0] != 2 {
			t.Fatalf("fixture %s: %v", name, err)
		}
		s, err := sessions.Decode(rec)
		check("v2 record "+name, s, err)
		s, err = sessions.DecodeLazy(rec)
		check("v2 record "+name+" read lazily", s, err)
	}
}

// v2Session reads testdata/v2/<name>.json, the session of the record in
// testdata/v2/<name>.txt.
func v2Session(t *testing.T, name string) *sessions.Session {
	t.Helper()
	raw, err := os.ReadFile("testdata/v2/" + name + ".json")
	if err != nil {
		t.Fatal(err)
	}
	s := &sessions.Session{}
	if err := json.Unmarshal(raw, s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCodecLargeSessions: version 3 leaves the identity uncompressed, so a
// session with many groups (which the tokens repeat) is written as version
// 2, no larger than the code before version 3 wrote it: a session that
// fitted in the cookies then fits now. Every version 3 record is small
// (4 KiB at most), far below the cookies' limit.
func TestCodecLargeSessions(t *testing.T) {
	big := v2Session(t, "big")
	old, err := hex.DecodeString(fixture(t, "v2", "big"))
	if err != nil {
		t.Fatal(err)
	}
	rec := sessions.Encode(big)
	if rec[0] != 2 || len(rec) > len(old) {
		t.Errorf("a session with %d groups: version %d, %d bytes; version 2 wrote %d", len(big.Groups), rec[0], len(rec), len(old))
	}
	roundTrip(t, big)

	for n := 0; n <= 120; n += 4 {
		s := storetest.DexSession(true)
		s.Groups = big.Groups[:n]
		claims := map[string]any{"sub": s.Subject, "email": s.Email, "name": s.Name, "groups": s.Groups}
		s.IDToken = storetest.FakeJWT(map[string]any{"alg": "RS256"}, claims)
		s.AccessToken = storetest.FakeJWT(map[string]any{"alg": "RS256", "typ": "at+jwt"}, claims)
		rec := sessions.Encode(s)
		switch {
		case rec[0] == 3 && len(rec) > 4096:
			t.Errorf("%d groups: a version 3 record of %d bytes", n, len(rec))
		case rec[0] == 3 && n > 16:
			t.Errorf("%d groups (%d bytes of identity) left uncompressed", n, 33*n)
		case rec[0] == 2 && n < 8:
			t.Errorf("%d groups: written as version 2 (%d bytes), slow to read", n, len(rec))
		}
		roundTrip(t, s)
		lazyRoundTrip(t, s, rec)
	}
}

// A session read lazily and saved again (a touch) keeps its deflated
// tokens as they were while the identity's strings, their dictionary, are
// the same; when those change (or the session grows past version 3's
// bounds) the tokens are decoded and written anew.
func TestCodecReencodeLazy(t *testing.T) {
	s := storetest.DexSession(true)
	rec := sessions.Encode(s)
	for name, change := range map[string]func(*sessions.Session){
		"touched":     func(l *sessions.Session) { l.LastSeen = l.LastSeen.Add(time.Minute) },
		"new groups":  func(l *sessions.Session) { l.Groups = []string{"other"} },
		"many groups": func(l *sessions.Session) { l.Groups = v2Session(t, "big").Groups[:60] },
	} {
		t.Run(name, func(t *testing.T) {
			lazy, err := sessions.DecodeLazy(rec)
			if err != nil {
				t.Fatal(err)
			}
			change(lazy)
			want := *s
			change(&want)
			again := sessions.Encode(lazy)
			got, err := sessions.Decode(again)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if d := storetest.Diff(&want, got); d != "" {
				t.Errorf("re-encoded lazy session differs:\n%s", d)
			}
			if name == "touched" && !bytes.Contains(again, rec[len(rec)-200:]) {
				t.Error("a touch re-deflated the tokens")
			}
		})
	}
}

// A session read lazily has a compact form (its record, not copied) until
// its tokens are decoded; CompactOf encodes one for any session that fits
// version 3; either decodes back to the session.
func TestCompact(t *testing.T) {
	s := storetest.DexSession(true)
	lazy, err := sessions.DecodeLazy(sessions.Encode(s))
	if err != nil {
		t.Fatal(err)
	}
	c, ok := lazy.Compact()
	if !ok {
		t.Fatal("a lazily read session has no compact form")
	}
	fromCompact := func(what string, c sessions.Compact) {
		t.Helper()
		got, err := c.Session()
		if err != nil || got.DecodeTokens() != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if d := storetest.Diff(s, got); d != "" {
			t.Errorf("%s differs:\n%s", what, d)
		}
	}
	fromCompact("Compact", c)
	if c, ok = sessions.CompactOf(s); !ok {
		t.Fatal("CompactOf of a Dex session")
	}
	fromCompact("CompactOf", c)
	if lazy.DecodeTokens() != nil {
		t.Fatal("DecodeTokens")
	}
	if _, ok := lazy.Compact(); ok {
		t.Error("a session with decoded tokens (which may change) still has the form it was read in")
	}
	if _, ok := sessions.CompactOf(v2Session(t, "big")); ok {
		t.Error("a session written as version 2 has a compact form")
	}
}

// FuzzDecodeLazy: a record read lazily (identity now, tokens later), then
// changed or not and encoded again, or kept compact, gives back what an
// eager decode of the record, changed the same way, gives; and nothing
// panics on records the eager decoder refuses.
func FuzzDecodeLazy(f *testing.F) {
	for _, rec := range validRecords() {
		f.Add(rec, false)
	}
	f.Add(sessions.Encode(storetest.DexSession(false)), true)
	f.Fuzz(func(t *testing.T, b []byte, change bool) {
		eager, eagerErr := sessions.Decode(b)
		lazy, err := sessions.DecodeLazy(b)
		if err != nil {
			if eagerErr == nil {
				t.Fatal("the lazy decoder refused what the eager one read")
			}
			return
		}
		if c, ok := lazy.Compact(); ok {
			s, err := c.Session()
			if err != nil {
				t.Fatalf("compact session: %v", err)
			}
			_ = s.DecodeTokens()
		}
		if change {
			lazy.Issuer += "x"
			lazy.Groups = append([]string{"zz"}, lazy.Groups...)
		}
		rec := sessions.Encode(lazy)
		if c, ok := sessions.CompactOf(lazy); ok {
			if _, err := c.Session(); err != nil {
				t.Fatalf("CompactOf: %v", err)
			}
		}
		again, err := sessions.Decode(rec)
		if eagerErr != nil {
			return // tokens unreadable: encoding the lazy session must only not panic
		}
		if err != nil {
			t.Fatalf("the lazy session encoded again does not decode: %v", err)
		}
		if change {
			eager.Issuer += "x"
			eager.Groups = append([]string{"zz"}, eager.Groups...)
		}
		if d := storetest.Diff(eager, again); d != "" {
			t.Fatalf("encoding the lazy session again changed it:\n%s", d)
		}
	})
}
