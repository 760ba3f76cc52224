package oidcsession

import (
	"crypto/tls"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/oidc-session/oidc_session/oidc"
)

func TestSafeReturnTo(t *testing.T) {
	h := &Handler{BrowserConfig: BrowserConfig{AllowedRedirectHosts: []string{"partner.example.org", "*.trusted.example"}}}

	accepted := []struct {
		name, rd, want string
	}{
		{"root", "/", "/"},
		{"path query fragment", "/a/b?x=1#f", "/a/b?x=1#f"},
		{"encoded slashes in path", "/path%2Fwith%2Fslashes", "/path%2Fwith%2Fslashes"},
		{"own host https", "https://app.example.com/x", "https://app.example.com/x"},
		{"own host other port", "http://app.example.com:8443/x", "http://app.example.com:8443/x"},
		{"own host upper case", "https://APP.example.com/x", "https://APP.example.com/x"},
		{"allowed host", "https://partner.example.org/", "https://partner.example.org/"},
		{"wildcard subdomain", "https://sub.trusted.example/x", "https://sub.trusted.example/x"},
		{"wildcard deeper subdomain", "https://a.b.trusted.example/", "https://a.b.trusted.example/"},
	}
	for _, tc := range accepted {
		t.Run("accept/"+tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://app.example.com/oauth2/start", nil)
			got, ok := h.safeReturnTo(r, tc.rd)
			if !ok {
				t.Fatalf("safeReturnTo(%q) refused; want accepted", tc.rd)
			}
			if got != tc.want {
				t.Fatalf("safeReturnTo(%q) = %q; want %q", tc.rd, got, tc.want)
			}
		})
	}

	refused := []struct {
		name, rd string
	}{
		{"empty", ""},
		{"scheme-relative", "//evil.com"},
		{"triple slash", "///evil.com"},
		{"slash backslash", `/\evil.com`},
		{"double backslash", `\\evil.com`},
		{"single backslash", `\evil.com`},
		{"encoded scheme-relative", "/%2F%2Fevil.com"},
		{"encoded scheme-relative lower case", "/%2f%2fevil.com"},
		{"encoded backslash", "/%5Cevil.com"},
		{"encoded CRLF", "/x%0d%0aSet-Cookie:%20a=b"},
		{"other host", "https://evil.com"},
		{"own host as prefix of other", "https://app.example.com.evil.com/"},
		{"userinfo naming own host", "https://app.example.com@evil.com"},
		{"userinfo before own host", "https://evil.com@app.example.com"},
		{"userinfo with password", "https://evil.com:x@app.example.com/"},
		{"bare wildcard parent", "https://trusted.example"},
		{"wildcard suffix without dot", "https://eviltrusted.example/"},
		{"allowed host as prefix", "https://partner.example.org.evil.com/"},
		{"javascript", "javascript:alert(1)"},
		{"javascript upper case", "JavaScript:alert(1)"},
		{"data", "data:text/html,x"},
		{"http single slash", "http:/evil.com"},
		{"https opaque", "https:evil.com"},
		{"https no host", "https:///evil.com"},
		{"CRLF header injection", "/x\r\nSet-Cookie: a=b"},
		{"tab", "/a\tb"},
		{"newline", "/a\nb"},
		{"NUL", "/a\x00b"},
		{"DEL", "/a\x7fb"},
		{"tab in scheme-relative", "/\t/evil.com"},
		{"too long", "/" + strings.Repeat("a", 3000)},
		{"ftp", "ftp://app.example.com/"},
		{"relative without slash", "evil.com"},
		{"bad escape", "/%zz"},
	}
	for _, tc := range refused {
		t.Run("refuse/"+tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://app.example.com/oauth2/start", nil)
			if got, ok := h.safeReturnTo(r, tc.rd); ok || got != "" {
				t.Fatalf("safeReturnTo(%q) = %q, %v; want refused", tc.rd, got, ok)
			}
		})
	}
}

// The length limit is on the whole return URL, not only the path.
func TestSafeReturnToLengthBoundary(t *testing.T) {
	h := &Handler{}
	r := httptest.NewRequest("GET", "http://app.example.com/", nil)
	atLimit := "/" + strings.Repeat("a", maxReturnURL-1)
	if _, ok := h.safeReturnTo(r, atLimit); !ok {
		t.Errorf("return URL of exactly %d bytes refused", maxReturnURL)
	}
	if _, ok := h.safeReturnTo(r, atLimit+"a"); ok {
		t.Errorf("return URL of %d bytes accepted", maxReturnURL+1)
	}
}

