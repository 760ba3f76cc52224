package command

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// feature is one row of check's table: what the IdP advertises and what
// the plugin does with it.
type feature struct {
	Name, IdP, Plugin string
}

// pathPrefix is the plugin's default path_prefix, where its endpoints live.
const pathPrefix = "/oauth2"

// features lists what the IdP offers that the plugin uses or could use,
// and (the Plugin column) what the plugin does with it by default or with
// which subdirective.
func features(m metadata) []feature {
	yes := func(b bool, detail string) string {
		if !b {
			return "no"
		}
		return "yes" + detail
	}
	orNo := func(s string) string {
		if s == "" {
			return "no"
		}
		return s
	}
	list := func(l []string) string {
		if len(l) == 0 {
			return "not advertised"
		}
		return strings.Join(l, " ")
	}
	pkce := "sends it anyway; add disable_pkce only if the IdP rejects it"
	if slices.Contains(m.CodeChallengeMethods, "S256") {
		pkce = "code_challenge S256 at every login"
	}
	algs := "verifies RS256 (go-oidc's default when none is advertised)"
	if len(m.IDTokenAlgs) > 0 {
		algs = "verifies " + strings.Join(filter(m.IDTokenAlgs, verifiable), " ")
		if len(filter(m.IDTokenAlgs, verifiable)) == 0 {
			algs = "cannot verify any of them"
		}
	}
	userinfo := "no userinfo claims (fetch_userinfo has nothing to ask)"
	if m.UserinfoEndpoint != "" {
		userinfo = "fetch_userinfo auto: its claims when the ID token lacks a scope's"
	}
	endSession := "sign_out ends the session here only"
	if m.EndSessionEndpoint != "" {
		endSession = "sign_out sends the browser on (RP-initiated logout)"
	}
	channel := func(supported bool, endpoint string) string {
		if !supported {
			return "-"
		}
		return pathPrefix + "/" + endpoint + " (store memory or redis)"
	}
	used := func(offered bool, how string) string {
		if offered {
			return how
		}
		return "-"
	}
	return []feature{
		{"PKCE S256", list(m.CodeChallengeMethods), pkce},
		{"ID token signing", list(m.IDTokenAlgs), algs},
		{"Token endpoint auth", list(m.TokenAuthMethods), clientAuth(m.TokenAuthMethods)},
		{"userinfo_endpoint", orNo(m.UserinfoEndpoint), userinfo},
		{"end_session_endpoint", orNo(m.EndSessionEndpoint), endSession},
		{"Back-channel logout", yes(m.BackchannelLogout, sessionDetail(m.BackchannelLogoutSession)), channel(m.BackchannelLogout, "backchannel_logout")},
		{"Front-channel logout", yes(m.FrontchannelLogout, sessionDetail(m.FrontchannelLogoutSession)), channel(m.FrontchannelLogout, "frontchannel_logout")},
		{"revocation_endpoint", orNo(m.RevocationEndpoint), used(m.RevocationEndpoint != "", "sign_out revokes the refresh and access tokens")},
		{"PAR", parDetail(m), used(m.PAREndpoint != "", "par auto: every login is pushed")},
		{"DPoP", list(m.DPoPAlgs), used(len(m.DPoPAlgs) > 0, "dpop on binds the session's tokens to its own key")},
		{"iss parameter (RFC 9207)", yes(m.IssParameter, ""), used(m.IssParameter, "required in every authorization response")},
	}
}

func sessionDetail(sid bool) string {
	if sid {
		return ", with sid"
	}
	return ", without sid"
}

