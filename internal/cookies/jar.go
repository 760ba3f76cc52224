// Package cookies reads and writes the plugin's own cookies: the session
// cookie (split into chunks when large), login flow cookies, and removing
// them all from a request before it goes upstream.
package cookies

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	// chunkSize keeps every Set-Cookie line (value plus name and
	// attributes) under the 4096 bytes browsers guarantee per cookie.
	chunkSize = 3800
	// maxChunks bounds both what we write and what we are willing to read
	// back. Three chunks (about 11.4 KB) leave room for the request's other
	// headers under common server limits (Caddy's default is 16 KB): a
	// session written in more would make every later request fail with 431
	// before any handler could clear it, locking the browser out.
	maxChunks = 3
)

// ErrTooLarge means a session does not fit in maxChunks cookies.
var ErrTooLarge = errors.New("session too large for cookies: use a server-side store, fewer claims, or the cookie store's drop_tokens")

// Jar reads and writes the plugin's cookies with the operator's attributes.
// A value longer than one cookie is split into name_0, name_1, ...; a value
// that fits is written under name alone.
type Jar struct {
	Name     string
	Domain   string
	Path     string
	Secure   bool
	HTTPOnly bool
	SameSite http.SameSite
}

// Read returns the session cookie's value, joining chunks, or "" if the
// request carries none (or carries an incomplete or oversized set).
//
// It scans the Cookie header itself instead of net/http's parser, which
// validates and copies every cookie on each request: the value is checked
// anyway when the store decrypts it, and a substring of the header costs
// no allocation.
func (j *Jar) Read(r *http.Request) string {
	var chunks [maxChunks]string
	n := 0
	for name, value := range requestCookies(r) {
		if name == j.Name {
			return value
		}
		if i, ok := j.chunkIndex(name); ok && i < maxChunks {
			chunks[i] = value
			n = max(n, i+1)
		}
	}
	if n == 0 {
		return ""
	}
	var sb strings.Builder
	for i := 0; i < n; i++ {
		if chunks[i] == "" {
			return "" // a gap: the set is incomplete
		}
		sb.WriteString(chunks[i])
	}
	return sb.String()
}

// requestCookies yields the request's cookies as name and raw value
// (quotes around a value removed).
func requestCookies(r *http.Request) func(yield func(name, value string) bool) {
	return func(yield func(string, string) bool) {
		for _, line := range r.Header["Cookie"] {
			for len(line) > 0 {
				var part string
				part, line, _ = strings.Cut(line, ";")
				part = strings.TrimSpace(part)
				name, value, ok := strings.Cut(part, "=")
				if !ok || name == "" {
					continue
				}
				if len(value) > 1 && value[0] == '"' && value[len(value)-1] == '"' {
					value = value[1 : len(value)-1]
				}
				if !yield(strings.TrimSpace(name), value) {
					return
				}
			}
		}
	}
}

// fieldOverhead is what HTTP/2 adds to every header field in its header
// size limit (RFC 9113 section 6.5.2); a browser sends each cookie as a
// field of its own there.
const fieldOverhead = 32

// Size is what one cookie adds to a request's headers: its name, value and
// separators, as HTTP/2 counts them (the stricter of the two protocols).
func Size(name, value string) int { return len(name) + 1 + len(value) + len("; ") + fieldOverhead }

// SessionSize is what the session cookie for value, split as Write splits
// it, adds to a request's headers.
func (j *Jar) SessionSize(value string) int {
	n := (len(value) + chunkSize - 1) / chunkSize
	if n <= 1 {
		return Size(j.Name, value)
	}
	return len(value) + n*(Size(j.chunkName(0), ""))
}

