package sessions_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/storetest"
)

func newCookieStore(t testing.TB, env sessions.Env) *sessions.CookieStore {
	t.Helper()
	s := &sessions.CookieStore{}
	if err := s.Bind(env); err != nil {
		t.Fatalf("Bind: %v", err)
	}
	return s
}

func TestCookieStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) sessions.Store {
		return newCookieStore(t, storetest.NewEnv(t))
	}, storetest.Options{Stateless: true})
}

func TestCookieStoreDropTokens(t *testing.T) {
	env := storetest.NewEnv(t)
	full := newCookieStore(t, env)
	drop := newCookieStore(t, env)
	drop.DropTokens = true

	s := storetest.FullSession()
	orig := storetest.Clone(s)
	v, err := drop.Save(t.Context(), "", s)
	if err != nil {
		t.Fatal(err)
	}
	if d := storetest.Diff(orig, s); d != "" {
		t.Errorf("Save with drop_tokens modified the caller's session:\n%s", d)
	}
	got, err := drop.Load(t.Context(), v)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got.IDToken != "" || got.AccessToken != "" || got.RefreshToken != "" {
		t.Errorf("drop_tokens kept tokens: id %d, access %d, refresh %d bytes",
			len(got.IDToken), len(got.AccessToken), len(got.RefreshToken))
	}
	want := storetest.Clone(orig)
	want.IDToken, want.AccessToken, want.RefreshToken, want.DPoPKey = "", "", "", nil
	if d := storetest.Diff(want, got); d != "" {
		t.Errorf("drop_tokens lost more than the tokens:\n%s", d)
	}

	withTokens, err := full.Save(t.Context(), "", s)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) >= len(withTokens)/2 {
		t.Errorf("drop_tokens value is %d bytes, with tokens %d: expected far smaller", len(v), len(withTokens))
	}
	t.Logf("full session cookie value: %d bytes with tokens, %d with drop_tokens", len(withTokens), len(v))
}

func TestCookieStoreBinding(t *testing.T) {
	secret := storetest.NewSecret()
	a := newCookieStore(t, storetest.NewEnvWith(t, "https://idp-a.example.com\x00client", secret))
	a2 := newCookieStore(t, storetest.NewEnvWith(t, "https://idp-a.example.com\x00client", secret))
	otherIssuer := newCookieStore(t, storetest.NewEnvWith(t, "https://idp-b.example.com\x00client", secret))
	otherClient := newCookieStore(t, storetest.NewEnvWith(t, "https://idp-a.example.com\x00client2", secret))
	// The separator matters: issuer "…com" + client "x" must not equal
	// issuer "…comx" + client "".
	shifted := newCookieStore(t, storetest.NewEnvWith(t, "https://idp-a.example.com\x00clien\x00t", secret))

	s := storetest.FullSession()
	v, err := a.Save(t.Context(), "", s)
	if err != nil {
		t.Fatal(err)
	}
	// Positive control: same secret, same binding, another instance.
	got, err := a2.Load(t.Context(), v)
	if err != nil {
		t.Fatalf("a store with the same secret and binding cannot load the value: %v", err)
	}
	if d := storetest.Diff(s, got); d != "" {
		t.Fatalf("loaded session differs:\n%s", d)
	}
	for name, st := range map[string]*sessions.CookieStore{"other issuer": otherIssuer, "other client": otherClient, "shifted": shifted} {
		got, err := st.Load(t.Context(), v)
		if !errors.Is(err, sessions.ErrNoSession) || got != nil {
			t.Errorf("%s: Load of a value bound to another IdP/client = (%v, %v), want ErrNoSession", name, got, err)
		}
	}
}

func TestCookieStoreRotation(t *testing.T) {
	oldSecret, newSecret := storetest.NewSecret(), storetest.NewSecret()
	oldOnly := newCookieStore(t, storetest.NewEnvWith(t, storetest.Binding, oldSecret))
	rotated := newCookieStore(t, storetest.NewEnvWith(t, storetest.Binding, newSecret, oldSecret))
	newOnly := newCookieStore(t, storetest.NewEnvWith(t, storetest.Binding, newSecret))

	s := storetest.FullSession()
	oldValue, err := oldOnly.Save(t.Context(), "", s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rotated.Load(t.Context(), oldValue)
	if err != nil {
		t.Fatalf("store with [new, old] cannot load a value saved with [old]: %v", err)
	}
	if d := storetest.Diff(s, got); d != "" {
		t.Errorf("loaded session differs:\n%s", d)
	}
	if got, err := newOnly.Load(t.Context(), oldValue); !errors.Is(err, sessions.ErrNoSession) || got != nil {
		t.Errorf("store with only [new] loaded a value saved with [old]: (%v, %v), want ErrNoSession", got, err)
	}

	// What the rotated store saves is sealed with the new secret: the
	// new-only store loads it, the old-only one does not.
	newValue, err := rotated.Save(t.Context(), oldValue, got)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newOnly.Load(t.Context(), newValue); err != nil {
		t.Errorf("store with only [new] cannot load a value saved with [new, old]: %v", err)
	}
	if got, err := oldOnly.Load(t.Context(), newValue); !errors.Is(err, sessions.ErrNoSession) || got != nil {
		t.Errorf("store with only [old] loaded a value saved with [new, old]: (%v, %v), want ErrNoSession", got, err)
	}
}

func TestCookieStoreCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		in, err string
		drop    bool
	}{
		{in: "cookie", drop: false},
		{in: "cookie {\n}", drop: false},
		{in: "cookie {\n\tdrop_tokens\n}", drop: true},
		{in: "cookie extra", err: "wrong argument count"},
		{in: "cookie {\n\tdrop_tokens yes\n}", err: "wrong argument count"},
		{in: "cookie {\n\tdrop_token\n}", err: "unknown cookie store option"},
	} {
		var s sessions.CookieStore
		err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one containing %q", tc.in, err, tc.err)
		case tc.err == "" && s.DropTokens != tc.drop:
			t.Errorf("%q: DropTokens = %v, want %v", tc.in, s.DropTokens, tc.drop)
		}
	}
}
