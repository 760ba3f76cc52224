package oidcsession

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"net/http"

	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/oidc-session/oidc_session/internal/cookies"
	"github.com/oidc-session/oidc_session/internal/testenv"
	"github.com/oidc-session/oidc_session/oidc"
	"github.com/oidc-session/oidc_session/sessions"
)

// Fuzz targets of the root package. Each asserts properties of what it
// accepts, not only that nothing panics. Seeds: f.Add below and the
// committed corpus in testdata/fuzz/<FuzzName>/.

// The flow cookies of the committed FuzzOpenFlow corpus were sealed with
// these: a corpus entry that opens must be one of them, unchanged.
const (
	fuzzSecret   = "fuzz-secret-0123456789-0123456789-abcdef"
	fuzzIssuer   = "https://idp.example.com"
	fuzzClientID = "app"
)

// fuzzRedirectHosts are request hosts FuzzSafeReturnTo picks from.
var fuzzRedirectHosts = []string{"app.example.com", "app.example.com:8443", "APP.Example.COM.", "127.0.0.1:8080", "[::1]:9000", ""}

// FuzzSafeReturnTo: whatever safeReturnTo accepts is either a path that
// starts with exactly one "/" (no backslash, no control character, not
// scheme-relative even once decoded), or an absolute http(s) URL without
// userinfo whose host is the request's or an allowed one. And where a
// browser goes after http.Redirect to it stays on those hosts.
func FuzzSafeReturnTo(f *testing.F) {
	h := &Handler{BrowserConfig: BrowserConfig{AllowedRedirectHosts: []string{"partner.example.org", "*.trusted.example"}}}
	for _, rd := range []string{
		"/", "/a/b?x=1#f", "//evil.example", "/\\evil.example", "\\\\evil.example", "/%2F%2Fevil.example",
		"/%5Cevil.example", "https://app.example.com/x", "https://partner.example.org/", "https://a.trusted.example/",
		"https://trusted.example/", "https://evil.example/", "https://app.example.com@evil.example/",
		"javascript:alert(1)", "http:evil.example", "/\t/evil.example", " //evil.example", "/.//evil.example",
		"https://evil.example%2F.trusted.example/", "HTTPS://APP.EXAMPLE.COM./", "http://[::1]:9000/x",
	} {
		f.Add(rd, uint8(0))
	}
	f.Fuzz(func(t *testing.T, rd string, hostSel uint8) {
		host := fuzzRedirectHosts[int(hostSel)%len(fuzzRedirectHosts)]
		r := httptest.NewRequest(http.MethodGet, "http://app.example.com/page/here", nil)
		r.Host = host
		got, ok := h.safeReturnTo(r, rd)
		if !ok {
			if got != "" {
				t.Fatalf("refused %q but returned %q", rd, got)
			}
			return
		}
		if got != rd && strings.HasPrefix(got, "/") {
			t.Fatalf("path %q came back changed: %q", rd, got)
		}
		checkSafeDestination(t, r, got, maxReturnURL)
	})
}

// FuzzLoginReturnTo: whatever request target an unauthenticated browser
// asks for (as the server reads it off the wire), the login's return URL
// is a safe destination by FuzzSafeReturnTo's rules that fits in the flow
// cookie.
func FuzzLoginReturnTo(f *testing.F) {
	h := &Handler{BrowserConfig: BrowserConfig{AllowedRedirectHosts: []string{"partner.example.org", "*.trusted.example"}}}
	for _, target := range []string{
		"/", "/a/b?x=1", "//evil.example/", "//evil.example/%2e%2e", "///evil.example/", "/\\evil.example/",
		"/%2F%2Fevil.example", "/%5C%5Cevil.example", "http://evil.example/x", "https://partner.example.org/",
		"//app.example.com@evil.example/", "/" + strings.Repeat("a", 1100) + "?q=1", "*",
	} {
		f.Add(target, uint8(0))
	}
	f.Fuzz(func(t *testing.T, target string, hostSel uint8) {
		host := fuzzRedirectHosts[int(hostSel)%len(fuzzRedirectHosts)]
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n")))
		if err != nil {
			return // the server would answer 400 itself
		}
		got := h.loginReturnTo(r, r.URL.RequestURI())
		if got == "" {
			t.Fatalf("no return URL for %q", target)
		}
		checkSafeDestination(t, r, got, maxStoredReturnURL)
	})
}

