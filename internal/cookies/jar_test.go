package cookies_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/internal/cookies"
)

const cookieName = "_oauth2_proxy"

func newJar() *cookies.Jar {
	return &cookies.Jar{
		Name:     cookieName,
		Path:     "/",
		Secure:   true,
		HTTPOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}

func requestWith(cookies ...*http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://app.example.com/", nil)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	return r
}

func named(names ...string) []*http.Cookie {
	var cs []*http.Cookie
	for _, n := range names {
		cs = append(cs, &http.Cookie{Name: n, Value: "v-" + n})
	}
	return cs
}

// setCookies parses the response's Set-Cookie lines, failing on a name set
// twice (the browser would keep only one, whichever it saw last).
func setCookies(t *testing.T, rec *httptest.ResponseRecorder) map[string]*http.Cookie {
	t.Helper()
	out := map[string]*http.Cookie{}
	for _, c := range rec.Result().Cookies() {
		if _, dup := out[c.Name]; dup {
			t.Errorf("Set-Cookie for %q appears twice", c.Name)
		}
		out[c.Name] = c
	}
	return out
}

func sortedNames(m map[string]*http.Cookie) []string {
	var names []string
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// value returns n cookie-safe bytes.
func value(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[(i*7+i/64)%64]
	}
	return string(b)
}

func checkAlive(t *testing.T, c *http.Cookie, ttl time.Duration) {
	t.Helper()
	if c.MaxAge <= 0 || c.MaxAge > int(ttl.Seconds()) || c.MaxAge < int(ttl.Seconds())-5 {
		t.Errorf("%s: Max-Age %d, want about %d", c.Name, c.MaxAge, int(ttl.Seconds()))
	}
	if c.Expires.IsZero() || c.Expires.Before(time.Now()) {
		t.Errorf("%s: Expires %v, want in the future", c.Name, c.Expires)
	}
}

func checkDeleted(t *testing.T, c *http.Cookie) {
	t.Helper()
	if c.MaxAge >= 0 {
		t.Errorf("%s: Max-Age %d, want a deletion (Max-Age=0)", c.Name, c.MaxAge)
	}
	if c.Value != "" {
		t.Errorf("%s: deletion carries value %q", c.Name, c.Value)
	}
}

func checkAttributes(t *testing.T, c *http.Cookie, j *cookies.Jar) {
	t.Helper()
	if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != j.Domain {
		t.Errorf("%s: Secure=%v HttpOnly=%v SameSite=%v Path=%q Domain=%q, want Secure HttpOnly Lax / %q",
			c.Name, c.Secure, c.HttpOnly, c.SameSite, c.Path, c.Domain, j.Domain)
	}
}

func TestJarWriteOneCookie(t *testing.T) {
	j := newJar()
	rec := httptest.NewRecorder()
	v := value(100)
	if err := j.Write(rec, requestWith(), v, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	lines := rec.Result().Header.Values("Set-Cookie")
	if len(lines) != 1 {
		t.Fatalf("got %d Set-Cookie lines, want 1: %q", len(lines), lines)
	}
	for _, attr := range []string{cookieName + "=" + v, "; Secure", "; HttpOnly", "; SameSite=Lax", "; Path=/", "; Max-Age="} {
		if !strings.Contains(lines[0], attr) {
			t.Errorf("Set-Cookie %q lacks %q", lines[0], attr)
		}
	}
	c := setCookies(t, rec)[cookieName]
	checkAttributes(t, c, j)
	checkAlive(t, c, time.Hour)

	// Exactly one chunk's worth is still a single cookie.
	rec = httptest.NewRecorder()
	if err := j.Write(rec, requestWith(), value(cookies.ChunkSize), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := sortedNames(setCookies(t, rec)); !slices.Equal(got, []string{cookieName}) {
		t.Errorf("a value of exactly one chunk set %v", got)
	}
}

func TestJarWriteChunks(t *testing.T) {
	j := newJar()
	j.Domain = "example.com"
	rec := httptest.NewRecorder()
	v := value(10 * 1024)
	if err := j.Write(rec, requestWith(), v, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	set := setCookies(t, rec)
	want := []string{cookieName + "_0", cookieName + "_1", cookieName + "_2"}
	if got := sortedNames(set); !slices.Equal(got, want) {
		t.Fatalf("10 KB value set %v, want %v", got, want)
	}
	var joined strings.Builder
	var back []*http.Cookie
	for _, n := range want {
		c := set[n]
		checkAttributes(t, c, j)
		checkAlive(t, c, time.Hour)
		if len(c.Value) > cookies.ChunkSize {
			t.Errorf("%s is %d bytes, more than a chunk", n, len(c.Value))
		}
		joined.WriteString(c.Value)
		back = append(back, &http.Cookie{Name: c.Name, Value: c.Value})
	}
	if joined.String() != v {
		t.Fatal("the chunks do not join into the value")
	}
	for _, line := range rec.Result().Header.Values("Set-Cookie") {
		if len(line) >= 4096 {
			t.Errorf("a Set-Cookie line is %d bytes, browsers only guarantee 4096", len(line))
		}
	}

	// Read joins them back, whatever order the browser sends them in.
	if got := j.Read(requestWith(back...)); got != v {
		t.Errorf("Read of the chunks returned %d bytes, want the %d-byte value", len(got), len(v))
	}
	slices.Reverse(back)
	back = append(back, named("other", cookieName+"_flow_abc")...)
	if got := j.Read(requestWith(back...)); got != v {
		t.Errorf("Read of reversed chunks returned %d bytes, want the %d-byte value", len(got), len(v))
	}
}

func TestJarWriteSmallDeletesChunks(t *testing.T) {
	j := newJar()
	rec := httptest.NewRecorder()
	r := requestWith(named(cookieName+"_0", cookieName+"_1", cookieName+"_2", cookieName+"_3", "other", cookieName+"_flow_x")...)
	if err := j.Write(rec, r, "small", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	set := setCookies(t, rec)
	want := []string{cookieName, cookieName + "_0", cookieName + "_1", cookieName + "_2", cookieName + "_3"}
	if got := sortedNames(set); !slices.Equal(got, want) {
		t.Fatalf("Set-Cookie for %v, want %v", got, want)
	}
	if c := set[cookieName]; c.Value != "small" {
		t.Errorf("%s = %q, want \"small\"", cookieName, c.Value)
	} else {
		checkAlive(t, c, time.Hour)
	}
	for _, n := range want[1:] {
		checkDeleted(t, set[n])
		checkAttributes(t, set[n], j)
	}
}

func TestJarWriteFewerChunks(t *testing.T) {
	j := newJar()
	rec := httptest.NewRecorder()
	r := requestWith(named(cookieName, cookieName+"_0", cookieName+"_1", cookieName+"_2", cookieName+"_3", "other")...)
	v := value(cookies.ChunkSize + 10)
	if err := j.Write(rec, r, v, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	set := setCookies(t, rec)
	want := []string{cookieName, cookieName + "_0", cookieName + "_1", cookieName + "_2", cookieName + "_3"}
	if got := sortedNames(set); !slices.Equal(got, want) {
		t.Fatalf("Set-Cookie for %v, want %v", got, want)
	}
	checkAlive(t, set[cookieName+"_0"], time.Hour)
	checkAlive(t, set[cookieName+"_1"], time.Hour)
	if set[cookieName+"_0"].Value+set[cookieName+"_1"].Value != v {
		t.Error("the two chunks do not join into the value")
	}
	for _, n := range []string{cookieName, cookieName + "_2", cookieName + "_3"} {
		checkDeleted(t, set[n])
	}
}

func TestJarWriteSameChunksDeletesNothing(t *testing.T) {
	j := newJar()
	rec := httptest.NewRecorder()
	r := requestWith(named(cookieName+"_0", cookieName+"_1", cookieName+"_2")...)
	if err := j.Write(rec, r, value(3*cookies.ChunkSize), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for n, c := range setCookies(t, rec) {
		checkAlive(t, c, time.Hour)
		if n == cookieName {
			t.Errorf("set the unsplit cookie while writing chunks")
		}
	}
}

func TestJarWriteTooLarge(t *testing.T) {
	j := newJar()
	limit := cookies.MaxChunks * cookies.ChunkSize

	rec := httptest.NewRecorder()
	if err := j.Write(rec, requestWith(), value(limit), time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("a value of exactly maxChunks*chunkSize: %v", err)
	}
	if n := len(setCookies(t, rec)); n != cookies.MaxChunks {
		t.Errorf("wrote %d cookies, want %d", n, cookies.MaxChunks)
	}

	rec = httptest.NewRecorder()
	err := j.Write(rec, requestWith(named(cookieName)...), value(limit+1), time.Now().Add(time.Hour))
	if !errors.Is(err, cookies.ErrTooLarge) {
		t.Fatalf("Write of %d bytes: %v, want ErrTooLarge", limit+1, err)
	}
	if lines := rec.Result().Header.Values("Set-Cookie"); len(lines) != 0 {
		t.Errorf("a refused Write still set cookies: %q", lines)
	}
}

func TestJarRead(t *testing.T) {
	j := newJar()
	for _, tc := range []struct {
		name    string
		cookies []*http.Cookie
		want    string
	}{
		{"none", nil, ""},
		{"unsplit", []*http.Cookie{{Name: cookieName, Value: "abc"}}, "abc"},
		{"unsplit among others", []*http.Cookie{{Name: "a", Value: "1"}, {Name: cookieName, Value: "abc"}, {Name: cookieName + "X", Value: "2"}}, "abc"},
		{"two chunks", []*http.Cookie{{Name: cookieName + "_0", Value: "ab"}, {Name: cookieName + "_1", Value: "cd"}}, "abcd"},
		{"gap", []*http.Cookie{{Name: cookieName + "_0", Value: "ab"}, {Name: cookieName + "_2", Value: "ef"}}, ""},
		{"missing first", []*http.Cookie{{Name: cookieName + "_1", Value: "cd"}}, ""},
		{"empty chunk", []*http.Cookie{{Name: cookieName + "_0", Value: "ab"}, {Name: cookieName + "_1", Value: ""}, {Name: cookieName + "_2", Value: "ef"}}, ""},
		{"ignores _99", []*http.Cookie{{Name: cookieName + "_0", Value: "ab"}, {Name: cookieName + "_1", Value: "cd"}, {Name: cookieName + "_99", Value: "zz"}}, "abcd"},
		{"only _99", []*http.Cookie{{Name: cookieName + "_99", Value: "zz"}}, ""},
		{"beyond maxChunks", []*http.Cookie{{Name: cookieName + "_0", Value: "ab"}, {Name: cookieName + "_" + strconv.Itoa(cookies.MaxChunks), Value: "zz"}}, "ab"},
		{"ignores flow", []*http.Cookie{{Name: cookieName + "_flow_abc", Value: "f"}, {Name: cookieName + "_0", Value: "ab"}}, "ab"},
		{"only flow", []*http.Cookie{{Name: cookieName + "_flow_abc", Value: "f"}, {Name: cookieName + "_flow_0", Value: "g"}}, ""},
		{"non-canonical index", []*http.Cookie{{Name: cookieName + "_0", Value: "ab"}, {Name: cookieName + "_1", Value: "cd"}, {Name: cookieName + "_01", Value: "XX"}, {Name: cookieName + "_+1", Value: "YY"}, {Name: cookieName + "_-0", Value: "ZZ"}}, "abcd"},
	} {
		if got := j.Read(requestWith(tc.cookies...)); got != tc.want {
			t.Errorf("%s: Read = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestJarClear(t *testing.T) {
	j := newJar()
	j.Domain = "example.com"
	rec := httptest.NewRecorder()
	j.Clear(rec, requestWith(named(cookieName, cookieName+"_0", cookieName+"_1", cookieName+"_2", cookieName+"_flow_x", "other", cookieName+"X")...))
	set := setCookies(t, rec)
	want := []string{cookieName, cookieName + "_0", cookieName + "_1", cookieName + "_2"}
	if got := sortedNames(set); !slices.Equal(got, want) {
		t.Fatalf("Clear deleted %v, want %v", got, want)
	}
	for _, c := range set {
		checkDeleted(t, c)
		// A deletion only works with the Path and Domain the cookie was set with.
		checkAttributes(t, c, j)
	}

	rec = httptest.NewRecorder()
	j.Clear(rec, requestWith(named("other")...))
	if lines := rec.Result().Header.Values("Set-Cookie"); len(lines) != 0 {
		t.Errorf("Clear without session cookies set %q", lines)
	}
}

func TestJarSetForAndDelete(t *testing.T) {
	j := newJar()
	rec := httptest.NewRecorder()
	j.SetFor(rec, j.FlowPrefix()+"abc", "flowvalue", 10*time.Minute)
	j.Delete(rec, j.FlowPrefix()+"old")
	set := setCookies(t, rec)
	c := set[cookieName+"_flow_abc"]
	if c == nil || c.Value != "flowvalue" {
		t.Fatalf("SetFor did not set %s_flow_abc: %v", cookieName, sortedNames(set))
	}
	checkAlive(t, c, 10*time.Minute)
	checkAttributes(t, c, j)
	if d := set[cookieName+"_flow_old"]; d == nil {
		t.Error("Delete set nothing")
	} else {
		checkDeleted(t, d)
	}
}

func TestJarStripRequest(t *testing.T) {
	j := newJar()
	for _, tc := range []struct {
		name   string
		header []string
		want   []string // nil: no Cookie header left
	}{
		{
			name: "mixed",
			header: []string{"other=1; _oauth2_proxy=abc; _oauth2_proxy_0=x; _oauth2_proxy_1=y; _oauth2_proxy_flow_abc=f; " +
				"_oauth2_proxyX=1; _oauth2_proxy_flowless=1; _oauth2_proxy_csrf=z; _oauth2_proxy_99=q; last=2"},
			want: []string{"other=1; _oauth2_proxyX=1; _oauth2_proxy_flowless=1; _oauth2_proxy_csrf=z; last=2"},
		},
		{
			name:   "several header lines",
			header: []string{"a=1; _oauth2_proxy_0=x", "_oauth2_proxy_1=y", "b=2"},
			want:   []string{"a=1; b=2"},
		},
		{
			name:   "only ours",
			header: []string{"_oauth2_proxy=abc; _oauth2_proxy_flow_x=1", "_oauth2_proxy_0=x"},
			want:   nil,
		},
		{
			name:   "nothing of ours is left untouched",
			header: []string{"a=1;b=2;;  c=3", "d=4"},
			want:   []string{"a=1;b=2;;  c=3", "d=4"},
		},
		{
			name:   "spacing and valueless parts",
			header: []string{" _oauth2_proxy = abc ;novalue; e=5"},
			want:   []string{"novalue; e=5"},
		},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["Cookie"] = tc.header
		j.StripRequest(r)
		got := r.Header["Cookie"]
		if !slices.Equal(got, tc.want) || (tc.want == nil && r.Header.Get("Cookie") != "") {
			t.Errorf("%s: Cookie header %q, want %q", tc.name, got, tc.want)
		}
		for _, c := range r.Cookies() {
			if j.Owns(c.Name) {
				t.Errorf("%s: cookie %s survived", tc.name, c.Name)
			}
		}
	}
	// No Cookie header at all: nothing to do, nothing added.
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	j.StripRequest(r)
	if _, ok := r.Header["Cookie"]; ok {
		t.Error("StripRequest added a Cookie header")
	}
}

func TestJarOwns(t *testing.T) {
	for _, name := range []string{"_oauth2_proxy", "my.app-session", "a-b.c"} {
		j := &cookies.Jar{Name: name}
		owned := []string{name, name + "_0", name + "_7", name + "_10", name + "_99", name + "_flow_x", name + "_flow_a.b-c", j.FlowPrefix() + "0"}
		notOwned := []string{
			"", "other", name + "X", name + "_", name + "-0", name + ".0", name + "_abc", name + "_100",
			name + "_flowless", name + "_flow", name + "_+1", name + "_-0", name + "_01", name + "_0 ",
			"X" + name, "x" + name + "_0", strings.ToUpper(name),
			// Dots are not wildcards.
			strings.ReplaceAll(name, ".", "X"), strings.ReplaceAll(name, ".", "X") + "_0",
			strings.ReplaceAll(name, "-", "_"),
		}
		for _, n := range owned {
			if !j.Owns(n) {
				t.Errorf("Jar %q does not own %q", name, n)
			}
		}
		for _, n := range notOwned {
			if !slices.Contains(owned, n) && j.Owns(n) {
				t.Errorf("Jar %q owns %q", name, n)
			}
		}
	}
}
