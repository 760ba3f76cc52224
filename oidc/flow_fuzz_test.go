package oidc

import (
	"strings"
	"testing"
	"time"
)

// FuzzUnmarshalFlow: what UnmarshalFlow accepts has a state and a nonce,
// marshals back to a flow equal to it, is found by the handle of its own
// state, and matches that state and no other.
func FuzzUnmarshalFlow(f *testing.F) {
	for _, rd := range []string{"/", "/a?b=c", "https://partner.example.org/x"} {
		fl := NewFlow(rd, true)
		fl.Created = time.Unix(1700000000, 0)
		f.Add(fl.Marshal())
	}
	f.Add([]byte(`{"s":"x","n":"y"}`))
	f.Add([]byte(`{"s":"","n":"y"}`))
	f.Add([]byte(`{"s":"stateAAAAAAAAAAAA","n":"n","v":"v","r":"/","t":"not a time"}`))
	f.Add([]byte(`{"s":1,"n":"y"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, err := UnmarshalFlow(b)
		if err != nil {
			if fl != nil {
				t.Fatal("UnmarshalFlow returned a flow and an error")
			}
			return
		}
		if fl.State == "" || fl.Nonce == "" {
			t.Fatalf("accepted a flow without state or nonce: %+v", fl)
		}
		again, err := UnmarshalFlow(fl.Marshal())
		if err != nil {
			t.Fatalf("a flow's own marshalling is refused: %v", err)
		}
		if again.State != fl.State || again.Nonce != fl.Nonce || again.Verifier != fl.Verifier ||
			again.ReturnTo != fl.ReturnTo || !again.Created.Equal(fl.Created) {
			t.Fatalf("marshal round trip changed the flow: %+v, want %+v", again, fl)
		}
		if id, ok := IDFromState(fl.State); ok {
			if len(fl.State) < 10 || id != fl.State[:10] {
				t.Fatalf("IDFromState(%q) = %q", fl.State, id)
			}
		} else if len(fl.State) >= 10 && len(fl.State) <= 64 {
			t.Fatalf("IDFromState refused the state %q", fl.State)
		}
		if !fl.Matches(fl.State) || fl.Matches(fl.State+"x") || fl.Matches(strings.ToUpper(fl.State)+"\x00") {
			t.Fatalf("Matches is wrong for state %q", fl.State)
		}
	})
}