func parDetail(m metadata) string {
	switch {
	case m.PAREndpoint == "" && !m.RequirePAR:
		return "no"
	case m.RequirePAR:
		return orDash(m.PAREndpoint) + " (required)"
	}
	return m.PAREndpoint
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// clientAuth says how the plugin authenticates at the token endpoint,
// following the choice in package oidc (authStyle): HTTP Basic when
// advertised, else form parameters.
func clientAuth(methods []string) string {
	switch {
	case slices.Contains(methods, "client_secret_basic"):
		return "client_secret_basic"
	case slices.Contains(methods, "client_secret_post"):
		return "client_secret_post"
	case slices.Contains(methods, "none"):
		return "public client (no client_secret)"
	case len(methods) == 0:
		return "client_secret_basic, or form parameters if refused"
	}
	return "none of them: the plugin sends a client secret"
}

func filter(l []string, keep func(string) bool) []string {
	var out []string
	for _, s := range l {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}

// assess lists what stops the plugin from using the IdP (problems) and
// what may (warnings).
func assess(m metadata, keys []jwk) (problems, warnings []string) {
	for _, req := range []struct{ name, value string }{
		{"authorization_endpoint", m.AuthorizationEndpoint},
		{"token_endpoint", m.TokenEndpoint},
		{"jwks_uri", m.JWKSURI},
	} {
		if req.value == "" {
			problems = append(problems, "the discovery document has no "+req.name)
		}
	}
	if len(m.ResponseTypes) > 0 && !slices.Contains(m.ResponseTypes, "code") {
		problems = append(problems, "response_types_supported lacks \"code\": the IdP does not offer the authorization code flow")
	}
	if len(m.IDTokenAlgs) > 0 && len(filter(m.IDTokenAlgs, verifiable)) == 0 {
		problems = append(problems, "ID tokens are signed with "+strings.Join(m.IDTokenAlgs, " ")+
			", none of which the plugin verifies ("+strings.Join(verifiableAlgs, " ")+")")
	}
	if m.RequirePAR && m.PAREndpoint == "" {
		problems = append(problems, "the IdP requires pushed authorization requests but advertises no pushed_authorization_request_endpoint")
	}
	if m.JWKSURI != "" && keys != nil {
		usable := 0
		for _, k := range keys {
			if k.Leaked {
				problems = append(problems, fmt.Sprintf("the key set publishes private or secret key material (key %q): the IdP's signing key must be considered stolen", printable(k.ID)))
			}
			if k.Usable {
				usable++
			}
		}
		if usable == 0 {
			problems = append(problems, "the key set has no key the plugin can verify ID tokens with")
		}
	}
	if len(m.CodeChallengeMethods) > 0 && !slices.Contains(m.CodeChallengeMethods, "S256") {
		warnings = append(warnings, "PKCE S256 is not advertised: the plugin sends it anyway; if logins fail over code_challenge, add disable_pkce")
	}
	if len(m.TokenAuthMethods) > 0 && !slices.ContainsFunc(m.TokenAuthMethods, func(s string) bool {
		return s == "client_secret_basic" || s == "client_secret_post" || s == "none"
	}) {
		warnings = append(warnings, "the IdP advertises only "+strings.Join(m.TokenAuthMethods, " ")+
			" for the token endpoint; the plugin authenticates with a client secret (basic or post) or as a public client")
	}
	return problems, warnings
}

// writeReport prints what check found, in the order an operator reads it.
func writeReport(out io.Writer, r checkResult) error {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "Issuer\t%s (the discovery document agrees)\n", printable(r.meta.Issuer))
	fmt.Fprintf(w, "Discovery\t%s\n", printable(r.discoveryURL))
	switch {
	case r.meta.JWKSURI == "":
	case r.jwksErr != nil:
		fmt.Fprintf(w, "Keys\t%s: %s\n", printable(r.meta.JWKSURI), printable(r.jwksErr.Error()))
	default:
		fmt.Fprintf(w, "Keys\t%s: %d usable of %d\n", printable(r.meta.JWKSURI), countUsable(r.keys), len(r.keys))
		for _, k := range r.keys {
			fmt.Fprintf(w, "\t  %s\n", describeKey(k))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "FEATURE\tIDP\tPLUGIN")
	for _, f := range features(r.meta) {
		fmt.Fprintf(w, "%s\t%s\t%s\n", f.Name, printable(f.IdP), f.Plugin)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	section(out, "Warnings", r.warnings)
	section(out, "Problems", r.problems)
	if len(r.problems) == 0 && r.jwksErr == nil {
		fmt.Fprintf(out, "\nSuggested configuration:\n\n%s\n", strings.Join(suggestBlock(r.meta, r.opts), "\n"))
		section(out, "Register at the IdP", registrations(r.meta, r.opts.site))
		fmt.Fprintln(out, "\nMake the cookie secret with: caddy oidc-session secret")
	}
	return nil
}

func section(out io.Writer, title string, lines []string) {
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(out, "\n%s:\n", title)
	for _, l := range lines {
		fmt.Fprintf(out, "  - %s\n", printable(l))
	}
}

func countUsable(keys []jwk) int {
	n := 0
	for _, k := range keys {
		if k.Usable {
			n++
		}
	}
	return n
}

func describeKey(k jwk) string {
	s := fmt.Sprintf("%s kid=%s alg=%s use=%s", orDash(k.Type), orDash(k.ID), orDash(k.Alg), orDash(k.Use))
	if k.Note != "" {
		s += ": " + k.Note
	}
	return printable(s)
}

// suggestBlock is an oidc_session block for this IdP: the issuer exactly
// as discovered, secrets as environment placeholders, the scopes the IdP
// offers of those the plugin makes use of, and a server-side store when
// the IdP can end sessions through the back or front channel.
func suggestBlock(m metadata, o checkOptions) []string {
	clientID := o.clientID
	if clientID == "" {
		clientID = "{env.OIDC_CLIENT_ID}"
	}
	lines := []string{
		"oidc_session {",
		"\tissuer " + m.Issuer,
		"\tclient_id " + clientID,
	}
	if !(len(m.TokenAuthMethods) == 1 && m.TokenAuthMethods[0] == "none") {
		lines = append(lines, "\tclient_secret {env.OIDC_CLIENT_SECRET}")
	}
	lines = append(lines, "\tscopes "+strings.Join(suggestScopes(m.Scopes), " "))
	lines = append(lines,
		"\tcookie {",
		"\t\tsecret {env.OIDC_COOKIE_SECRET}",
		"\t}",
	)
	if m.BackchannelLogout || m.FrontchannelLogout {
		lines = append(lines,
			"\t# IdP-initiated logout ends sessions only in a server-side store;",
			"\t# with several Caddy instances use store redis { url ... } instead.",
			"\tstore memory",
		)
	}
	return append(lines, "}")
}

// suggestScopes keeps openid and, of email, profile, groups and
// offline_access (for a refresh token), those the IdP lists; without
// scopes_supported, the plugin's default.
func suggestScopes(supported []string) []string {
	if len(supported) == 0 {
		return []string{"openid", "email", "profile"}
	}
	scopes := []string{"openid"}
	for _, s := range []string{"email", "profile", "groups", "offline_access"} {
		if slices.Contains(supported, s) {
			scopes = append(scopes, s)
		}
	}
	return scopes
}

// registrations are the URLs to register for the client at the IdP.
func registrations(m metadata, site string) []string {
	if site == "" {
		site = "https://<your site>"
	}
	regs := []string{"redirect URI: " + site + pathPrefix + "/callback"}
	if m.EndSessionEndpoint != "" {
		regs = append(regs, "post-logout redirect URI: "+site+"/")
	}
	if m.BackchannelLogout {
		regs = append(regs, "back-channel logout URI: "+site+pathPrefix+"/backchannel_logout")
	}
	if m.FrontchannelLogout {
		regs = append(regs, "front-channel logout URI: "+site+pathPrefix+"/frontchannel_logout")
	}
	return regs
}
