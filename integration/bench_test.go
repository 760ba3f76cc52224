package integration

// Benchmarks of the request path. They run only with -bench, e.g.
//
//	go test -run '^$' -bench . -benchmem .
//
// BenchmarkServeHTTP* measure one authenticated request through the
// handler's ServeHTTP, called directly (no HTTP server, no network): the
// session cookie comes from a real login through an in-process Caddy
// against mockoidc, and the handler under test is a second instance
// provisioned from the very JSON Caddy ran (same secrets, issuer and client
// id, so it reads the same cookies; the memory store's state is shared by
// both instances, the Redis store's lives in Redis).
// BenchmarkServeHTTPBaseline is the same loop with the handler left out:
// building the request, its context and the recorder. Subtract it to get
// the handler's own cost.
//
// BenchmarkCallback measures logins through the in-process Caddy over
// loopback HTTP against mockoidc, so it includes the mock IdP and the HTTP
// stack (see its comment).
//
// The helpers of harness_test.go take testing.TB, so the benchmarks use
// them too.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oidc-session/oidc_session/internal/testcaddy"
	"github.com/oidc-session/oidc_session/internal/testenv"
	"github.com/oidc-session/oidc_session/internal/testredis"
	_ "github.com/oidc-session/oidc_session/sessions/memstore"
)

// benchRespond ends the benchmarks' site after the oidc_session block.
const benchRespond = "\trespond \"ok\" 200\n"

// benchCaddy loads an in-process Caddy serving site on a free loopback
// address, stopped when the benchmark ends. It returns the base URL and the
// oidc_session handler's JSON as Caddy got it (without the "handler" key).
func benchCaddy(tb testing.TB, site string) (string, json.RawMessage) {
	tb.Helper()
	dir := tb.TempDir()
	addr := testenv.FreeAddr(tb)
	cfg := testcaddy.GlobalOptions(testenv.FreeAddr(tb), dir, "file "+dir+"/caddy.log", "WARN") + fmt.Sprintf("http://%s {\n%s\n}\n", addr, site)
	js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	if err != nil {
		tb.Fatalf("adapt: %v", err)
	}
	var doc any
	if err := json.Unmarshal(js, &doc); err != nil {
		tb.Fatal(err)
	}
	handler := findHandler(doc, "oidc_session")
	if handler == nil {
		tb.Fatalf("no oidc_session handler in the adapted config:\n%s", js)
	}
	delete(handler, "handler")
	raw, err := json.Marshal(handler)
	if err != nil {
		tb.Fatal(err)
	}
	if err := caddy.Load(js, true); err != nil {
		tb.Fatalf("load: %v", err)
	}
	tb.Cleanup(func() { _ = caddy.Stop() })
	return "http://" + addr, raw
}

// findHandler returns the first JSON object with "handler": name.
func findHandler(v any, name string) map[string]any {
	switch v := v.(type) {
	case map[string]any:
		if v["handler"] == name {
			return v
		}
		for _, c := range v {
			if h := findHandler(c, name); h != nil {
				return h
			}
		}
	case []any:
		for _, c := range v {
			if h := findHandler(c, name); h != nil {
				return h
			}
		}
	}
	return nil
}

// benchNavigate GETs target as a browser navigation; it returns the status
// and the Location header.
func benchNavigate(c *http.Client, target string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Sec-Fetch-Site", "none")
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location"), nil
}

// startLogin visits a protected page and the IdP, and returns the callback
// URL the IdP sends the browser to.
func startLogin(c *http.Client, base string) (string, error) {
	code, loc, err := benchNavigate(c, base+"/")
	if err != nil {
		return "", err
	}
	if code != http.StatusFound {
		return "", fmt.Errorf("protected page: want a 302 to the IdP, got %d", code)
	}
	code, cb, err := benchNavigate(c, loc)
	if err != nil {
		return "", err
	}
	if code != http.StatusFound {
		return "", fmt.Errorf("IdP authorize: want a 302, got %d", code)
	}
	return cb, nil
}

// finishLogin visits the callback URL; the session cookie lands in the jar.
func finishLogin(c *http.Client, cb string) error {
	code, _, err := benchNavigate(c, cb)
	if err != nil {
		return err
	}
	if code != http.StatusFound {
		return fmt.Errorf("callback: want 302, got %d", code)
	}
	return nil
}

