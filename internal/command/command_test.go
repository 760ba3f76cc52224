package command_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// The plugin (and through it this package) and Caddy's standard
	// modules, as in a Caddy built with the plugin; the Caddyfile adapter
	// reads the suggested configuration.
	_ "github.com/oidc-session/oidc_session/internal/testcaddy"
)

// mainEnv makes the test binary run Caddy's command line instead of the
// tests: the commands run as they do in a Caddy binary, with Caddy's
// exit codes, and their output is captured.
const mainEnv = "OIDC_SESSION_TEST_CADDY_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		caddycmd.Main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// result is what one run of the command line did.
type result struct {
	code           int
	stdout, stderr string
	// logged is stderr with the messages of Caddy's log lines decoded
	// (errors are logged as JSON when stderr is not a terminal).
	logged string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// caddy runs `caddy oidc-session <args>` and returns what it did.
func caddy(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], append([]string{"oidc-session"}, args...)...)
	cmd.Env = append(append(os.Environ(), mainEnv+"=1"), env...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	for _, line := range strings.Split(r.stderr, "\n") {
		var entry struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil {
			line = entry.Msg
		}
		r.logged += line + "\n"
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("caddy oidc-session %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// want fails the test unless r exited with code and its output has each
// of the strings.
func want(t *testing.T, r result, code int, has ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("want exit %d, got %s", code, r)
	}
	for _, s := range has {
		if !strings.Contains(r.stdout, s) && !strings.Contains(r.logged, s) {
			t.Errorf("output lacks %q:\n%s", s, r)
		}
	}
}

// adapt runs a Caddyfile site through Caddy's adapter, as `caddy adapt`
// and `caddy run` would, failing on any error.
func adapt(t *testing.T, site string) []byte {
	t.Helper()
	js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte("http://example.com {\n"+site+"\n}\n"), nil)
	if err != nil {
		t.Fatalf("the suggested configuration does not adapt: %v\n%s", err, site)
	}
	return js
}

func TestGroupCommands(t *testing.T) {
	want(t, caddy(t, nil), 0, "secret", "check", "sessions", "Exit codes")
	want(t, caddy(t, nil, "bogus"), 1, `unknown command "bogus"`)
	want(t, caddy(t, nil, "sessions"), 0, "list", "end")
	want(t, caddy(t, nil, "sessions", "bogus"), 1, `unknown command "bogus"`)
}
