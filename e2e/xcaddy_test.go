package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/internal/testenv"
)

const (
	xcaddyModule  = "github.com/caddyserver/xcaddy"
	xcaddyVersion = "v0.3.5"
	xcaddyTimeout = 8 * time.Minute
)

// TestXcaddyBuild builds Caddy the way the README tells users to:
// `xcaddy build --with github.com/oidc-session/oidc_session=<this tree>`
// (xcaddy v0.3.5 through `go run`, Caddy pinned to the version in go.mod),
// then checks that the binary lists every module of the plugin, adapts a
// Caddyfile using all three stores, and runs with the admin module
// answering /oidc_session/health.
//
// It needs the Go module proxy (a cold build downloads Caddy's
// dependencies: ~75 s and ~1 GB of module and build cache); it is skipped
// with -short, and when the proxy cannot serve xcaddy (a failure in CI).
func TestXcaddyBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the xcaddy build takes ~75 s cold")
	}
	root := testenv.RepoRoot(t)
	gobin := goTool(t)
	caddyVersion := requiredVersion(t, filepath.Join(root, "go.mod"), "github.com/caddyserver/caddy/v2")
	checkProxyServes(t, gobin, xcaddyModule, xcaddyVersion)

	tmp := t.TempDir() // xcaddy's build folder goes under TMPDIR
	out := filepath.Join(tmp, "caddy-x")
	ctx, cancel := context.WithTimeout(context.Background(), xcaddyTimeout)
	defer cancel()
	start := time.Now()
	xcaddy := buildXcaddy(ctx, t, gobin, tmp)
	env := append(os.Environ(), "TMPDIR="+tmp, "GOWORK=off", "GOPROXY="+localProxy(t, gobin, tmp))
	cmd := exec.CommandContext(ctx, xcaddy, "build", caddyVersion,
		"--with", testenv.MainModule+"="+root,
		"--output", out)
	cmd.Dir = tmp
	cmd.Env = env
	cmd.WaitDelay = 10 * time.Second
	b, err := cmd.CombinedOutput()
	took := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("xcaddy build did not finish within %v:\n%s", xcaddyTimeout, testenv.TailString(string(b), 40))
	}
	if err != nil {
		t.Fatalf("xcaddy build (%v): %v\n%s", took.Round(time.Second), err, testenv.TailString(string(b), 40))
	}
	t.Logf("xcaddy %s build of Caddy %s with %s=%s took %v", xcaddyVersion, caddyVersion, testenv.MainModule, root, took.Round(time.Second))

	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c := exec.CommandContext(ctx, out, args...)
		c.Dir = tmp
		c.Env = append(os.Environ(), "HOME="+tmp, "XDG_DATA_HOME="+filepath.Join(tmp, "data"), "XDG_CONFIG_HOME="+filepath.Join(tmp, "config"))
		var stdout, stderr bytes.Buffer
		c.Stdout, c.Stderr = &stdout, &stderr
		if err := c.Run(); err != nil {
			t.Fatalf("caddy-x %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), testenv.TailString(stderr.String(), 30))
		}
		return stdout.String()
	}

	if v := run("version"); !strings.HasPrefix(strings.TrimSpace(v), caddyVersion) {
		t.Errorf("caddy-x version %q, want %s", strings.TrimSpace(v), caddyVersion)
	}
	modules := map[string]bool{}
	for _, line := range strings.Split(run("list-modules"), "\n") {
		modules[strings.TrimSpace(line)] = true
	}
	for _, m := range []string{
		"http.handlers.oidc_session",
		"http.handlers.oidc_session.stores.cookie",
		"http.handlers.oidc_session.stores.memory",
		"http.handlers.oidc_session.stores.redis",
		"admin.api.oidc_session",
	} {
		if !modules[m] {
			t.Errorf("caddy-x list-modules lacks %s", m)
		}
	}

	// A Caddyfile with every store adapts.
	dir := t.TempDir()
	site := func(addr, store string) string {
		return fmt.Sprintf(`http://%s {
	oidc_session {
		issuer http://127.0.0.1:9/idp
		client_id app
		client_secret {env.OIDC_CLIENT_SECRET}
		cookie {
			secret {env.OIDC_COOKIE_SECRET}
			secure off
		}
		%s
	}
	respond "hello {http.auth.user.email}"
}
`, addr, store)
	}
	caddyfile := globalOptions("127.0.0.1:2999", dir) +
		site("127.0.0.1:8001", "store cookie") +
		site("127.0.0.1:8002", "store memory {\n\t\t\tmax_sessions 1000\n\t\t}") +
		site("127.0.0.1:8003", "store redis {\n\t\t\turl redis://127.0.0.1:6379/0\n\t\t\tkey_prefix app:\n\t\t}")
	cf := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cf, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	adapted := run("adapt", "--config", cf, "--adapter", "caddyfile")
	var doc any
	if err := json.Unmarshal([]byte(adapted), &doc); err != nil {
		t.Fatalf("caddy-x adapt printed no JSON: %v\n%s", err, adapted)
	}
	for _, want := range []string{`"handler":"oidc_session"`, `"backend":"cookie"`, `"backend":"memory"`, `"backend":"redis"`, `"{env.OIDC_COOKIE_SECRET}"`} {
		if !strings.Contains(adapted, want) {
			t.Errorf("adapted config lacks %s:\n%s", want, adapted)
		}
	}

	// The xcaddy binary runs the plugin, admin module included (the IdP
	// need not be up for Caddy to start).
	addr, admin := testenv.FreeAddr(t), testenv.FreeAddr(t)
	p := startCaddy(t, caddyOpts{
		bin:       out,
		adminAddr: admin,
		caddyfile: globalOptions(admin, t.TempDir()) + site(addr, "store memory"),
		env:       []string{"OIDC_CLIENT_SECRET=x", "OIDC_COOKIE_SECRET=" + cookieSecret},
		waitAddrs: []string{addr},
	})
	if code, body := p.adminDo(t, http.MethodGet, "/oidc_session/health", "", nil); code != http.StatusOK {
		t.Errorf("caddy-x admin /oidc_session/health: %d %s", code, body)
	}
	br := newBrowser(t)
	if resp, body := br.api("http://" + addr + "/"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("caddy-x protected page without a session: %d %q, want 401", resp.StatusCode, body)
	}
}

