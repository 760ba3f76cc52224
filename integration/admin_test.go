package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/oidc-session/oidc_session/internal/testcaddy"
	"github.com/oidc-session/oidc_session/internal/testenv"
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
	req, _ := http.NewRequest(method, testcaddy.Running().AdminURL+path, nil)
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

// testSessionAdmin drives the admin API of a running Caddy whose site uses
// a server-side store.
func testSessionAdmin(t *testing.T, storeConfig string) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, storeConfig+"\n\t\tmax_sessions_per_user 2"))

	alice1 := testcaddy.LoginAs(t, idp, base, "alice")
	alice2 := testcaddy.LoginAs(t, idp, base, "alice")
	bob := testcaddy.LoginAs(t, idp, base, "bob")
	carol := testcaddy.LoginAs(t, idp, base, "carol")

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
	alice3 := testcaddy.LoginAs(t, idp, base, "alice")
	if l := adminList(t, "?sub=alice"); l.Count != 2 {
		t.Errorf("alice has %d sessions with max_sessions_per_user 2", l.Count)
	}
	if resp, _ := alice1.Navigate(base + "/"); resp.StatusCode != http.StatusFound {
		t.Errorf("alice's oldest session still works: %d", resp.StatusCode)
	}
	for _, b := range []*testcaddy.Browser{alice2, alice3, bob, carol} {
		if resp, _ := b.Navigate(base + "/"); resp.StatusCode != 200 {
			t.Errorf("a session within the limit stopped working: %d", resp.StatusCode)
		}
	}

	// Delete one.
	bobID := adminList(t, "?sub=bob").Sessions[0].ID
	if code, body := adminDo(t, "DELETE", "/oidc_session/sessions/"+bobID); code != 200 || !strings.Contains(body, `"ended":1`) {
		t.Fatalf("delete one: %d %s", code, body)
	}
	if resp, _ := bob.Navigate(base + "/"); resp.StatusCode != http.StatusFound {
		t.Errorf("bob's deleted session still works: %d", resp.StatusCode)
	}
	if code, _ := adminDo(t, "DELETE", "/oidc_session/sessions/"+bobID); code != http.StatusNotFound {
		t.Errorf("deleting an ended session: %d, want 404", code)
	}
	// Delete by user.
	if code, body := adminDo(t, "DELETE", "/oidc_session/sessions?sub=alice"); code != 200 || !strings.Contains(body, `"ended":2`) {
		t.Fatalf("delete by user: %d %s", code, body)
	}
	for _, b := range []*testcaddy.Browser{alice2, alice3} {
		if resp, _ := b.Navigate(base + "/"); resp.StatusCode != http.StatusFound {
			t.Errorf("alice's session survived delete by user: %d", resp.StatusCode)
		}
	}
	if resp, _ := carol.Navigate(base + "/"); resp.StatusCode != 200 {
		t.Errorf("carol's session was ended by deleting alice's: %d", resp.StatusCode)
	}
	// Delete all.
	testcaddy.LoginAs(t, idp, base, "dave")
	if code, body := adminDo(t, "DELETE", "/oidc_session/sessions"); code != 200 || !strings.Contains(body, `"ended":2`) {
		t.Fatalf("delete all: %d %s", code, body)
	}
	if resp, _ := carol.Navigate(base + "/"); resp.StatusCode != http.StatusFound {
		t.Errorf("carol's session survived delete all: %d", resp.StatusCode)
	}
	if l := adminList(t, ""); l.Count != 0 {
		t.Errorf("sessions left after delete all: %+v", l)
	}
	if code, _ := adminDo(t, "PUT", "/oidc_session/sessions"); code != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d", code)
	}
}

func TestSessionAdminCookieStore(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	testcaddy.LoginAs(t, idp, base, "alice")
	l := adminList(t, "")
	if l.Count != 0 || len(l.Unmanaged) != 1 || l.Unmanaged[0] != "cookie" {
		t.Errorf("cookie store listing: %+v", l)
	}
	if code, body := adminDo(t, "DELETE", "/oidc_session/sessions"); code != 200 || !strings.Contains(body, `"unmanaged":["cookie"]`) {
		t.Errorf("delete all with the cookie store: %d %s", code, body)
	}
}

// TestSessionAdmin runs testSessionAdmin on every server-side store.
func TestSessionAdmin(t *testing.T) {
	for _, st := range testcaddy.ServerSideStores() {
		t.Run(st.Name, func(t *testing.T) { testSessionAdmin(t, st.Config(t)) })
	}
}

// TestMemoryStateFileSurvivesRestart stops Caddy and starts it again with
// the same state file: the user is still logged in.
func TestMemoryStateFileSurvivesRestart(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	state := t.TempDir() + "/sessions.state"
	site := testcaddy.SiteConfig(idp, testcaddy.StoreBlock("memory", "state_file "+state))
	addr := testenv.FreeAddr(t)
	base := testcaddy.StartCaddyOn(t, addr, site)
	b := testcaddy.LoginAs(t, idp, base, "alice")
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
	testcaddy.StartCaddyOn(t, addr, site)
	if resp, body := b.Navigate(base + "/"); resp.StatusCode != 200 || !strings.Contains(body, "id=alice ") {
		t.Fatalf("after restart: %d %s", resp.StatusCode, body)
	}
	if l := adminList(t, ""); l.Count != 1 || l.Sessions[0].Subject != "alice" || l.Sessions[0].Store != "memory" {
		t.Errorf("listing after restart: %+v", l)
	}
}
