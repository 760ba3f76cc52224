package testidp

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// formLogin is the browser-like password login that LoginDex and
// LoginZitadel share; its functions tell the providers' pages apart.
type formLogin struct {
	idp       string // the provider, in messages ("Dex")
	userField string // form field that takes the login name
	// form reports whether body is the login page and returns its form's
	// action (unescaped) and the fields to post besides the credentials.
	form func(body string) (action string, fields url.Values, ok bool)
	// detour, when set, returns a link to follow from a page that is not
	// the login page (unescaped), e.g. a connector choice.
	detour func(body string) (link string, ok bool)
}

// run GETs authURL and follows redirects (any host, and f.detour links)
// until the login form appears; POSTs it with user and password; follows
// the redirects that stay on the form's origin. It returns the response
// to the first request outside that origin, not followed further; the
// caller closes resp.Body. Only client's Jar, Transport and Timeout are
// used. A login answered with the form again is a "rejected" error.
func (f formLogin) run(client *http.Client, authURL, user, password string) (*http.Response, error) {
	c := withoutRedirects(client)
	var action string
	var fields url.Values
	page, _, err := reachPage(c, authURL, f.idp+" login form", func(body string) (ok bool) {
		action, fields, ok = f.form(body)
		return ok
	}, f.detour)
	if err != nil {
		return nil, err
	}
	formURL, err := page.Parse(action)
	if err != nil {
		return nil, fmt.Errorf("testidp: bad form action %q: %w", action, err)
	}
	fields.Set(f.userField, user)
	fields.Set("password", password)
	resp, err := c.PostForm(formURL.String(), fields)
	if err != nil {
		return nil, fmt.Errorf("testidp: POST %s: %w", formURL, err)
	}
	return followWithin(c, resp, origin(formURL), func(resp *http.Response, body string) (*http.Response, error) {
		if _, _, isForm := f.form(body); isForm {
			return nil, fmt.Errorf("testidp: %s rejected the login for %q (status %d): %s", f.idp, user, resp.StatusCode, snippet(body))
		}
		return nil, fmt.Errorf("testidp: %s answered %s with status %d instead of redirecting: %s", f.idp, resp.Request.URL, resp.StatusCode, snippet(body))
	})
}

// withoutRedirects is client with redirects left to the caller.
func withoutRedirects(client *http.Client) *http.Client {
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// reachPage GETs start and follows redirects (any host) and detour links
// (when detour is set) until a 200 page whose body is wanted, and returns
// that page's URL and body. what names the page in errors.
func reachPage(c *http.Client, start, what string, wanted func(body string) bool, detour func(body string) (string, bool)) (*url.URL, string, error) {
	next := start
	for hop := 0; ; hop++ {
		if hop > maxHops {
			return nil, "", fmt.Errorf("testidp: no %s after %d redirects from %s", what, maxHops, start)
		}
		resp, err := navigate(c, next)
		if err != nil {
			return nil, "", fmt.Errorf("testidp: GET %s: %w", next, err)
		}
		if loc, ok := redirectTarget(resp); ok {
			resp.Body.Close()
			next = loc
			continue
		}
		body, err := readBody(resp)
		if err != nil {
			return nil, "", err
		}
		page := resp.Request.URL
		if resp.StatusCode != http.StatusOK {
			return nil, "", fmt.Errorf("testidp: GET %s: status %d looking for the %s: %s", page, resp.StatusCode, what, snippet(body))
		}
		if wanted(body) {
			return page, body, nil
		}
		if detour != nil {
			if link, ok := detour(body); ok {
				u, err := page.Parse(link)
				if err != nil {
					return nil, "", fmt.Errorf("testidp: bad link %q: %w", link, err)
				}
				next = u.String()
				continue
			}
		}
		return nil, "", fmt.Errorf("testidp: %s shows no %s: %s", page, what, snippet(body))
	}
}

// followWithin follows the redirects of resp while they stay on origin
// and returns the response to the first request outside it, not followed
// further. A page (not a redirect) on origin is handed to onPage with its
// body already read, which returns the result or the error.
func followWithin(c *http.Client, resp *http.Response, within string, onPage func(resp *http.Response, body string) (*http.Response, error)) (*http.Response, error) {
	for hop := 0; ; hop++ {
		if origin(resp.Request.URL) != within {
			return resp, nil
		}
		loc, ok := redirectTarget(resp)
		if !ok {
			body, err := readBody(resp)
			if err != nil {
				return nil, err
			}
			return onPage(resp, body)
		}
		resp.Body.Close()
		if hop >= maxHops {
			return nil, fmt.Errorf("testidp: more than %d redirects within %s", maxHops, within)
		}
		var err error
		if resp, err = navigate(c, loc); err != nil {
			return nil, fmt.Errorf("testidp: GET %s: %w", loc, err)
		}
	}
}

var (
	htmlFormRe  = regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form>`)
	htmlAttrRe  = regexp.MustCompile(`(?is)\b(name|value|action|type|id)\s*=\s*"([^"]*)"`)
	htmlInputRe = regexp.MustCompile(`(?is)<input\b[^>]*>`)
)

// htmlForm is a <form> of a page.
type htmlForm struct {
	attrs  map[string]string // id, action... of the form element, unescaped
	fields url.Values        // its named inputs and their values
}

// htmlForms returns the forms of a page, in order. It knows just enough
// HTML for the providers' own pages: double-quoted attributes, <input>
// elements inside the form.
func htmlForms(body string) []htmlForm {
	var forms []htmlForm
	for _, m := range htmlFormRe.FindAllStringSubmatch(body, -1) {
		f := htmlForm{attrs: htmlAttrs(m[1]), fields: url.Values{}}
		for _, in := range htmlInputRe.FindAllString(m[2], -1) {
			a := htmlAttrs(in)
			if a["name"] != "" {
				f.fields.Set(a["name"], a["value"])
			}
		}
		forms = append(forms, f)
	}
	return forms
}

func htmlAttrs(tag string) map[string]string {
	attrs := map[string]string{}
	for _, a := range htmlAttrRe.FindAllStringSubmatch(tag, -1) {
		attrs[strings.ToLower(a[1])] = html.UnescapeString(a[2])
	}
	return attrs
}
