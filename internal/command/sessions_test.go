package command_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oidc-session/oidc_session/internal/testcaddy"
	"github.com/oidc-session/oidc_session/internal/testenv"
)

// listed is the admin API's answer to GET /oidc_session/sessions.
type listed struct {
	Sessions []struct {
		ID      string `json:"id"`
		Store   string `json:"store"`
		Subject string `json:"sub"`
	} `json:"sessions"`
	Count     int      `json:"count"`
	Unmanaged []string `json:"unmanaged"`
}

// startSessions runs Caddy with the memory store (and admin on admin) and
// logs alice in twice and bob once; it returns Caddy, the IdP and the
// browsers.
func startSessions(t *testing.T, admin string) (*testcaddy.Caddy, *testcaddy.MockIdP, map[string][]*testcaddy.Browser) {
	t.Helper()
	idp := testcaddy.StartMockIdP(t, 0, false)
	c := testcaddy.Start(t, admin, testcaddy.OIDCBlock(idp, "store memory")+"\trespond \"id={http.auth.user.id}\" 200\n")
	browsers := map[string][]*testcaddy.Browser{}
	for _, sub := range []string{"alice", "alice", "bob"} {
		b := testcaddy.NewBrowser(t)
		if body := b.LoginAs(idp, c.Base, sub); body != "id="+sub {
			t.Fatalf("login as %s: %q", sub, body)
		}
		browsers[sub] = append(browsers[sub], b)
	}
	return c, idp, browsers
}

// listJSON is `sessions list --json` decoded.
func listJSON(t *testing.T, admin string, args ...string) listed {
	t.Helper()
	r := caddy(t, nil, append([]string{"sessions", "--admin", admin, "--json", "list"}, args...)...)
	want(t, r, 0)
	var l listed
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
		t.Fatalf("--json output is not the admin API's JSON: %v\n%s", err, r)
	}
	return l
}

// loggedIn reports whether the browser's session still works.
func loggedIn(t *testing.T, c *testcaddy.Caddy, b *testcaddy.Browser) bool {
	t.Helper()
	code, _ := b.Get(c.Base + "/")
	return code == http.StatusOK
}

// TestSessions drives a real Caddy's sessions from the command line:
// list as a table and as JSON, end one, a user's, all; refusing what
// would end more than asked.
func TestSessions(t *testing.T) {
	c, idp, browsers := startSessions(t, "")
	admin := c.Admin

	r := caddy(t, nil, "sessions", "--admin", admin, "list")
	want(t, r, 0, "ID", "STORE", "PROVIDER", "SUB", "EMAIL", "CREATED", "LAST SEEN", "EXPIRES", "alice@example.com", "bob@example.com", "3 sessions")
	if n := strings.Count(r.stdout, " default "); n != 3 {
		t.Errorf("want 3 rows of the default provider, got %d:\n%s", n, r)
	}
	if n := strings.Count(r.stdout, " memory "); n != 3 {
		t.Errorf("want 3 rows of the memory store, got %d:\n%s", n, r)
	}

	// --json is exactly what the admin API answers.
	resp, err := http.Get(c.AdminURL + "/oidc_session/sessions")
	if err != nil {
		t.Fatal(err)
	}
	var direct listed
	_ = json.NewDecoder(resp.Body).Decode(&direct)
	resp.Body.Close()
	all := listJSON(t, admin)
	if all.Count != 3 || len(all.Sessions) != 3 || direct.Count != 3 {
		t.Fatalf("want 3 sessions, got %+v (admin API: %+v)", all, direct)
	}
	if l := listJSON(t, admin, "--sub", "alice"); l.Count != 2 || l.Sessions[0].Subject != "alice" {
		t.Errorf("list --sub alice: %+v", l)
	}
	if l := listJSON(t, admin, "--sub", "alice", "--provider", "default"); l.Count != 2 {
		t.Errorf("list --sub alice --provider default: %+v", l)
	}
	if l := listJSON(t, admin, "--provider", "other"); l.Count != 0 {
		t.Errorf("list --provider other: %+v", l)
	}
	if r := caddy(t, nil, "sessions", "--admin", admin, "list", "--sub", "nobody"); r.code != 0 || !strings.Contains(r.stdout, "0 sessions") || strings.Contains(r.stdout, "STORE") {
		t.Errorf("an empty list: %s", r)
	}

	// Nothing that would end more than asked is sent.
	for _, args := range [][]string{
		{"end"},
		{"end", "--sub", ""},
		{"end", "--sub", "alice", "--all"},
		{"end", all.Sessions[0].ID, "--all"},
		{"end", all.Sessions[0].ID, "--sub", "alice"},
		{"end", ""},
		{"end", ".."},
		{"end", "a/b"},
		{"end", "one", "two"},
		{"list", "--sub", ""},
		{"end", "--provider", ""},
		{"end", "--provider", "default", "--all"},
		{"list", "--provider", ""},
	} {
		if r := caddy(t, nil, append([]string{"sessions", "--admin", admin}, args...)...); r.code != 1 {
			t.Errorf("sessions %q: want exit 1, got %s", args, r)
		}
	}
	if l := listJSON(t, admin); l.Count != 3 {
		t.Fatalf("a refused command ended sessions: %+v", l)
	}

	// Another provider's: none of these.
	want(t, caddy(t, nil, "sessions", "--admin", admin, "end", "--sub", "bob", "--provider", "other"), 0, "ended 0 sessions\n")

	// One session.
	bobID := listJSON(t, admin, "--sub", "bob").Sessions[0].ID
	want(t, caddy(t, nil, "sessions", "--admin", admin, "end", bobID), 0, "ended 1 session\n")
	if loggedIn(t, c, browsers["bob"][0]) {
		t.Error("bob's ended session still works")
	}
	want(t, caddy(t, nil, "sessions", "--admin", admin, "end", bobID), 3, "no such session")
	for _, b := range browsers["alice"] {
		if !loggedIn(t, c, b) {
			t.Error("ending bob's session ended alice's")
		}
	}

	// A user's, with --json.
	r = caddy(t, nil, "sessions", "--admin", admin, "--json", "end", "--sub", "alice")
	want(t, r, 0)
	if strings.TrimSpace(r.stdout) != `{"ended":2}` {
		t.Errorf("end --sub alice --json: %s", r)
	}
	for _, b := range browsers["alice"] {
		if loggedIn(t, c, b) {
			t.Error("alice's session survived end --sub alice")
		}
	}

	// All of them.
	carol := testcaddy.NewBrowser(t)
	carol.LoginAs(idp, c.Base, "carol")
	want(t, caddy(t, nil, "sessions", "--admin", admin, "end", "--all"), 0, "ended 1 session\n")
	if loggedIn(t, c, carol) {
		t.Error("carol's session survived end --all")
	}
	want(t, caddy(t, nil, "sessions", "--admin", admin, "list"), 0, "0 sessions")
}

