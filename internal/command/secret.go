package command

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// secretBytes is the entropy of a new cookie secret: 256 bits, the size of
// the AES-256 keys derived from it. Base64url makes it 43 characters, over
// the 32 the plugin requires.
const secretBytes = 32

func secretCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "secret",
		Short: "Print a new random cookie secret",
		Long: `Prints a new cookie secret: 32 bytes from the operating system's
cryptographic random source, base64url without padding (43 characters).
Put it in the environment of Caddy and refer to it as
cookie { secret {env.OIDC_COOKIE_SECRET} }; to rotate, put the new secret
first and keep the old one after it until the old cookies have expired.

  export OIDC_COOKIE_SECRET=$(caddy oidc-session secret)`,
		Args: cobra.NoArgs,
	}
	run(c, func(_ caddycmd.Flags, out io.Writer) (int, error) {
		_, err := fmt.Fprintln(out, newSecret())
		return 0, err
	})
	return c
}

// newSecret returns secretBytes random bytes, base64url without padding.
// crypto/rand.Read never fails (it crashes the program when the system's
// source does).
func newSecret() string {
	b := make([]byte, secretBytes)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
