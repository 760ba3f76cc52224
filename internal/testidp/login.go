package testidp

import (
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
)

const maxHops = 20

var (
	formRe = regexp.MustCompile(`(?is)<form\b[^>]*\baction="([^"]*)"[^>]*>(.*?)</form>`)
	// Connector choice page: links to <issuer>/auth/<connector>?...
	connectorRe = regexp.MustCompile(`(?i)<a\b[^>]*\bhref="([^"]*/auth/local[^"]*)"`)
)

// NewBrowserClient returns an http.Client with a fresh cookie jar that does
// not follow redirects, suitable for LoginDex and for stepping through a
// relying party's redirects by hand.
func NewBrowserClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// LoginDex performs a browser-like password login at Dex.
//
// client must carry a cookie jar (see NewBrowserClient) when authURL belongs
// to a relying party that keeps state in cookies. Its Jar, Transport and
// Timeout are used; its CheckRedirect is ignored: LoginDex follows every
// redirect itself, one request at a time.
//
//  1. GET authURL, which is either Dex's authorization URL or a URL of a
//     protected site that redirects (possibly several times) to it; follow
//     redirects (any host) until a page containing Dex's password form
//     (a <form> with a "password" field) appears. A connector choice page is
//     passed by following its link to the "local" (password DB) connector.
//  2. POST login and password to the form's action. The origin
//     (scheme://host:port) of that action is taken as Dex's origin.
//  3. Follow Dex's redirects (GET) while they stay on Dex's origin.
//
// It returns the response to the first request made outside Dex's origin,
// without following it any further: normally the GET of the relying party's
// redirect_uri (callback) carrying ?code=...&state=... . resp.Request.URL is
// that callback URL; the caller must close resp.Body. If the relying party
// answers the callback with a redirect (and Set-Cookie), the response is
// that redirect, and its cookies are already stored in client.Jar.
//
// It fails if the login is rejected (Dex answers the POST with a page
// instead of a redirect, e.g. "Invalid Email Address and password"), if Dex
// shows an error page, or after 20 redirects.
func LoginDex(client *http.Client, authURL, login, password string) (*http.Response, error) {
	return dexLogin.run(client, authURL, login, password)
}

var dexLogin = formLogin{
	idp:       "Dex",
	userField: "login",
	form: func(body string) (string, url.Values, bool) {
		action, ok := passwordFormAction(body)
		return action, url.Values{}, ok
	},
	detour: func(body string) (string, bool) {
		if m := connectorRe.FindStringSubmatch(body); m != nil {
			return html.UnescapeString(m[1]), true
		}
		return "", false
	},
}

// navigate GETs target as a browser's top-level navigation would, so a
// relying party that answers API calls with 401 redirects it to log in.
func navigate(c *http.Client, target string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	return c.Do(req)
}

// passwordFormAction returns the unescaped action of the first form that
// has a password field.
func passwordFormAction(body string) (string, bool) {
	for _, m := range formRe.FindAllStringSubmatch(body, -1) {
		if strings.Contains(strings.ToLower(m[2]), `name="password"`) {
			return html.UnescapeString(m[1]), true
		}
	}
	return "", false
}

// redirectTarget returns the absolute Location of a 3xx response.
func redirectTarget(resp *http.Response) (string, bool) {
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return "", false
	}
	u, err := resp.Location()
	if err != nil {
		return "", false
	}
	return u.String(), true
}

func origin(u *url.URL) string {
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host)
}

func readBody(resp *http.Response) (string, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return "", fmt.Errorf("testidp: read %s: %w", resp.Request.URL, err)
	}
	return string(b), nil
}

func snippet(body string) string {
	s := strings.Join(strings.Fields(body), " ")
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}

// ErrNoCode is returned by CodeFromResponse when the URL carries no code.
var ErrNoCode = errors.New("testidp: no authorization code in callback URL")

// CodeFromResponse extracts code and state from the callback request URL of
// a response returned by LoginDex.
func CodeFromResponse(resp *http.Response) (code, state string, err error) {
	q := resp.Request.URL.Query()
	if e := q.Get("error"); e != "" {
		return "", "", fmt.Errorf("testidp: IdP returned error %q: %s", e, q.Get("error_description"))
	}
	if q.Get("code") == "" {
		return "", "", ErrNoCode
	}
	return q.Get("code"), q.Get("state"), nil
}
