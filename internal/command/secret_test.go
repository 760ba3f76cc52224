package command_test

import (
	"encoding/base64"
	"regexp"
	"strings"
	"testing"
)

// TestSecret: 32 random bytes as 43 base64url characters (more than the
// 32 characters the plugin requires), a new one every time.
func TestSecret(t *testing.T) {
	shape := regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		r := caddy(t, nil, "secret")
		want(t, r, 0)
		s := strings.TrimSuffix(r.stdout, "\n")
		if !shape.MatchString(s) {
			t.Fatalf("secret %q is not 43 base64url characters", s)
		}
		if b, err := base64.RawURLEncoding.DecodeString(s); err != nil || len(b) != 32 {
			t.Fatalf("secret %q does not decode to 32 bytes: %d %v", s, len(b), err)
		}
		if seen[s] {
			t.Fatalf("secret %q printed twice", s)
		}
		seen[s] = true
	}
	want(t, caddy(t, nil, "secret", "extra"), 1, "unknown command")
}
