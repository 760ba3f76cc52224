// Package command adds `caddy oidc-session` to Caddy's command line, the
// operator tools of the oidc_session plugin:
//
//	caddy oidc-session secret                   a new random cookie secret
//	caddy oidc-session check --issuer <url>     what an IdP offers, and the config it suggests
//	caddy oidc-session sessions list|end ...    the plugin's admin API from the shell
//
// The plugin's root package imports this one, so every Caddy built with the
// plugin (xcaddy or cmd/caddy) has the command.
package command

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// Exit codes of the subcommands. Caddy's command line turns a returned
// status into the process's exit code (caddycmd.WrapCommandFuncForCobra).
const (
	// exitUsage: bad flags or arguments (cobra's own flag errors exit 1
	// too).
	exitUsage = 1
	// exitUnreachable: the IdP or Caddy's admin API could not be reached,
	// did not answer in time, or failed (5xx).
	exitUnreachable = 2
	// exitRefused: an answer that says no: check found the IdP unusable as
	// it is (issuer mismatch, no usable keys...); sessions end <id> found no
	// such session.
	exitRefused = 3
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "oidc-session",
		Usage: "secret|check|sessions",
		Short: "Operator tools of the oidc_session plugin: cookie secrets, IdP checks, sessions",
		Long: `
Operator tools of the oidc_session plugin.

  secret     print a new random cookie secret
  check      fetch an IdP's discovery document and keys, show what it
             offers that the plugin uses, and suggest an oidc_session block
  sessions   list and end the sessions of the memory and Redis stores
             through Caddy's admin API

Exit codes: 0 success; 1 bad flags or arguments; 2 the IdP or the admin
API could not be reached or failed; 3 check found the IdP unusable as
configured, or sessions end <id> found no such session.

Run 'caddy oidc-session <command> --help' for each command's flags.
`,
		CobraFunc: func(cmd *cobra.Command) {
			groupOf(cmd)
			cmd.AddCommand(secretCommand(), checkCommand(), sessionsCommand())
		},
	})
}

// groupOf makes c a command that only holds subcommands: without one it
// prints its help, and an unknown one is a usage error (cobra would
// otherwise print the help and exit 0).
func groupOf(c *cobra.Command) {
	c.Args = cobra.NoArgs
	c.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
}

// usageError is a bad flag or argument: exit code 1.
func usageError(format string, args ...any) (int, error) {
	return exitUsage, fmt.Errorf(format, args...)
}

// run wraps fn as a cobra RunE with Caddy's exit code handling, giving it
// the command's standard output (tests capture it).
func run(c *cobra.Command, fn func(fl caddycmd.Flags, out io.Writer) (int, error)) {
	c.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
		code, err := fn(fl, c.OutOrStdout())
		if code != 0 && err == nil {
			// Caddy exits 0 for status 1 without an error.
			err = errors.New("failed")
		}
		return code, err
	})
}

// printable makes a value from the network (an IdP's document, a user's
// claims from the admin API) safe to print on a terminal: control
// characters, which could move the cursor or rewrite what the operator
// sees, are shown escaped.
func printable(s string) string {
	if strings.IndexFunc(s, isUnsafe) < 0 {
		return s
	}
	q := fmt.Sprintf("%+q", s)
	return q[1 : len(q)-1]
}

func isUnsafe(r rune) bool {
	return unicode.IsControl(r) || r == unicode.ReplacementChar || unicode.Is(unicode.Bidi_Control, r)
}
