package oidcsession_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/oidc-session/oidc_session/internal/testredis"
)

type listed struct {
	Sessions []struct {
		ID      string `json:"id"`
		Store   string `json:"store"`
		Subject string `json:"sub"`
		Email   string `json:"email"`
		Created string `json:"created"`
		Expires string `json:"expires"`
	} `json:"sessions"`
	Count     int      `json:"count"`
	Unmanaged []string `json:"unmanaged"`
	Error     string   `json:"error"`
}

// adminDo calls the running test Caddy's admin API.
func adminDo(t *testing.T, method, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, running.admin+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func adminList(t *testing.T, query string) listed {
	t.Helper()
	code, body := adminDo(t, "GET", "/oidc_session/sessions"+query)
	var l listed
	if code != 200 || json.Unmarshal([]byte(body), &l) != nil || l.Error != "" {
		t.Fatalf("list sessions: %d %s", code, body)
	}
	if strings.Contains(body, "eyJ") || strings.Contains(strings.ToLower(body), "token") {
		t.Fatalf("the session list shows token material: %s", body)
	}
	return l
}

// loginAs logs a browser in as a given mock user.
func loginAs(t *testing.T, idp *mockIdP, base, sub string) *browser {
	t.Helper()
	idp.QueueUser(&mockoidc.MockUser{Subject: sub, Email: sub + "@example.com", EmailVerified: true, PreferredUsername: sub})
	b := newBrowser(t)
	if resp, body := b.login(base + "/"); resp.StatusCode != 200 || !strings.Contains(body, "id="+sub+" ") {
		t.Fatalf("login as %s: %d %s", sub, resp.StatusCode, body)
	}
	return b
}

// testSessionAdmin drives the admin API of a running Caddy whose site uses
// a server-side store.
func testSessionAdmin(t *testing.T, storeConfig string) {
	idp := startMockIdP(t, 0, false)
	base := startCaddy(t, siteConfig(idp, storeConfig+"\n\t\tmax_sessions_per_user 2"))

	alice1 := loginAs(t, idp, base, "alice")
	alice2 := loginAs(t, idp, base, "alice")
	bob := loginAs(t, idp, base, "bob")
	carol := loginAs(t, idp, base, "carol")

	all := adminList(t, "")
	if all.Count != 4 || len(all.Sessions) != 4 {
		t.Fatalf("want 4 sessions, got %+v", all)
	}
	for _, s := range all.Sessions {
		if s.ID == "" || s.Store == "" || s.Email != s.Subject+"@example.com" || s.Created == "" || s.Expires == "" {
			t.Errorf("incomplete session entry %+v", s)
		}
	}
	if l := adminList(t, "?sub=alice"); l.Count != 2 {
		t.Errorf("filter by sub: %+v", l)
	}

	// Per-user limit: a third login of alice ends her oldest session.
	alice3 := loginAs(t, idp, base, "alice")
	if l := adminList(t, "?sub=alice"); l.Count != 2 {
		t.Errorf("alice has %d sessions with max_sessions_per_user 2", l.Count)
	}
	if resp, _ := alice1.navigate(base + "/"); resp.StatusCode != http.StatusFound {
		t.Errorf("alice's oldest session still works: %d", resp.StatusCode)
	}
	for _, b := range []*browser{alice2, alice3, bob, carol} {
		if resp, _ := b.navigate(base + "/"); resp.StatusCode != 200 {
			t.Errorf("a session within the limit stopped working: %d", resp.StatusCode)
		}
	}

	// Delete one.
	bobID := adminList(t, "?sub=bob").Sessions[0].ID
	if code, body := adminDo(t, "DELETE", "/oidc_session/sessions/"+bobID); code != 200 || !strings.Contains(body, `"ended":1`) {
		t.Fatalf("delete one: %d %s", code, body)
	}
	if resp, _ := bob.navigate(base + "/"); resp.StatusCode != http.StatusFound {
		t.Errorf("bob's deleted session still works: %d", resp.StatusCode)
	}
	if code, _ := adminDo(t, "DELETE", "/oidc_session/sessions/"+bobID); code != http.StatusNotFound {
		t.Errorf("deleting an ended session: %d, want 404", code)
	}
	// Delete by user.
	if code, body := adminDo(t, "DELETE", "/oidc_session/sessions?sub=alice"); code != 200 || !strings.Contains(body, `"ended":2`) {
		t.Fatalf("delete by user: %d %s", code, body)
	}
	for _, b := range []*browser{alice2, alice3} {
		if resp, _ := b.navigate(base + "/"); resp.StatusCode != http.StatusFound {
			t.Errorf("alice's session survived delete by user: %d", resp.StatusCode)
		}
	}
	if resp, _ := carol.navigate(base + "/"); resp.StatusCode != 200 {
		t.Errorf("carol's session was ended by deleting alice's: %d", resp.StatusCode)
	}
	// Delete all.
	loginAs(t, idp, base, "dave")
	if code, body := adminDo(t, "DELETE", "/oidc_session/sessions"); code != 200 || !strings.Contains(body, `"ended":2`) {
		t.Fatalf("delete all: %d %s", code, body)
	}
	if resp, _ := carol.navigate(base + "/"); resp.StatusCode != http.StatusFound {
		t.Errorf("carol's session survived delete all: %d", resp.StatusCode)
	}
	if l := adminList(t, ""); l.Count != 0 {
		t.Errorf("sessions left after delete all: %+v", l)
	}
	if code, _ := adminDo(t, "PUT", "/oidc_session/sessions"); code != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d", code)
	}
}

