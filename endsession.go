package oidcsession

import (
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/url"
)

// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): the browser
// is sent to the IdP's end_session_endpoint with id_token_hint, client_id
// and post_logout_redirect_uri. By default the parameters travel in an
// auto-submitted POST form, which the spec requires OPs to accept: in a
// redirect's Location they would put the user's ID token into Caddy's access
// log (which redacts cookies and Authorization, not Location) and into the
// IdP's. end_session_method get keeps the redirect for IdPs without POST.

// endSessionScript submits the form; the page's Content-Security-Policy
// allows exactly this script (by its hash) and nothing else. The form's
// button is visible, not in a noscript: where the script cannot run (a
// site-wide CSP that replaces this page's), the user can still go on to
// the IdP, which noscript would not show with JavaScript merely blocked.
const endSessionScript = `document.forms[0].submit()`

var (
	endSessionScriptHash = func() string {
		sum := sha256.Sum256([]byte(endSessionScript))
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}()
	endSessionCSP = "default-src 'none'; script-src " + endSessionScriptHash + "; base-uri 'none'; frame-ancestors 'none'"

	endSessionPage = template.Must(template.New("end_session").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer"><title>Signing out</title></head>
<body>
<form method="post" action="{{.Action}}">
{{range .Fields}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<p>You are signed out of this site. <button type="submit">Sign out at the identity provider too</button></p>
</form>
<script>` + endSessionScript + `</script>
</body></html>
`))
)

type formField struct{ Name, Value string }

// sendToEndSession sends the browser to the end_session_endpoint of p,
// coming back to target (made absolute, as the IdP needs).
func (h *Handler) sendToEndSession(w http.ResponseWriter, r *http.Request, p *idp, endpoint, idToken, target string) error {
	fields := []formField{
		{"id_token_hint", idToken},
		{"client_id", p.provider.ClientID()},
		{"post_logout_redirect_uri", absoluteURL(r, target)},
	}
	if h.EndSessionMethod == endSessionGET {
		u, err := url.Parse(endpoint)
		if err != nil {
			http.Redirect(w, r, target, http.StatusFound)
			return nil
		}
		q := u.Query()
		for _, f := range fields {
			q.Set(f.Name, f.Value)
		}
		u.RawQuery = q.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
		return nil
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", endSessionCSP)
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	return endSessionPage.Execute(w, struct {
		Action string
		Fields []formField
	}{endpoint, fields})
}
