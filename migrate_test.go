package oidcsession

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/internal/cookies"
	"github.com/oidc-session/oidc_session/internal/lifecycle"
	"github.com/oidc-session/oidc_session/sessions"
)

func TestParseUntil(t *testing.T) {
	for in, want := range map[string]time.Time{
		"2026-03-01":                time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		"2026-03-01T12:00:00+02:00": time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC),
		"2026-03-01T12:00:00Z":      time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
	} {
		if got, err := parseUntil(in); err != nil || !got.Equal(want) {
			t.Errorf("parseUntil(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "next month", "01/03/2026", "2026-02-30", "2026-03-01 12:00"} {
		if _, err := parseUntil(in); err == nil {
			t.Errorf("parseUntil(%q) accepted", in)
		}
	}
}

// migrateHandler is a provisioned handler with migrate_oauth2_proxy.
func migrateHandler(t *testing.T, m *MigrateOAuth2Proxy) *Handler {
	t.Helper()
	h := &Handler{
		ProviderConfig: ProviderConfig{Issuer: "http://127.0.0.1:1", ClientID: "app"},
		Cookie:         CookieConfig{Secrets: []string{testSecret}},
		Migrate:        m,
	}
	if err := provisioned(t, h); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	return h
}

func TestMigrateWindow(t *testing.T) {
	t.Run("over at start", func(t *testing.T) {
		h := migrateHandler(t, &MigrateOAuth2Proxy{CookieSecrets: []string{testSecret}, Until: "2020-01-01"})
		if h.migrator != nil || h.migrator.active() {
			t.Fatal("a window that is over was set up")
		}
	})
	t.Run("ends while running", func(t *testing.T) {
		until := time.Now().Add(time.Hour)
		h := migrateHandler(t, &MigrateOAuth2Proxy{CookieSecrets: []string{testSecret}, Until: until.Format(time.RFC3339)})
		m := h.migrator
		if !m.active() {
			t.Fatal("window not open before until")
		}
		m.now = func() time.Time { return until }
		if m.active() {
			t.Fatal("window still open at until")
		}
		// Past until the reader is never called: a request with an
		// oauth2-proxy cookie is left as it is.
		r := httptest.NewRequest(http.MethodGet, "http://app.example.com/", nil)
		r.AddCookie(&http.Cookie{Name: "_oauth2_proxy", Value: "anything"})
		w := httptest.NewRecorder()
		if s, err := m.takeOver(w, r, ""); s != nil || err != nil || len(w.Result().Cookies()) != 0 {
			t.Fatalf("takeOver past until: %v, %v, cookies %v", s, err, w.Result().Cookies())
		}
		m.stripRequest(r)
		if r.Header.Get("Cookie") == "" {
			t.Error("past until, the proxy's cookie was stripped")
		}
	})
	t.Run("placeholder secret", func(t *testing.T) {
		t.Setenv("TEST_PROXY_SECRET", "too-short")
		h := &Handler{
			ProviderConfig: ProviderConfig{Issuer: "http://127.0.0.1:1", ClientID: "app"},
			Cookie:         CookieConfig{Secrets: []string{testSecret}},
			Migrate:        &MigrateOAuth2Proxy{CookieSecrets: []string{"{env.TEST_PROXY_SECRET}"}, Until: "2999-01-01"},
		}
		if err := provisioned(t, h); err == nil {
			t.Fatal("Provision accepted a cookie secret oauth2-proxy refuses")
		}
	})
}

func TestMigrateOnce(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	m := &migrator{takeovers: map[string]*takeover{}, now: func() time.Time { return now }}
	var calls atomic.Int32
	release := make(chan struct{})
	convert := func() (*sessions.Session, lifecycle.Cookie, error) {
		calls.Add(1)
		<-release
		return &sessions.Session{Subject: "alice"}, lifecycle.Cookie{Action: lifecycle.Write, Value: "v1"}, nil
	}

	// Requests arriving while one converts wait for it and share it.
	var wg sync.WaitGroup
	leaders := atomic.Int32{}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk, leader := m.once("id", convert)
			if leader {
				leaders.Add(1)
			}
			if tk.cookie.Value != "v1" || tk.err != nil {
				t.Errorf("result %+v", tk)
			}
		}()
	}
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the others queue behind it
	close(release)
	wg.Wait()
	if calls.Load() != 1 || leaders.Load() != 1 {
		t.Fatalf("%d conversions, %d leaders for 8 parallel requests; want 1 and 1", calls.Load(), leaders.Load())
	}

	// Within the grace a late request gets the same result; after it, the
	// session is converted anew (and the old entry swept).
	now = now.Add(takeoverGrace - time.Second)
	if _, leader := m.once("id", convert); leader {
		t.Fatal("converted again within the grace")
	}
	now = now.Add(2 * time.Second)
	if _, leader := m.once("id", convert); !leader || calls.Load() != 2 {
		t.Fatalf("after the grace: leader %v, %d conversions", leader, calls.Load())
	}

	// A failure is not remembered: the next request tries again.
	failing := func() (*sessions.Session, lifecycle.Cookie, error) {
		calls.Add(1)
		return nil, lifecycle.Cookie{}, errors.New("IdP down")
	}
	m.once("other", failing)
	if tk, leader := m.once("other", failing); !leader || tk.err == nil || calls.Load() != 4 {
		t.Fatalf("after a failure: leader %v, err %v, %d conversions", leader, tk.err, calls.Load())
	}
}