// checkSafeDestination fails t unless got, a URL the plugin would send the
// browser to from r, is a path that starts with exactly one "/" (no
// backslash, no control character, not scheme-relative even once decoded),
// or an absolute http(s) URL without userinfo whose host is the request's
// or one of FuzzSafeReturnTo's allowed ones; and unless the browser, after
// http.Redirect to it, stays on those hosts.
func checkSafeDestination(t *testing.T, r *http.Request, got string, maxLen int) {
	t.Helper()
	host := r.Host
	if len(got) > maxLen || hasControlChars(got) {
		t.Fatalf("accepted %q: too long or with a control character", got)
	}
	allowed := func(hostname string) bool {
		hostname = strings.ToLower(strings.TrimSuffix(hostname, "."))
		if hostname != "" && hostname == strings.ToLower(strings.TrimSuffix(hostOnly(host), ".")) {
			return true
		}
		return hostname == "partner.example.org" || (strings.HasSuffix(hostname, ".trusted.example") && len(hostname) > len(".trusted.example"))
	}
	if strings.HasPrefix(got, "/") {
		path, _ := splitPath(got)
		if strings.HasPrefix(path, "//") || strings.Contains(path, "\\") {
			t.Fatalf("accepted %q: its path is scheme-relative or has a backslash", got)
		}
		if dec, err := url.PathUnescape(path); err != nil || strings.HasPrefix(dec, "//") || hasUnsafeChars(dec) {
			t.Fatalf("accepted %q, whose path decodes to %q", got, dec)
		}
	} else {
		if strings.Contains(got, "\\") {
			t.Fatalf("accepted the absolute URL %q with a backslash", got)
		}
		u, err := url.Parse(got)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || u.Host == "" || u.Opaque != "" {
			t.Fatalf("accepted %q: not a plain http(s) URL", got)
		}
		if !allowed(u.Hostname()) {
			t.Fatalf("accepted %q: host %q is neither the request's (%q) nor allowed", got, u.Hostname(), host)
		}
	}

	// Where a browser lands: http.Redirect's Location, resolved
	// against the page, with backslashes read as slashes as browsers
	// do for http(s) URLs.
	w := httptest.NewRecorder()
	http.Redirect(w, r, got, http.StatusFound)
	loc := strings.ReplaceAll(w.Header().Get("Location"), "\\", "/")
	ref, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("accepted %q but the Location %q does not parse: %v", got, loc, err)
	}
	base := &url.URL{Scheme: "http", Host: host, Path: "/page/here"}
	dest := base.ResolveReference(ref)
	if dest.Host != host && !allowed(dest.Hostname()) {
		t.Fatalf("accepted %q: the browser goes to host %q (Location %q)", got, dest.Host, loc)
	}
}

// fuzzFlowHandler is a Handler with what openFlow needs, keyed like the
// committed FuzzOpenFlow corpus.
func fuzzFlowHandler(tb testing.TB) *Handler {
	tb.Helper()
	kr, err := sessions.NewKeyring("flow", fuzzSecret)
	if err != nil {
		tb.Fatal(err)
	}
	return &Handler{
		flowKeys: kr,
		binding:  []byte(fuzzIssuer + "\x00" + fuzzClientID),
		jar:      cookies.Jar{Name: defaultCookieName},
	}
}