// TestSessionsAdminAddress: a unix socket, the admin address of a config
// file, and $CADDY_ADMIN reach the admin API as they do for caddy's own
// commands.
func TestSessionsAdminAddress(t *testing.T) {
	sock := "unix/" + filepath.Join(t.TempDir(), "admin.sock")
	startSessions(t, sock)
	want(t, caddy(t, nil, "sessions", "--admin", sock, "list", "--sub", "bob"), 0, "bob@example.com", "1 session\n")
	want(t, caddy(t, nil, "sessions", "--admin", sock+"|0600", "list"), 0, "3 sessions")

	caddyfile := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(caddyfile, []byte("{\n\tadmin "+sock+"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want(t, caddy(t, nil, "sessions", "--config", caddyfile, "list"), 0, "3 sessions")
	want(t, caddy(t, []string{"CADDY_ADMIN=" + sock}, "sessions", "list"), 0, "3 sessions")
}

// TestSessionsCookieStore: a Caddy whose only store is the cookie store
// says its sessions are not listed, and not ended by --all.
func TestSessionsCookieStore(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	c := testcaddy.Start(t, "", testcaddy.OIDCBlock(idp, "")+"\trespond ok 200\n")
	testcaddy.NewBrowser(t).LoginAs(idp, c.Base, "alice")
	want(t, caddy(t, nil, "sessions", "--admin", c.Admin, "list"), 0, "0 sessions", "not listed: the sessions of the cookie store")
	want(t, caddy(t, nil, "sessions", "--admin", c.Admin, "end", "--all"), 0, "ended 0 sessions", "not ended: the sessions of the cookie store")
}

// TestSessionsFailures: an admin API that cannot be reached, a Caddy
// without the plugin, and a store that fails in the middle of a list all
// exit 2; what was listed before the failure is printed.
func TestSessionsFailures(t *testing.T) {
	want(t, caddy(t, nil, "sessions", "--admin", testenv.FreeAddr(t), "list"), 2, "cannot be reached", "connection refused")
	want(t, caddy(t, nil, "sessions", "--admin", "unix/"+filepath.Join(t.TempDir(), "none.sock"), "list"), 2, "cannot be reached")
	want(t, caddy(t, nil, "sessions", "--admin", "fd/3", "list"), 1, "file descriptor")

	plain := fakeAdmin(t, func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	want(t, caddy(t, nil, "sessions", "--admin", plain, "list"), 2, "has no oidc_session admin API")
	want(t, caddy(t, nil, "sessions", "--admin", plain, "end", "some-id"), 2, "has no oidc_session admin API")

	broken := fakeAdmin(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"sessions":[{"id":"s-1","store":"redis","sub":"alice\u001b[2J","created":"2026-01-02T03:04:05Z"}],"count":1,"error":"redis: connection lost"}`))
	})
	r := caddy(t, nil, "sessions", "--admin", broken, "list")
	want(t, r, 2, "s-1", `alice\x1b[2J`, "the store failed after listing 1 session: redis: connection lost")
	if strings.Contains(r.stdout, "\x1b") {
		t.Errorf("a control character from the store reached the terminal: %q", r.stdout)
	}
	r = caddy(t, nil, "sessions", "--admin", broken, "--json", "list")
	want(t, r, 2, `"error":"redis: connection lost"`)

	unavailable := fakeAdmin(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":"redis: connection refused"}`))
	})
	want(t, caddy(t, nil, "sessions", "--admin", unavailable, "end", "--all"), 2, "redis: connection refused")
}

// fakeAdmin serves h as an admin API on a loopback port and returns its
// host:port.
func fakeAdmin(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}
