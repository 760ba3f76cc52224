// Package testenv holds the small helpers that the test support packages
// and the process-level tests share: the repository root, free loopback
// addresses, the CI-aware skip-or-fail for a missing external component,
// and log tails.
package testenv

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// MainModule is the module path of this repository.
const MainModule = "github.com/oidc-session/oidc_session"

// InstallDeps is the hint for components that scripts/install-deps.sh
// installs.
const InstallDeps = "run scripts/install-deps.sh"

// ModuleRoot walks up from the working directory (a package directory under
// go test) to the directory whose go.mod declares MainModule.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && declaresModule(data, MainModule) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod for module %s above the working directory", MainModule)
		}
		dir = parent
	}
}

// RepoRoot is ModuleRoot, failing the test when there is none.
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func declaresModule(gomod []byte, module string) bool {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == module
		}
	}
	return false
}

// FreeAddr returns a currently free 127.0.0.1:port address. The port is
// released before returning, so a racing process could take it; callers
// that start a server on it should treat "address in use" as retryable.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on a free port: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// CI reports whether $CI is "true" or "1".
func CI() bool {
	ci := strings.ToLower(os.Getenv("CI"))
	return ci == "true" || ci == "1"
}

// Missing handles an external component the test needs but cannot use
// (why): with CI set the test fails, since CI installs everything;
// otherwise it is skipped, with hint saying how to provide the component
// (e.g. InstallDeps).
func Missing(t testing.TB, why, hint string) {
	t.Helper()
	if CI() {
		t.Fatalf("%s; CI=true so this is a failure (%s)", why, hint)
	}
	t.Skipf("%s: %s", why, hint)
}

// Tail returns the last n lines of the file at path.
func Tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	return TailString(string(data), n)
}

// TailString returns the last n lines of s.
func TailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// CorpusStrings reads the string arguments of each file of a committed
// seed corpus (Go's "go test fuzz v1" format) in the
// package's testdata/fuzz/<target>, one slice per file, for tests that
// check properties over the committed seeds.
func CorpusStrings(tb testing.TB, target string) [][]string {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", target, "*"))
	if err != nil {
		tb.Fatal(err)
	}
	var out [][]string
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			tb.Fatal(err)
		}
		var args []string
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			inner, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "string(")
			if !ok || !strings.HasSuffix(inner, ")") {
				continue
			}
			s, err := strconv.Unquote(strings.TrimSuffix(inner, ")"))
			if err != nil {
				tb.Fatalf("%s: %v", name, err)
			}
			args = append(args, s)
		}
		f.Close()
		out = append(out, args)
	}
	return out
}