func TestSessionAdminRedis(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	testSessionAdmin(t, fmt.Sprintf("store redis {\n\t\t\turl %s\n\t\t}", srv.URL()))
}

func TestSessionAdminCookieStore(t *testing.T) {
	idp := startMockIdP(t, 0, false)
	base := startCaddy(t, siteConfig(idp, ""))
	loginAs(t, idp, base, "alice")
	l := adminList(t, "")
	if l.Count != 0 || len(l.Unmanaged) != 1 || l.Unmanaged[0] != "cookie" {
		t.Errorf("cookie store listing: %+v", l)
	}
	if code, body := adminDo(t, "DELETE", "/oidc_session/sessions"); code != 200 || !strings.Contains(body, `"unmanaged":["cookie"]`) {
		t.Errorf("delete all with the cookie store: %d %s", code, body)
	}
}

func TestSessionAdminMemory(t *testing.T) {
	testSessionAdmin(t, "store memory {\n\t\t\tstate_file "+t.TempDir()+"/sessions.state\n\t\t}")
}

// TestMemoryStateFileSurvivesRestart stops Caddy and starts it again with
// the same state file: the user is still logged in.
func TestMemoryStateFileSurvivesRestart(t *testing.T) {
	idp := startMockIdP(t, 0, false)
	state := t.TempDir() + "/sessions.state"
	site := siteConfig(idp, "store memory {\n\t\t\tstate_file "+state+"\n\t\t}")
	addr := freeAddr(t)
	base := startCaddyOn(t, addr, site)
	b := loginAs(t, idp, base, "alice")
	if err := caddy.Stop(); err != nil { // as at shutdown: the state file is written
		t.Fatal(err)
	}
	info, err := os.Stat(state)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("state file after stop: %v %v", info, err)
	}
	raw, _ := os.ReadFile(state)
	if strings.Contains(string(raw), "alice") || strings.Contains(string(raw), "eyJ") {
		t.Errorf("the state file holds identity or tokens in clear")
	}
	startCaddyOn(t, addr, site)
	if resp, body := b.navigate(base + "/"); resp.StatusCode != 200 || !strings.Contains(body, "id=alice ") {
		t.Fatalf("after restart: %d %s", resp.StatusCode, body)
	}
	if l := adminList(t, ""); l.Count != 1 || l.Sessions[0].Subject != "alice" || l.Sessions[0].Store != "memory" {
		t.Errorf("listing after restart: %+v", l)
	}
}
