package lifecycle

import (
	"testing"

	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/storetest"
)

// The cache keeps sessions compact (one string each, tokens encoded) when
// it can, decoded otherwise, and gives back the session it was given
// either way.
func TestCacheForms(t *testing.T) {
	big := storetest.DexSession(true)
	for i := range 100 {
		big.Groups = append(big.Groups, "a-group-with-a-long-name-"+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	asRead := func(s *sessions.Session) *sessions.Session {
		lazy, err := sessions.DecodeLazy(sessions.Encode(s))
		if err != nil {
			t.Fatal(err)
		}
		return lazy
	}
	for _, tc := range []struct {
		name            string
		s               *sessions.Session
		asRead, decoded bool
		compact         bool
	}{
		{"as read", asRead(storetest.DexSession(true)), true, false, true},
		{"saved", storetest.DexSession(true), false, false, true},
		{"tokens read by every request", storetest.DexSession(true), false, true, false},
		{"large, saved", big, false, false, false},
		{"large, as read (version 2)", asRead(big), true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(10)
			key := keyOf(tc.name)
			want := *tc.s
			c.put(key, tc.s, tc.asRead, tc.decoded)
			if e := c.entries[key]; (e.decoded == nil) != tc.compact {
				t.Errorf("kept compact: %v, want %v", e.decoded == nil, tc.compact)
			}
			got := c.get(key)
			if got == nil || got.DecodeTokens() != nil {
				t.Fatalf("get: %+v", got)
			}
			if want.DecodeTokens() != nil {
				t.Fatal("fixture")
			}
			if d := storetest.Diff(&want, got); d != "" {
				t.Errorf("cached session differs:\n%s", d)
			}
			got.Groups = nil
			if again := c.get(key); len(again.Groups) != len(want.Groups) {
				t.Error("a change to what get returned changed the cache")
			}
		})
	}
}
