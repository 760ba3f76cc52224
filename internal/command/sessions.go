package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/oidc-session/oidc_session/sessions"
)

// sessionsPath is the plugin's admin API for sessions (admin.go of the
// plugin): GET lists, DELETE ends.
const sessionsPath = "/oidc_session/sessions"

func sessionsCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "sessions [--admin <addr>] [--json] list|end",
		Short: "List and end sessions through Caddy's admin API",
		Long: `Lists and ends the sessions of the memory and Redis stores through the
plugin's admin API (GET and DELETE /oidc_session/sessions), as a table,
or with --json exactly as the API answers, for scripts. Sessions of the
cookie store live only in the browsers: they are named as not listed.

  caddy oidc-session sessions list [--sub <sub>] [--provider <name>]
  caddy oidc-session sessions end <id>
  caddy oidc-session sessions end --sub <sub> [--provider <name>]
  caddy oidc-session sessions end --provider <name>
  caddy oidc-session sessions end --all

On a site with several identity providers, --provider narrows to the
sessions of one (a subject is unique per provider only).

The admin address is --admin, else the admin address in --config, else
Caddy's default (localhost:2019, or $CADDY_ADMIN). unix/<path> reaches a
unix socket.

Exit codes: 0 success; 1 bad flags or arguments; 2 the admin API could
not be reached or failed (a store error while listing included); 3 end
<id> found no such session.`,
	}
	groupOf(c)
	c.PersistentFlags().String("admin", "", "Caddy's admin address, host:port or unix/<path> (default: from --config, else localhost:2019 or $CADDY_ADMIN)")
	c.PersistentFlags().StringP("config", "c", "", "Read the admin address from this Caddy config file")
	c.PersistentFlags().StringP("adapter", "a", "", "Name of the adapter of --config")
	c.PersistentFlags().Bool("json", false, "Print the admin API's JSON answer instead of a table")
	c.AddCommand(listCommand(), endCommand())
	return c
}

func listCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "list [--sub <sub>] [--provider <name>]",
		Short: "List the sessions of the server-side stores",
		Args:  cobra.NoArgs,
	}
	c.Flags().String("sub", "", "Only the sessions of this subject (user id)")
	c.Flags().String("provider", "", "Only the sessions of this identity provider (its provider block's name)")
	run(c, func(fl caddycmd.Flags, out io.Writer) (int, error) {
		q := url.Values{}
		for _, name := range []string{"sub", "provider"} {
			if fl.Changed(name) {
				if fl.String(name) == "" {
					return usageError("--%s needs a value", name)
				}
				q.Set(name, fl.String(name))
			}
		}
		path := sessionsPath
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		return callAdmin(fl, out, http.MethodGet, path, writeList)
	})
	return c
}

func endCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "end <id> | --sub <sub> [--provider <name>] | --provider <name> | --all",
		Short: "End one session, a user's sessions, one provider's, or all of them",
		Args:  cobra.MaximumNArgs(1),
	}
	c.Flags().String("sub", "", "End every session of this subject (user id)")
	c.Flags().String("provider", "", "End only the sessions of this identity provider (with --sub: that user's there)")
	c.Flags().Bool("all", false, "End every session of every server-side store")
	run(c, func(fl caddycmd.Flags, out io.Writer) (int, error) {
		path, err := endPath(fl)
		if err != nil {
			return exitUsage, err
		}
		return callAdmin(fl, out, http.MethodDelete, path, writeEnded)
	})
	return c
}

// endPath is the DELETE of exactly one of <id>, --sub (with or without
// --provider), --provider or --all. A DELETE without an ID, sub or
// provider ends every session, so it is sent only for an explicit --all,
// never for an empty --sub, --provider or ID.
func endPath(fl caddycmd.Flags) (string, error) {
	n := fl.NArg()
	if fl.Changed("sub") || fl.Changed("provider") {
		n++
	}
	if fl.Bool("all") {
		n++
	}
	if n != 1 {
		return "", errors.New("give exactly one of <id>, --sub <sub> (and --provider <name>), --provider <name> or --all")
	}
	switch {
	case fl.NArg() == 1:
		id := fl.Arg(0)
		if id == "" || id == "." || id == ".." || strings.Contains(id, "/") {
			return "", fmt.Errorf("%q is not a session ID (see sessions list)", printable(id))
		}
		return sessionsPath + "/" + url.PathEscape(id), nil
	case fl.Changed("sub") || fl.Changed("provider"):
		q := url.Values{}
		for _, name := range []string{"sub", "provider"} {
			if fl.Changed(name) {
				if fl.String(name) == "" {
					return "", fmt.Errorf("--%s needs a value; to end every session use --all", name)
				}
				q.Set(name, fl.String(name))
			}
		}
		return sessionsPath + "?" + q.Encode(), nil
	}
	return sessionsPath, nil
}