// buildXcaddy builds xcaddy at xcaddyVersion into dir. It is the
// equivalent of `go run github.com/caddyserver/xcaddy/cmd/xcaddy@v0.3.5`
// without that command's deprecation check, which lists all versions of
// xcaddy (GET .../@v/list): proxies that refuse version lists (403) make
// `go run pkg@version` fail although the version itself is served. The
// exact version is downloaded and built from its own module (its go.sum).
func buildXcaddy(ctx context.Context, t testing.TB, gobin, dir string) string {
	t.Helper()
	dl := exec.CommandContext(ctx, gobin, "mod", "download", "-json", xcaddyModule+"@"+xcaddyVersion)
	dl.Dir = dir
	dl.Env = append(os.Environ(), "GOWORK=off")
	dl.WaitDelay = 5 * time.Second
	js, err := dl.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(js, &info); err != nil || jerr != nil || info.Dir == "" {
		t.Fatalf("go mod download %s@%s: %v %s %s", xcaddyModule, xcaddyVersion, err, info.Error, js)
	}
	bin := filepath.Join(dir, "xcaddy")
	build := exec.CommandContext(ctx, gobin, "build", "-C", info.Dir, "-o", bin, "./cmd/xcaddy")
	build.Env = append(os.Environ(), "GOWORK=off")
	build.WaitDelay = 5 * time.Second
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build %s/cmd/xcaddy@%s: %v\n%s", xcaddyModule, xcaddyVersion, err, b)
	}
	return bin
}

// localProxy returns a GOPROXY value that puts a file:// proxy in front of
// the configured one, knowing the plugin's module (which --with replaces
// with this tree) and no version of it. xcaddy's last `go get` resolves the
// plugin's import and so asks the proxy for its versions: the public proxy
// answers 404 for an unpublished module (go then takes the replacement),
// but a proxy that answers 403 makes go fail. The local proxy answers an
// empty list; every other module falls through to the configured proxies.
func localProxy(t testing.TB, gobin, dir string) string {
	t.Helper()
	out, err := exec.Command(gobin, "env", "GOPROXY").Output()
	if err != nil {
		t.Fatalf("go env GOPROXY: %v", err)
	}
	root := filepath.Join(dir, "localproxy")
	v := filepath.Join(root, filepath.FromSlash(testenv.MainModule), "@v")
	if err := os.MkdirAll(v, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v, "list"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return "file://" + filepath.ToSlash(root) + "," + strings.TrimSpace(string(out))
}

// requiredVersion reads module's version from a go.mod require line.
func requiredVersion(t testing.TB, gomod, module string) string {
	t.Helper()
	data, err := os.ReadFile(gomod)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		if len(f) >= 2 && f[0] == module {
			return f[1]
		}
	}
	t.Fatalf("%s does not require %s", gomod, module)
	return ""
}

// checkProxyServes asks the first proxy of `go env GOPROXY` whether it
// serves module@version. When it cannot, the test fails in CI and is
// skipped otherwise.
func checkProxyServes(t testing.TB, gobin, module, version string) {
	t.Helper()
	out, err := exec.Command(gobin, "env", "GOPROXY").Output()
	if err != nil {
		t.Fatalf("go env GOPROXY: %v", err)
	}
	var proxy string
	for _, p := range strings.FieldsFunc(strings.TrimSpace(string(out)), func(r rune) bool { return r == ',' || r == '|' }) {
		if strings.HasPrefix(p, "https://") || strings.HasPrefix(p, "http://") {
			proxy = strings.TrimSuffix(p, "/")
			break
		}
	}
	if proxy == "" {
		missingNetwork(t, fmt.Sprintf("GOPROXY=%q names no HTTP proxy to fetch %s@%s from", strings.TrimSpace(string(out)), module, version))
		return
	}
	u := fmt.Sprintf("%s/%s/@v/%s.zip", proxy, module, version)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		missingNetwork(t, fmt.Sprintf("module proxy: HEAD %s: %v", u, err))
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		missingNetwork(t, fmt.Sprintf("module proxy: HEAD %s: %d", u, resp.StatusCode))
	}
}

func missingNetwork(t testing.TB, why string) {
	t.Helper()
	testenv.Missing(t, why, "xcaddy needs the Go module proxy (scripts/install-deps.sh cannot provide it)")
}
