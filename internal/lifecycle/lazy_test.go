package lifecycle

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/storetest"
)

// Sessions of the cookie store are read without their tokens
// (sessions.LazyLoader); whatever needs them gets them decoded.
func TestLazyTokens(t *testing.T) {
	st := &sessions.CookieStore{}
	if err := st.Bind(storetest.NewEnv(t)); err != nil {
		t.Fatal(err)
	}
	f := newFixture(st)
	// The IdP is sent the session's real refresh token (fakeIdP refuses a
	// token it has seen, "" included, so a lazy session would show).
	value := f.login(t, f.keeper(t, 0))
	ctx := context.Background()

	k := f.keeper(t, 0) // a new cache: the cookie is read from the store
	s, c := current(t, k, value)
	if s == nil || c.Action != Keep || s.Subject != "alice" {
		t.Fatalf("Current: %+v %+v", s, c)
	}
	if s.AccessToken != "" || !s.HasRefreshToken() {
		t.Errorf("without Config.Tokens, Current decoded the tokens (%q) or lost them", s.AccessToken)
	}
	p, err := k.Peek(ctx, value)
	if err != nil || p.AccessToken != "at-0" || p.RefreshToken != "rt-0" {
		t.Fatalf("Peek: %+v, %v, want the tokens", p, err)
	}
	if s, _ := current(t, k, value); s.AccessToken != "" {
		t.Error("Peek put a decoded session in the cache")
	}

	withTokens := f.keeper(t, 0)
	withTokens.cfg.Tokens = true
	for range 2 { // from the store, then from the cache
		if s, _ := current(t, withTokens, value); s == nil || s.AccessToken != "at-0" {
			t.Fatalf("with Config.Tokens: %+v", s)
		}
	}

	f.clock.add(5 * time.Minute) // the access token expires: refresh
	s, c = current(t, k, value)
	if s == nil || c.Action != Write || s.AccessToken != "at-1" || s.RefreshToken != "rt-1" || f.idp.calls.Load() != 1 {
		t.Fatalf("refresh of a lazily read session: %+v %+v (%d calls)", s, c, f.idp.calls.Load())
	}
	again, _ := current(t, f.keeper(t, 0), c.Value)
	if again == nil || again.DecodeTokens() != nil || again.AccessToken != "at-1" {
		t.Errorf("the refreshed cookie: %+v", again)
	}

	// A value that is not a session, however close to one, is not served
	// from the cache.
	last := "A"
	if strings.HasSuffix(value, "A") {
		last = "B"
	}
	if s, c := current(t, k, value[:len(value)-1]+last); s != nil || c.Action != Clear {
		t.Errorf("an altered value: %+v %+v", s, c)
	}
}