func TestMigrateCookieDomain(t *testing.T) {
	m := &migrator{domains: []string{"example.com", ".app.example.com", ".example.com"}}
	slices.SortStableFunc(m.domains, func(a, b string) int { return len(b) - len(a) })
	for host, want := range map[string]string{
		"x.app.example.com": ".app.example.com", // the longest that matches
		"www.example.com":   ".example.com",
		"example.com":       "example.com",
		"other.test":        "example.com", // none matches: the shortest
	} {
		if got := m.domain(httptest.NewRequest(http.MethodGet, "http://"+host+"/", nil)); got != want {
			t.Errorf("host %s: domain %q, want %q", host, got, want)
		}
	}
	if got := (&migrator{}).domain(httptest.NewRequest(http.MethodGet, "http://example.com/", nil)); got != "" {
		t.Errorf("no cookie_domain: %q, want host-only", got)
	}
}

func TestMigrateClear(t *testing.T) {
	h := &Handler{jar: cookies.Jar{Name: "_oauth2_proxy", Path: "/", Secure: true, HTTPOnly: true, SameSite: http.SameSiteLaxMode}}
	names := []string{"_oauth2_proxy", "_oauth2_proxy_0", "_oauth2_proxy_1"}
	deleted := func(m *migrator, ours bool) map[string]*http.Cookie {
		w := httptest.NewRecorder()
		m.clear(w, httptest.NewRequest(http.MethodGet, "http://app.example.com/", nil), names, ours)
		out := map[string]*http.Cookie{}
		for _, c := range w.Result().Cookies() {
			if c.MaxAge >= 0 {
				t.Errorf("%s set, not deleted", c.Name)
			}
			out[c.Name] = c
		}
		return out
	}

	// The proxy's cookies are ours too (same name, domain and path): our
	// written cookie has replaced them.
	if got := deleted(&migrator{h: h, path: "/"}, true); len(got) != 0 {
		t.Errorf("deleted %v under the names our own cookie uses", got)
	}
	// At a sign-out nothing of ours is written: all of them go.
	if got := deleted(&migrator{h: h, path: "/"}, false); len(got) != 3 {
		t.Errorf("sign-out deleted %d of 3", len(got))
	}
	// Set for the parent domain, they are other cookies than ours, and
	// are deleted with that domain.
	got := deleted(&migrator{h: h, path: "/", domains: []string{".example.com"}}, true)
	if len(got) != 3 {
		t.Fatalf("deleted %d of 3", len(got))
	}
	for name, c := range got {
		if c.Domain != "example.com" || c.Path != "/" || !c.Secure {
			t.Errorf("%s deleted with domain %q path %q secure %v", name, c.Domain, c.Path, c.Secure)
		}
	}
	// Another path: the same.
	if got := deleted(&migrator{h: h, path: "/app"}, true); len(got) != 3 || got["_oauth2_proxy"].Path != "/app" {
		t.Errorf("path /app: deleted %v", got)
	}
}