// Write sets the session cookie to value, expiring at expires, and removes
// whatever cookies of an earlier, differently split value the request carried.
func (j *Jar) Write(w http.ResponseWriter, r *http.Request, value string, expires time.Time) error {
	n := (len(value) + chunkSize - 1) / chunkSize
	if n > maxChunks {
		return ErrTooLarge
	}
	if n <= 1 {
		j.set(w, j.Name, value, expires)
	} else {
		for i := 0; i < n; i++ {
			end := min((i+1)*chunkSize, len(value))
			j.set(w, j.chunkName(i), value[i*chunkSize:end], expires)
		}
	}
	for _, c := range r.Cookies() {
		if c.Name == j.Name && n > 1 {
			j.Delete(w, c.Name)
		} else if i, ok := j.chunkIndex(c.Name); ok && (n <= 1 || i >= n) {
			j.Delete(w, c.Name)
		}
	}
	return nil
}

// Clear removes the session cookie and all its chunks the request carried.
func (j *Jar) Clear(w http.ResponseWriter, r *http.Request) {
	for _, c := range r.Cookies() {
		if _, ok := j.chunkIndex(c.Name); ok || c.Name == j.Name {
			j.Delete(w, c.Name)
		}
	}
}

// Set writes one cookie with the jar's attributes.
func (j *Jar) set(w http.ResponseWriter, name, value string, expires time.Time) {
	c := j.cookie(name, value)
	c.Expires = expires
	c.MaxAge = max(int(time.Until(expires).Seconds()), 1)
	http.SetCookie(w, c)
}

// SetFor writes a cookie other than the session cookie (a login flow
// cookie) with the jar's attributes, living for ttl.
func (j *Jar) SetFor(w http.ResponseWriter, name, value string, ttl time.Duration) {
	j.set(w, name, value, time.Now().Add(ttl))
}

// Delete tells the browser to drop the named cookie.
func (j *Jar) Delete(w http.ResponseWriter, name string) {
	c := j.cookie(name, "")
	c.MaxAge = -1
	c.Expires = time.Unix(0, 0)
	http.SetCookie(w, c)
}

func (j *Jar) cookie(name, value string) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Domain:   j.Domain,
		Path:     j.Path,
		Secure:   j.Secure,
		HttpOnly: j.HTTPOnly,
		SameSite: j.SameSite,
	}
}

func (j *Jar) chunkName(i int) string { return j.Name + "_" + strconv.Itoa(i) }

// chunkIndex parses name_<n>.
func (j *Jar) chunkIndex(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, j.Name+"_")
	if !ok || rest == "" || len(rest) > 2 {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	// Only the canonical spelling: Atoi also takes "+1", "-0" and "01".
	return i, err == nil && i >= 0 && strconv.Itoa(i) == rest
}

// FlowPrefix starts the name of every login flow cookie.
func (j *Jar) FlowPrefix() string { return j.Name + "_flow_" }

// Owns reports whether a cookie name belongs to the plugin: the session
// cookie, one of its chunks, or a login flow cookie.
func (j *Jar) Owns(name string) bool {
	if name == j.Name || strings.HasPrefix(name, j.FlowPrefix()) {
		return true
	}
	_, ok := j.chunkIndex(name)
	return ok
}

// StripRequest removes the plugin's cookies from the request, so the next
// handler (and the upstream behind it) never sees session material and is
// not burdened with kilobytes of cookies. Other cookies are kept as sent.
func (j *Jar) StripRequest(r *http.Request) {
	lines := r.Header["Cookie"]
	owned := false
	for name := range requestCookies(r) {
		if j.Owns(name) {
			owned = true
			break
		}
	}
	if !owned {
		return
	}
	var sb strings.Builder
	for _, line := range lines {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			name, _, _ := strings.Cut(part, "=")
			if part == "" || j.Owns(strings.TrimSpace(name)) {
				continue
			}
			if sb.Len() > 0 {
				sb.WriteString("; ")
			}
			sb.WriteString(part)
		}
	}
	if sb.Len() == 0 {
		r.Header.Del("Cookie")
		return
	}
	r.Header["Cookie"] = []string{sb.String()}
}
