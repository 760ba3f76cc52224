package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// defaultCheckTimeout bounds each request of check, as provider_timeout
// bounds the plugin's.
const defaultCheckTimeout = 10 * time.Second

// checkOptions are check's flags, validated.
type checkOptions struct {
	issuer   string
	clientID string
	site     string // scheme://host of the site, for the URLs to register; may be ""
	timeout  time.Duration
}

// checkResult is what check found, for writeReport.
type checkResult struct {
	opts         checkOptions
	discoveryURL string
	meta         metadata
	keys         []jwk
	jwksErr      error
	problems     []string
	warnings     []string
}

func checkCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "check --issuer <url> [--client-id <id>] [--site <url>] [--timeout <duration>]",
		Short: "Check an IdP for the plugin and suggest its configuration",
		Long: `Fetches the IdP's discovery document (<issuer>/.well-known/openid-configuration)
and its key set as the plugin would, then prints what the IdP offers that
the plugin uses (PKCE, signing algorithms, client authentication, userinfo,
RP-initiated, back- and front-channel logout, revocation, PAR, DPoP, the
RFC 9207 iss parameter), what stops the plugin from using it, and an
oidc_session block with the URLs to register at the IdP.

The issuer must equal the document's issuer character for character (the
ID tokens' iss claim must match it); check says exactly what differs, such
as a trailing slash.

Exit codes: 0 the plugin can use the IdP (warnings may be printed); 1 bad
flags; 2 the discovery document or the key set could not be fetched
(network error, timeout, 5xx); 3 the IdP answered but cannot be used as
configured (issuer mismatch, 4xx, a broken document, no usable key, a
requirement the plugin does not meet).`,
		Args: cobra.NoArgs,
	}
	c.Flags().String("issuer", "", "The IdP's issuer URL, as it would be in the issuer subdirective (required)")
	c.Flags().String("client-id", "", "This site's client id at the IdP, for the suggested configuration")
	c.Flags().String("site", "", "The site's URL (https://app.example.com), for the URLs to register at the IdP")
	c.Flags().Duration("timeout", defaultCheckTimeout, "How long each request to the IdP may take")
	run(c, func(fl caddycmd.Flags, out io.Writer) (int, error) {
		opts, err := checkOptionsFrom(fl)
		if err != nil {
			return exitUsage, err
		}
		return runCheck(context.Background(), out, opts)
	})
	return c
}

func checkOptionsFrom(fl caddycmd.Flags) (checkOptions, error) {
	o := checkOptions{
		issuer:   fl.String("issuer"),
		clientID: fl.String("client-id"),
		timeout:  fl.Duration("timeout"),
	}
	if o.issuer == "" {
		return o, errors.New("--issuer is required")
	}
	if err := absoluteURL(o.issuer); err != nil {
		return o, fmt.Errorf("--issuer: %w", err)
	}
	if strings.IndexFunc(o.clientID, unicode.IsSpace) >= 0 || strings.IndexFunc(o.clientID, isUnsafe) >= 0 {
		return o, errors.New("--client-id: spaces and control characters are not allowed")
	}
	if s := fl.String("site"); s != "" {
		if err := absoluteURL(s); err != nil {
			return o, fmt.Errorf("--site: %w", err)
		}
		u, _ := url.Parse(s)
		o.site = u.Scheme + "://" + u.Host
	}
	if o.timeout <= 0 {
		return o, errors.New("--timeout must be positive")
	}
	return o, nil
}

// absoluteURL accepts an http or https URL with a host and nothing that
// could not be written as one Caddyfile token.
func absoluteURL(s string) error {
	if strings.IndexFunc(s, unicode.IsSpace) >= 0 || strings.IndexFunc(s, isUnsafe) >= 0 {
		return errors.New("spaces and control characters are not allowed")
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

// runCheck fetches discovery and keys, prints the report and returns the
// exit code.
func runCheck(ctx context.Context, out io.Writer, o checkOptions) (int, error) {
	client := &http.Client{Timeout: o.timeout}
	r := checkResult{opts: o, discoveryURL: wellKnownURL(o.issuer)}
	body, err := fetch(ctx, client, r.discoveryURL)
	if err != nil {
		return fetchExit(err), fmt.Errorf("discovery document %w", err)
	}
	r.meta, r.warnings, err = parseMetadata(body)
	if err != nil {
		return exitRefused, fmt.Errorf("discovery document %s: %w", r.discoveryURL, err)
	}
	if diff := issuerMismatch(o.issuer, r.meta.Issuer); diff != "" {
		writeMismatch(out, o.issuer, r.meta.Issuer, r.discoveryURL, diff)
		return exitRefused, fmt.Errorf("issuer mismatch: %s", diff)
	}
	if r.meta.JWKSURI != "" {
		var jwks []byte
		if jwks, r.jwksErr = fetch(ctx, client, r.meta.JWKSURI); r.jwksErr == nil {
			r.keys, r.jwksErr = analyzeJWKS(jwks)
		}
	}
	var warnings []string
	r.problems, warnings = assess(r.meta, r.keys)
	r.warnings = append(r.warnings, warnings...)
	if err := writeReport(out, r); err != nil {
		return exitUsage, err
	}
	switch {
	case r.jwksErr != nil:
		return fetchExit(r.jwksErr), fmt.Errorf("key set %w", r.jwksErr)
	case len(r.problems) > 0:
		return exitRefused, fmt.Errorf("the plugin cannot use this IdP as it is: %s", printable(strings.Join(r.problems, "; ")))
	}
	return 0, nil
}

// fetchExit is 2 for what could not be reached, 3 for a wrong answer.
func fetchExit(err error) int {
	var fe *fetchError
	if errors.As(err, &fe) && fe.Unreachable {
		return exitUnreachable
	}
	return exitRefused
}

// writeMismatch explains an issuer mismatch and how to resolve it.
func writeMismatch(out io.Writer, given, discovered, docURL, diff string) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "Issuer mismatch")
	fmt.Fprintf(w, "  --issuer\t%s\n", given)
	fmt.Fprintf(w, "  discovery document\t%s\n", docURL)
	fmt.Fprintf(w, "  says issuer\t%s\n", orDash(printable(discovered)))
	fmt.Fprintf(w, "  difference\t%s\n", printable(diff))
	_ = w.Flush()
	fmt.Fprint(out, "\nThe plugin compares the two character for character (ID tokens carry the\nIdP's form in iss, and it must match).\n")
	d := printable(discovered)
	switch {
	case discovered == "":
		fmt.Fprintln(out, "The IdP must name its issuer in the discovery document.")
	case strings.EqualFold(strings.TrimSuffix(given, "/"), strings.TrimSuffix(discovered, "/")):
		fmt.Fprintf(out, "Use: issuer %s\n", d)
	default:
		fmt.Fprintf(out, "If %s is the IdP's address, use: issuer %s\nOtherwise correct the issuer configured at the IdP.\n", d, d)
	}
}