// benchLogin logs in at base and returns the Cookie header a browser would
// then send (the session cookie, or its chunks).
func benchLogin(tb testing.TB, base string) string {
	tb.Helper()
	c := testcaddy.NewClient()
	cb, err := startLogin(c, base)
	if err == nil {
		err = finishLogin(c, cb)
	}
	if err != nil {
		tb.Fatalf("login: %v", err)
	}
	if code, _, err := benchNavigate(c, base+"/"); err != nil || code != http.StatusOK {
		tb.Fatalf("protected page after login: %d %v", code, err)
	}
	u, _ := url.Parse(base)
	var parts []string
	for _, ck := range c.Jar.Cookies(u) {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	if len(parts) == 0 {
		tb.Fatal("no cookie after login")
	}
	return strings.Join(parts, "; ")
}

// provisionHandler provisions a second oidc_session handler from raw, as
// Caddy provisions a module, cleaned up as Caddy does when the benchmark
// ends.
func provisionHandler(tb testing.TB, raw json.RawMessage) caddyhttp.MiddlewareHandler {
	tb.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	tb.Cleanup(cancel)
	mod, err := ctx.LoadModuleByID("http.handlers.oidc_session", raw)
	if err != nil {
		tb.Fatalf("provision: %v", err)
	}
	h, ok := mod.(caddyhttp.MiddlewareHandler)
	if !ok {
		tb.Fatalf("%T is not a caddyhttp.MiddlewareHandler", mod)
	}
	return h
}

// benchRequest is an authenticated GET as the handler sees it inside
// Caddy: with a replacer and the HTTP vars in its context.
func benchRequest(host, cookie string) *http.Request {
	return benchRequestWith(host, http.Header{
		"Accept":         {"text/html"},
		"Sec-Fetch-Mode": {"navigate"},
		"Cookie":         {cookie},
	})
}

// benchRequestWith is benchRequest with the given headers.
func benchRequestWith(host string, header http.Header) *http.Request {
	r := &http.Request{
		Method:     http.MethodGet,
		URL:        &url.URL{Path: "/app/page"},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Host:       host,
		RemoteAddr: "127.0.0.1:40000",
		RequestURI: "/app/page",
		Header:     header,
	}
	ctx := context.WithValue(context.Background(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
	return r.WithContext(ctx)
}

// countingNext is the next handler: it counts the requests let through.
type countingNext struct{ n int }

func (c *countingNext) ServeHTTP(w http.ResponseWriter, _ *http.Request) error {
	c.n++
	w.WriteHeader(http.StatusOK)
	return nil
}

// benchServeHTTP logs in once through an in-process Caddy whose handler
// uses store (a Caddyfile store line, "" for the cookie store), then calls a
// second instance's ServeHTTP with that session.
func benchServeHTTP(b *testing.B, store string) {
	idp := testcaddy.StartMockIdP(b, time.Hour, false)
	base, raw := benchCaddy(b, testcaddy.OIDCBlock(idp, store)+benchRespond)
	cookie := benchLogin(b, base)
	h := provisionHandler(b, raw)
	host := strings.TrimPrefix(base, "http://")

	// One request outside the loop: it must pass without touching the
	// session (no Set-Cookie), or the loop would measure something else.
	next := &countingNext{}
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, benchRequest(host, cookie), next); err != nil || next.n != 1 {
		b.Fatalf("authenticated request not let through: err=%v, status %d", err, w.Code)
	}
	if sc := w.Header().Values("Set-Cookie"); len(sc) > 0 {
		b.Fatalf("authenticated request rewrote the cookie: %v", sc)
	}
	next.n = 0
	iterations := 0
	b.ReportAllocs()
	for b.Loop() {
		iterations++
		if err := h.ServeHTTP(httptest.NewRecorder(), benchRequest(host, cookie), next); err != nil {
			b.Fatal(err)
		}
	}
	if next.n != iterations {
		b.Fatalf("%d of %d requests let through", next.n, iterations)
	}
	b.ReportMetric(float64(len(cookie)), "cookie-bytes")
}

// BenchmarkServeHTTPBaseline is the loop of the ServeHTTP benchmarks
// without the handler: request, context, recorder and next handler only.
func BenchmarkServeHTTPBaseline(b *testing.B) {
	next := &countingNext{}
	cookie := "_oauth2_proxy=" + strings.Repeat("x", 1500)
	b.ReportAllocs()
	for b.Loop() {
		if err := next.ServeHTTP(httptest.NewRecorder(), benchRequest("127.0.0.1:1", cookie)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServeHTTPCookie: the whole session in the cookie. Every
// iteration sends the same cookie: if the handler keeps decoded sessions by
// cookie value, this measures that cached path, not decryption and
// decoding (see BenchmarkCookieStoreLoad in ./sessions for those).
func BenchmarkServeHTTPCookie(b *testing.B) {
	benchServeHTTP(b, "")
}

// BenchmarkServeHTTPMemory: a ticket cookie, the session in the memory
// store.
func BenchmarkServeHTTPMemory(b *testing.B) {
	if _, err := caddy.GetModule("http.handlers.oidc_session.stores.memory"); err != nil {
		b.Skip("memory store not registered")
	}
	benchServeHTTP(b, "store memory")
}

// BenchmarkServeHTTPRedis: a ticket cookie, the session in a real Redis on
// loopback. "default": the session was verified less than recheck_interval
// ago and the feed of ended sessions is up, so no round trip; "always":
// recheck_interval always, one EXISTS round trip per request.
func BenchmarkServeHTTPRedis(b *testing.B) {
	srv := testredis.Start(b, testredis.Options{})
	for _, recheck := range []string{"default", "always"} {
		b.Run(recheck, func(b *testing.B) {
			opt := ""
			if recheck == "always" {
				opt = "\n\t\t\trecheck_interval always"
			}
			benchServeHTTP(b, testcaddy.StoreBlock("redis", "url "+srv.URL()+opt))
		})
	}
}

// BenchmarkCallback measures logins through the in-process Caddy (cookie
// store) against mockoidc, over loopback HTTP. It cannot isolate the
// callback from the IdP without changing the plugin, so:
//
//   - callback: only the callback request is timed (state and flow cookie
//     check, code redemption at mockoidc's token endpoint, ID token
//     verification, session cookie written), including that token call to
//     the mock IdP and both HTTP round trips; the protected page and the
//     IdP's authorize step before it are outside the timer.
//   - login: the whole login (protected page, IdP authorize, callback),
//     reported as logins/s including the mock IdP.
func BenchmarkCallback(b *testing.B) {
	idp := testcaddy.StartMockIdP(b, time.Hour, false)
	base, _ := benchCaddy(b, testcaddy.OIDCBlock(idp, "")+benchRespond)
	benchLogin(b, base) // discovery and JWKS fetched, as on a warm server

	b.Run("callback", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			c := testcaddy.NewClient()
			cb, err := startLogin(c, base)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := finishLogin(c, cb); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("login", func(b *testing.B) {
		b.ReportAllocs()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			c := testcaddy.NewClient()
			cb, err := startLogin(c, base)
			if err == nil {
				err = finishLogin(c, cb)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "logins/s")
	})
}

// BenchmarkServeHTTPBearer: an API call with an access token (the bearer
// block) through the handler's ServeHTTP. Each iteration presents the
// next of 1000 distinct tokens (1000 API clients, not one token replayed),
// every one verified once before the timer starts, so this is an API
// client's repeated call: the token's hash found in the verdict cache,
// the claims mapped to the identity, the access rules, the placeholders
// and headers. jwt: RS256 access tokens of the mock IdP; introspected:
// opaque tokens whose introspection answers are cached.
func BenchmarkServeHTTPBearer(b *testing.B) {
	idp := testcaddy.NewMockIdP(b, time.Hour, false)
	answers := map[string]map[string]any{}
	introspection := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		answer, ok := answers[r.PostForm.Get("token")] // written before the first request only
		if !ok {
			answer = map[string]any{"active": false}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(answer)
	}))
	b.Cleanup(introspection.Close)
	if err := idp.AddMiddleware(advertise("introspection_endpoint", introspection.URL)); err != nil {
		b.Fatal(err)
	}
	testcaddy.StartIdP(b, idp)
	raw, err := json.Marshal(map[string]any{
		"issuer": idp.Issuer(), "client_id": idp.ClientID, "client_secret": idp.ClientSecret,
		"cookie":  map[string]any{"secrets": []string{testcaddy.TestSecret}},
		"headers": map[string]any{"user": "X-Forwarded-User", "email": "X-Forwarded-Email", "groups": "X-Forwarded-Groups"},
		"bearer":  map[string]any{"audiences": []string{apiAudience}, "scopes_required": []string{"read"}, "introspection": true},
	})
	if err != nil {
		b.Fatal(err)
	}
	h := provisionHandler(b, raw)

	const clients = 1000
	jwts := make([]string, clients)
	opaque := make([]string, clients)
	for i := range clients {
		sub := fmt.Sprintf("client-%d", i)
		jwts[i] = accessToken(b, idp, sub, nil)
		opaque[i] = fmt.Sprintf("opaque-%d-%s", i, strings.Repeat("x", 32))
		answers[opaque[i]] = map[string]any{
			"active": true, "sub": sub, "aud": apiAudience, "scope": "read write", "exp": time.Now().Add(time.Hour).Unix(),
			"email": sub + "@example.com", "email_verified": true,
		}
	}
	for name, tokens := range map[string][]string{"jwt": jwts, "introspected": opaque} {
		b.Run(name, func(b *testing.B) {
			auth := make([]string, clients) // made outside the timed loop
			for i, tok := range tokens {
				auth[i] = "Bearer " + tok
			}
			request := func(i int) *http.Request {
				return benchRequestWith("api.test", http.Header{
					"Accept":        {"application/json"},
					"Authorization": {auth[i%clients]},
				})
			}
			next := &countingNext{}
			for i := range clients { // the first verification of each, untimed
				w := httptest.NewRecorder()
				if err := h.ServeHTTP(w, request(i), next); err != nil || w.Code != http.StatusOK {
					b.Fatalf("token %d not let through: err=%v, status %d %s", i, err, w.Code, w.Body)
				}
			}
			next.n = 0
			iterations := 0
			b.ReportAllocs()
			for b.Loop() {
				if err := h.ServeHTTP(httptest.NewRecorder(), request(iterations), next); err != nil {
					b.Fatal(err)
				}
				iterations++
			}
			if next.n != iterations {
				b.Fatalf("%d of %d requests let through", next.n, iterations)
			}
			b.ReportMetric(float64(len(tokens[0])), "token-bytes")
		})
	}
}