// callAdmin makes the call and prints its answer: with --json the bytes
// as they come (the answer is still read, to find a store error at its
// end), otherwise through write.
func callAdmin(fl caddycmd.Flags, out io.Writer, method, path string, write func(io.Writer, io.Reader) error) (int, error) {
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("admin"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return exitUsage, err
	}
	a, err := newAdminClient(addr)
	if err != nil {
		return exitUsage, err
	}
	resp, err := a.do(context.Background(), method, path)
	if err != nil {
		return adminExit(err), err
	}
	defer resp.Body.Close()
	if fl.Bool("json") {
		tee := io.TeeReader(resp.Body, out)
		err = write(io.Discard, tee)
		if _, cerr := io.Copy(io.Discard, tee); err == nil {
			err = cerr
		}
	} else {
		err = write(out, resp.Body)
	}
	if err != nil {
		return exitUnreachable, err
	}
	return 0, nil
}

// writeList reads the admin API's list as it streams in (a store may hold
// many sessions) and prints a table.
func writeList(out io.Writer, body io.Reader) error {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tSTORE\tPROVIDER\tSUB\tEMAIL\tCREATED\tLAST SEEN\tEXPIRES")
	dec := json.NewDecoder(body)
	var count, rows int
	var unmanaged []string
	var storeErr string
	err := eachMember(dec, func(key string) error {
		switch key {
		case "sessions":
			return eachElement(dec, func() error {
				var m struct {
					sessions.Meta
					Provider string `json:"provider"`
				}
				if err := dec.Decode(&m); err != nil {
					return err
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", printable(m.ID), printable(m.Store), orDash(printable(m.Provider)),
					printable(m.Subject), orDash(printable(m.Email)), when(m.CreatedAt), when(m.LastSeen), when(m.ExpiresAt))
				rows++
				return nil
			})
		case "count":
			return dec.Decode(&count)
		case "unmanaged":
			return dec.Decode(&unmanaged)
		case "error":
			return dec.Decode(&storeErr)
		}
		return dec.Decode(new(json.RawMessage))
	})
	if err != nil {
		return fmt.Errorf("reading the session list: %w", err)
	}
	if rows > 0 {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(out, plural(count, "session"))
	notManaged(out, unmanaged, "listed")
	if storeErr != "" {
		return fmt.Errorf("the store failed after listing %s: %s", plural(count, "session"), printable(storeErr))
	}
	return nil
}

// writeEnded prints the answer of a DELETE.
func writeEnded(out io.Writer, body io.Reader) error {
	var r struct {
		Ended     int      `json:"ended"`
		Unmanaged []string `json:"unmanaged"`
	}
	if err := json.NewDecoder(body).Decode(&r); err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	fmt.Fprintln(out, "ended "+plural(r.Ended, "session"))
	notManaged(out, r.Unmanaged, "ended")
	return nil
}

func notManaged(out io.Writer, stores []string, what string) {
	for _, s := range stores {
		fmt.Fprintf(out, "not %s: the sessions of the %s store, which live in the browsers\n", what, printable(s))
	}
}

// eachMember calls fn with each key of the JSON object dec is at; fn
// must consume the value.
func eachMember(dec *json.Decoder, fn func(key string) error) error {
	if err := expect(dec, '{'); err != nil {
		return err
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := t.(string)
		if err := fn(key); err != nil {
			return err
		}
	}
	return expect(dec, '}')
}

// eachElement calls fn for each element of the JSON array dec is at; fn
// must consume the element.
func eachElement(dec *json.Decoder, fn func() error) error {
	if err := expect(dec, '['); err != nil {
		return err
	}
	for dec.More() {
		if err := fn(); err != nil {
			return err
		}
	}
	return expect(dec, ']')
}

func expect(dec *json.Decoder, delim json.Delim) error {
	t, err := dec.Token()
	if err != nil {
		return err
	}
	if t != delim {
		return fmt.Errorf("want %v, got %v", delim, t)
	}
	return nil
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
