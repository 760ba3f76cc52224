package oidcsession

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The sign-in chooser: on a site with several identity providers, a login
// that names none (and whose login_hint is of no provider's domains) shows
// a page with one button per provider. It is plain HTML, a GET form to
// <prefix>/start that works without JavaScript and keeps the return URL.

// ChooserData is what the chooser template is executed with (the
// chooser_template file gets the same).
type ChooserData struct {
	// Action is the path of <path_prefix>/start, where the form goes
	// (method GET, fields rd, login_hint and provider).
	Action string
	// ReturnTo is the return URL of the login, already checked: the value
	// of the rd field.
	ReturnTo string
	// LoginHint is the login_hint (or email) the login was started with,
	// if any.
	LoginHint string
	// AskEmail is true when some provider has domains: a field named
	// email (sent to Action with rd) then picks the provider of its
	// domain, or comes back to the chooser.
	AskEmail bool
	// Providers are the identity providers in the configured order.
	Providers []ChooserProvider
}

// ChooserProvider is one button of the chooser.
type ChooserProvider struct {
	// Name is the provider's name: the value of the provider field.
	Name string
	// Label is its label (default: the name).
	Label string
	// URL is the whole login URL of the provider (<path_prefix>/start
	// with provider, rd and login_hint), for a link instead of a button.
	URL string
}

// chooserCSP allows the built-in page's inline style and nothing else to
// load; a form may still be sent (to <prefix>/start, which redirects to
// the IdP).
const chooserCSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'"

var defaultChooser = template.Must(template.New("chooser").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Sign in</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 26rem; margin: 4rem auto; padding: 0 1rem; line-height: 1.5; }
button { display: block; width: 100%; margin: 0.75rem 0; padding: 0.75rem 1rem; font-size: 1rem; cursor: pointer; }
button:focus-visible, input:focus-visible { outline: 3px solid; outline-offset: 2px; }
input[type=email] { font-size: 1rem; padding: 0.5rem; width: 100%; box-sizing: border-box; margin: 0.25rem 0; }
</style>
</head>
<body>
<main>
<h1 id="title">Sign in</h1>
<form method="get" action="{{.Action}}" aria-labelledby="title">
<input type="hidden" name="rd" value="{{.ReturnTo}}">
{{- with .LoginHint}}
<input type="hidden" name="login_hint" value="{{.}}">
{{- end}}
<p>Choose where you have an account:</p>
{{range .Providers -}}
<button type="submit" name="provider" value="{{.Name}}">{{.Label}}</button>
{{end -}}
</form>
{{- if .AskEmail}}
<form method="get" action="{{.Action}}">
<input type="hidden" name="rd" value="{{.ReturnTo}}">
<p><label for="email">Or sign in with your email address:</label><br>
<input id="email" type="email" name="email" autocomplete="email" required value="{{.LoginHint}}">
<button type="submit">Continue</button></p>
</form>
{{- end}}
</main>
</body>
</html>
`))

// loadChooser is the chooser template of chooser_template, or the
// built-in one.
func loadChooser(file string) (*template.Template, error) {
	if file == "" {
		return defaultChooser, nil
	}
	t, err := template.ParseFiles(file)
	if err != nil {
		return nil, fmt.Errorf("chooser_template: %w", err)
	}
	return t, nil
}

// checkChooser executes a chooser template once with sample data of the
// configured providers, so that one using a field the data does not have
// stops Caddy at start instead of failing every login.
func (h *Handler) checkChooser(t *template.Template) error {
	data := ChooserData{Action: h.PathPrefix + "/start", ReturnTo: "/", LoginHint: "user@example.com", AskEmail: true}
	for _, b := range h.Providers {
		data.Providers = append(data.Providers, ChooserProvider{Name: b.Name, Label: b.Name, URL: h.PathPrefix + "/start?provider=" + b.Name})
	}
	if err := t.Execute(io.Discard, data); err != nil {
		return fmt.Errorf("chooser_template: executing it with sample data: %w", err)
	}
	return nil
}

// serveChooser answers a login that could go to several IdPs with the
// chooser page. returnTo has been checked.
func (h *Handler) serveChooser(w http.ResponseWriter, r *http.Request, returnTo, loginHint string) error {
	data := ChooserData{Action: h.PathPrefix + "/start", ReturnTo: returnTo, LoginHint: loginHint}
	for _, p := range h.idps {
		data.Providers = append(data.Providers, ChooserProvider{Name: p.name, Label: p.label, URL: h.loginURL(p, returnTo, loginHint)})
		data.AskEmail = data.AskEmail || len(p.domains) > 0
	}
	var page bytes.Buffer
	if err := h.chooser.Execute(&page, data); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("chooser_template: %w", err))
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", chooserCSP)
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, err := w.Write(page.Bytes())
	return err
}

// loginURL is the path that starts a login with p coming back to
// returnTo.
func (h *Handler) loginURL(p *idp, returnTo, loginHint string) string {
	q := url.Values{"provider": {p.name}}
	if returnTo != "" {
		q.Set("rd", returnTo)
	}
	if loginHint != "" {
		q.Set("login_hint", loginHint)
	}
	return h.PathPrefix + "/start?" + q.Encode()
}