// sealFlowCookie seals f into its cookie as startLogin does.
func sealFlowCookie(h *Handler, f *oidc.Flow) *http.Cookie {
	name := h.jar.FlowPrefix() + f.ID()
	sealed := h.flowKeys.Seal(f.Marshal(), h.flowBinding(name))
	return &http.Cookie{Name: name, Value: base64.RawURLEncoding.EncodeToString(sealed)}
}

// FuzzOpenFlow: a login flow cookie opens only if it is, unchanged and
// under its own name, one this server sealed (those of the committed
// corpus); what opens is a complete flow named after its state.
// And any flow (with any return URL) sealed now opens to the same flow.
func FuzzOpenFlow(f *testing.F) {
	h := fuzzFlowHandler(f)
	sealed := map[string]bool{}
	for _, args := range testenv.CorpusStrings(f, "FuzzOpenFlow") {
		if len(args) == 2 {
			sealed[args[0]+"\x00"+args[1]] = true
		}
	}
	// Seeds must be the same in every fuzzing process, so the valid ones
	// come from the committed corpus only; here, near misses of them.
	keys := make([]string, 0, len(sealed))
	for key := range sealed {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		name, value, _ := strings.Cut(key, "\x00")
		f.Add(name+"x", value)
		f.Add(strings.ToUpper(name), value)
		f.Add(name, value+"A")
		f.Add(name, value[:len(value)-1])
		f.Add(name, strings.Replace(value, "A", "B", 1))
	}
	f.Add("_oauth2_proxy_flow_", "")
	f.Add("_oauth2_proxy_flow_AAAAAAAAAA", "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, name, value string) {
		fl, err := h.openFlow(&http.Cookie{Name: name, Value: value})
		if err == nil {
			// Go's base64 decoder skips CR and LF even in strict mode; no
			// HTTP header can carry them (the server refuses the request).
			if !sealed[name+"\x00"+strings.NewReplacer("\r", "", "\n", "").Replace(value)] {
				t.Fatalf("opened a flow cookie this server never sealed: %q=%q", name, value)
			}
			if fl.State == "" || fl.Nonce == "" || name != h.jar.FlowPrefix()+fl.ID() {
				t.Fatalf("opened an incomplete flow or one sealed for another cookie: %q %+v", name, fl)
			}
		} else if fl != nil {
			t.Fatal("openFlow returned a flow and an error")
		}

		// Round trip, with the fuzzer's value as the return URL.
		want := oidc.NewFlow(value, len(name)%2 == 0)
		c := sealFlowCookie(h, want)
		got, err := h.openFlow(c)
		if err != nil {
			t.Fatalf("a flow sealed now does not open: %v", err)
		}
		if utf8.ValidString(value) && (got.State != want.State || got.Nonce != want.Nonce || got.Verifier != want.Verifier ||
			got.ReturnTo != want.ReturnTo || !got.Created.Equal(want.Created)) {
			t.Fatalf("flow changed on the way: %+v, want %+v", got, want)
		}
		if _, err := h.openFlow(&http.Cookie{Name: c.Name + "_", Value: c.Value}); err == nil {
			t.Fatal("a flow cookie opened under another name")
		}
	})
}