// With no allowed hosts, only the request's own host is accepted.
func TestSafeReturnToNoAllowedHosts(t *testing.T) {
	h := &Handler{}
	r := httptest.NewRequest("GET", "http://app.example.com:8080/", nil)
	if _, ok := h.safeReturnTo(r, "https://app.example.com/ok"); !ok {
		t.Error("own host refused when the request carries a port")
	}
	if _, ok := h.safeReturnTo(r, "https://partner.example.org/"); ok {
		t.Error("other host accepted with no allowed_redirect_hosts")
	}
}

func TestRedirectAbsoluteURL(t *testing.T) {
	cases := []struct {
		name   string
		tls    bool
		host   string
		target string
		want   string
	}{
		{"http path", false, "app.example.com", "/after/logout?x=1", "http://app.example.com/after/logout?x=1"},
		{"https path", true, "app.example.com", "/after/logout", "https://app.example.com/after/logout"},
		{"https path with port", true, "app.example.com:8443", "/", "https://app.example.com:8443/"},
		{"absolute kept", false, "app.example.com", "https://partner.example.org/bye", "https://partner.example.org/bye"},
		{"absolute kept over tls", true, "app.example.com", "http://partner.example.org/bye", "http://partner.example.org/bye"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.Host = tc.host
			r.TLS = nil
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			if got := absoluteURL(r, tc.target); got != tc.want {
				t.Fatalf("absoluteURL(%q) = %q; want %q", tc.target, got, tc.want)
			}
		})
	}
}

// Queries keep their text: a percent sign, an encoded backslash or newline
// in the query is no way to another host (found by review: they came back
// as /). The path still may not decode to one.
func TestLoginReturnToKeepsQueries(t *testing.T) {
	h := &Handler{}
	r := httptest.NewRequest("GET", "http://app.example.com/", nil)
	for target, want := range map[string]string{
		"/search?q=100%":            "/search?q=100%",
		"/files?path=C:%5Cdocs":     "/files?path=C:%5Cdocs",
		"/page?text=line1%0Aline2":  "/page?text=line1%0Aline2",
		"/page#frag\\ment":          "/page#frag\\ment",
		"/%5Cevil.example?q=1":      "/",
		"/x%0d%0aSet-Cookie:a=b?q":  "/",
		"/%2F%2Fevil.example?q=100": "/",
	} {
		if got := h.loginReturnTo(r, target); got != want {
			t.Errorf("loginReturnTo(%q) = %q, want %q", target, got, want)
		}
	}
	// An https site sends nobody back to plain http.
	tls := httptest.NewRequest("GET", "https://app.example.com/", nil)
	if got, ok := h.safeReturnTo(tls, "http://app.example.com/x"); ok {
		t.Errorf("https request: http return URL accepted as %q", got)
	}
}

// A login started on app.example.com whose callback is on another host
// (an absolute redirect_url) goes back to app.example.com.
func TestCallbackReturnToOrigin(t *testing.T) {
	h := &Handler{}
	cb := httptest.NewRequest("GET", "http://auth.example.com/oauth2/callback", nil)
	for _, tc := range []struct{ returnTo, want string }{
		{"/deep?x=1", "http://app.example.com/deep?x=1"},
		{"http://app.example.com/abs", "http://app.example.com/abs"},
		{"http://evil.example/", "http://app.example.com/"},
	} {
		f := &oidc.Flow{ReturnTo: tc.returnTo, Origin: "http://app.example.com"}
		if got := h.callbackReturnTo(cb, f); got != tc.want {
			t.Errorf("return to %q from another host's callback: %q, want %q", tc.returnTo, got, tc.want)
		}
	}
	same := httptest.NewRequest("GET", "http://app.example.com/oauth2/callback", nil)
	if got := h.callbackReturnTo(same, &oidc.Flow{ReturnTo: "/p", Origin: "http://app.example.com"}); got != "/p" {
		t.Errorf("same host: %q", got)
	}
}
