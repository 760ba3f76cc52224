package testidp

import (
	"fmt"
	"net/http"
	"net/url"
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
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	// Step 1: reach the login form.
	next := authURL
	var formURL *url.URL
	var fields url.Values
	for hop := 0; ; hop++ {
		if hop > maxHops {
			return nil, fmt.Errorf("testidp: no %s login form after %d redirects from %s", f.idp, maxHops, authURL)
		}
		resp, err := navigate(&c, next)
		if err != nil {
			return nil, fmt.Errorf("testidp: GET %s: %w", next, err)
		}
		if loc, ok := redirectTarget(resp); ok {
			resp.Body.Close()
			next = loc
			continue
		}
		body, err := readBody(resp)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("testidp: GET %s: status %d looking for the %s login form: %s", resp.Request.URL, resp.StatusCode, f.idp, snippet(body))
		}
		if action, fv, ok := f.form(body); ok {
			if formURL, err = resp.Request.URL.Parse(action); err != nil {
				return nil, fmt.Errorf("testidp: bad form action %q: %w", action, err)
			}
			fields = fv
			break
		}
		if f.detour != nil {
			if link, ok := f.detour(body); ok {
				u, err := resp.Request.URL.Parse(link)
				if err != nil {
					return nil, fmt.Errorf("testidp: bad link %q: %w", link, err)
				}
				next = u.String()
				continue
			}
		}
		return nil, fmt.Errorf("testidp: %s shows no %s login form: %s", resp.Request.URL, f.idp, snippet(body))
	}
	idpOrigin := origin(formURL)

	// Step 2: submit credentials.
	fields.Set(f.userField, user)
	fields.Set("password", password)
	resp, err := c.PostForm(formURL.String(), fields)
	if err != nil {
		return nil, fmt.Errorf("testidp: POST %s: %w", formURL, err)
	}

	// Step 3: follow redirects while inside the provider.
	for hop := 0; ; hop++ {
		if origin(resp.Request.URL) != idpOrigin {
			return resp, nil
		}
		loc, ok := redirectTarget(resp)
		if !ok {
			body, _ := readBody(resp)
			if _, _, isForm := f.form(body); isForm {
				return nil, fmt.Errorf("testidp: %s rejected the login for %q (status %d): %s", f.idp, user, resp.StatusCode, snippet(body))
			}
			return nil, fmt.Errorf("testidp: %s answered %s with status %d instead of redirecting: %s", f.idp, resp.Request.URL, resp.StatusCode, snippet(body))
		}
		resp.Body.Close()
		if hop >= maxHops {
			return nil, fmt.Errorf("testidp: more than %d redirects after login", maxHops)
		}
		if resp, err = navigate(&c, loc); err != nil {
			return nil, fmt.Errorf("testidp: GET %s: %w", loc, err)
		}
	}
}