// FuzzCaddyfile: the oidc_session block never panics the parser, and what
// it accepts satisfies the checks the parser promises (issuer, client id,
// secrets, cookie name and attributes, numbers in range) and survives a
// JSON round trip unchanged, as Caddy's adapter needs.
func FuzzCaddyfile(f *testing.F) {
	secret := strings.Repeat("s", 32)
	for _, in := range []string{
		"oidc_session {\n\tissuer https://idp.example.com\n\tclient_id app\n\tcookie {\n\t\tsecret " + secret + "\n\t}\n}",
		"oidc_session {\n\tissuer {env.ISSUER}\n\tclient_id app\n\tcookie {\n\t\tsecret {env.SECRET}\n\t\tname my.app-session\n\t\tsame_site None\n\t\tsecure off\n\t}\n\theaders\n\tidle_timeout off\n}",
		"oidc_session {\n\tissuer https://idp.example.com\n\tclient_id app\n\tcookie {\n\t\tsecret " + secret + "\n\t}\n\tstore redis {\n\t\turl redis://127.0.0.1:6379/0\n\t\tkey_prefix x:\n\t}\n}",
		"oidc_session {\n\tissuer https://idp.example.com\n\tclient_id app\n\tcookie {\n\t\tsecret " + secret + "\n\t}\n\tstore memory {\n\t\tmax_sessions 10\n\t}\n\tmax_sessions_per_user 2\n}",
		"oidc_session {\n\tissuer https://idp.example.com\n\tclient_id app\n\tcookie {\n\t\tsecret " + secret + "\n\t}\n\theaders {\n\t\tuser X-User\n\t\taccess_token X-Token\n\t}\n\trequire_claim groups a b\n\tunavailable_status 502\n}",
		"oidc_session {\n\tissuer ftp://x\n}",
		"oidc_session arg",
		"oidc_session {\n\tcookie {\n\t\tsecret short\n\t}\n}",
		"oidc_session {\n\tstore\n}",
		"oidc_session {\n\tstore cookie {\n\t\tdrop_tokens\n\t}\n",
		"oidc_session {\n\tmax_login_flows -1\n}",
	} {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, input string) {
		// NewTestDispenser would log.Fatal on input the lexer refuses.
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return
		}
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		switch {
		case h.Issuer == "" || h.ClientID == "" || len(h.Cookie.Secrets) == 0:
			t.Fatalf("accepted without issuer, client_id or secret: %+v", h)
		case !strings.Contains(h.Issuer, "{") && checkAbsoluteURL(h.Issuer) != nil:
			t.Fatalf("accepted the issuer %q", h.Issuer)
		case h.Cookie.Name != "" && strings.ContainsAny(h.Cookie.Name, " ;,=\t\""):
			t.Fatalf("accepted the cookie name %q", h.Cookie.Name)
		case h.MaxLoginFlows < 0 || h.MaxSessionsPerUser < 0:
			t.Fatalf("accepted negative limits: %d %d", h.MaxLoginFlows, h.MaxSessionsPerUser)
		case h.UnavailableStatus != 0 && (h.UnavailableStatus < 400 || h.UnavailableStatus > 599):
			t.Fatalf("accepted unavailable_status %d", h.UnavailableStatus)
		}
		for _, s := range h.Cookie.Secrets {
			if !strings.Contains(s, "{") && len(s) < sessions.MinSecretLength {
				t.Fatalf("accepted a %d-character secret", len(s))
			}
		}
		if _, err := parseSameSite(h.Cookie.SameSite); err != nil || h.Cookie.SameSite != strings.ToLower(h.Cookie.SameSite) {
			t.Fatalf("accepted same_site %q", h.Cookie.SameSite)
		}
		if h.StoreRaw != nil && !json.Valid(h.StoreRaw) {
			t.Fatalf("store JSON is not valid: %s", h.StoreRaw)
		}
		js, err := json.Marshal(&h)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		var back Handler
		if err := json.Unmarshal(js, &back); err != nil {
			t.Fatalf("the adapted JSON does not load: %v\n%s", err, js)
		}
		js2, _ := json.Marshal(&back)
		if string(js) != string(js2) {
			t.Fatalf("JSON round trip changed the config:\n%s\n%s", js, js2)
		}
		// The parser validates as Provision does: what it accepts passes.
		back.applyDefaults()
		if err := back.validate(); err != nil {
			t.Fatalf("the parser accepted a configuration validate refuses: %v", err)
		}
		if !contains(back.Scopes, "openid") || !strings.HasPrefix(back.PathPrefix, "/") || back.SessionLifetime == 0 {
			t.Fatalf("defaults not applied: %+v", back)
		}
	})
}
