package oidcsession

import (
	"cmp"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/oidc"
	"github.com/oidc-session/oidc_session/sessions"
)

// twoProviders is a provisioned handler with the IdPs corp (domains
// corp.example) and partners (its own callback URL). Nothing is
// discovered: the issuers do not answer.
func twoProviders(t *testing.T, edit func(h *Handler)) *Handler {
	t.Helper()
	h := &Handler{
		Providers: []ProviderBlock{
			{Name: "corp", ProviderConfig: ProviderConfig{Issuer: "http://127.0.0.1:1/corp", ClientID: "app"}, Label: "Staff sign-in", Domains: []string{"corp.example"}},
			{Name: "partners", ProviderConfig: ProviderConfig{Issuer: "http://127.0.0.1:1/partners", ClientID: "app-partners", RedirectURL: "/oauth2/partners/callback"}},
		},
		Cookie: CookieConfig{Secrets: []string{testSecret}},
	}
	if edit != nil {
		edit(h)
	}
	if err := provisioned(t, h); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestCaddyfileProviders(t *testing.T) {
	h, _ := adaptedHandler(t, "testdata/adapt/providers.caddyfile")
	if h.Issuer != "" || h.ClientID != "" {
		t.Errorf("top-level issuer %q client_id %q; want none", h.Issuer, h.ClientID)
	}
	if len(h.Providers) != 2 {
		t.Fatalf("%d providers; want 2", len(h.Providers))
	}
	corp, partners := h.Providers[0], h.Providers[1]
	if corp.Name != "corp" || corp.Issuer != "https://login.corp.example" || corp.ClientSecret != "{env.CORP_SECRET}" ||
		corp.Label != "Staff sign-in" || strings.Join(corp.Domains, " ") != "corp.example corp.example.net" {
		t.Errorf("corp = %+v", corp)
	}
	if partners.Name != "partners" || partners.ClientID != "app-partners" || partners.RedirectURL != "/oauth2/partners/callback" ||
		partners.Prompt != "select_account" || partners.AuthParams["domain_hint"] != "partner.example" {
		t.Errorf("partners = %+v", partners)
	}
	if partners.GroupsClaim != "roles" || strings.Join(partners.AllowedGroups, " ") != "partner-staff" || partners.RequiredClaims["tenant"][0] != "acme" ||
		corp.GroupsClaim != "" || corp.AllowedGroups != nil || strings.Join(h.AllowedGroups, " ") != "staff" {
		t.Errorf("rules: corp %+v, partners %+v, site %v", corp.ProviderRules, partners.ProviderRules, h.AllowedGroups)
	}
	if h.ChooserTemplate != "testdata/chooser.html" {
		t.Errorf("chooser_template = %q", h.ChooserTemplate)
	}
}

func TestIdPForLogin(t *testing.T) {
	h := twoProviders(t, nil)
	for _, c := range []struct {
		name, hint, want string
		err              bool
	}{
		{name: "partners", want: "partners"},
		{name: "corp", hint: "someone@partner.example", want: "corp"}, // a name wins over the hint
		{hint: "ann@corp.example", want: "corp"},
		{hint: "Ann@CORP.Example", want: "corp"},
		{hint: "ann@sub.corp.example"}, // domains are exact
		{hint: "ann@partner.example"},
		{hint: "ann"},
		{},
		{name: "nobody", err: true},
	} {
		p, err := h.idpForLogin(c.name, c.hint)
		got := ""
		if p != nil {
			got = p.name
		}
		if got != c.want || (err != nil) != c.err {
			t.Errorf("idpForLogin(%q, %q) = %q, %v; want %q, error %v", c.name, c.hint, got, err, c.want, c.err)
		}
	}
	single := &Handler{ProviderConfig: ProviderConfig{Issuer: "http://127.0.0.1:1", ClientID: "app"}, Cookie: CookieConfig{Secrets: []string{testSecret}}}
	if err := provisioned(t, single); err != nil {
		t.Fatal(err)
	}
	if p, err := single.idpForLogin("", ""); err != nil || p != single.primary() || p.name != defaultProviderName {
		t.Errorf("one IdP: %v, %v; want the default provider", p, err)
	}
}

// TestStartHostileInput: what an attacker puts in <prefix>/start's
// provider, email and login_hint on a site with several IdPs is a 400 or
// the chooser, never a login at a provider the input was not routed to,
// a 5xx, or markup of its own in the page.
func TestStartHostileInput(t *testing.T) {
	h := twoProviders(t, nil)
	for _, query := range []string{
		"provider=" + url.QueryEscape("corp\r\nX: y"),
		"provider=" + url.QueryEscape("../corp"),
		"provider=CORP",
		"provider=" + strings.Repeat("p", 4096),
		"email=" + url.QueryEscape("ann@corp.example\r\nX: y"),
		"email=" + url.QueryEscape("ann@corp.example\x00"),
		"email=" + strings.Repeat("a", 300) + "@corp.example",
		"login_hint=" + url.QueryEscape("\tann@corp.example"),
	} {
		err := h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/oauth2/start?"+query+"&rd=/", nil), nil)
		if statusOf(err) != http.StatusBadRequest {
			t.Errorf("%.80s: %v; want 400", query, err)
		}
	}
	// A domain after the last @ decides; markup in the address stays text.
	for query, want := range map[string]int{
		"email=" + url.QueryEscape("ann@corp.example@else.example"):         http.StatusOK, // else.example: the chooser
		"email=" + url.QueryEscape("ann@else.example@CORP.example"):         http.StatusServiceUnavailable,
		"email=" + url.QueryEscape(`"><script>alert(1)</script>@x.example`): http.StatusOK,
	} {
		rec := httptest.NewRecorder()
		err := h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/oauth2/start?"+query+"&rd=/", nil), nil)
		if got := cmp.Or(statusOf(err), rec.Code); got != want {
			t.Errorf("%s: %d; want %d", query, got, want)
		}
		if strings.Contains(rec.Body.String(), "<script>") {
			t.Errorf("%s: the chooser echoes markup:\n%s", query, rec.Body)
		}
	}
}

// TestChooser: a login that names no provider gets the chooser, which
// keeps the return URL (checked) and the login_hint, and works without
// scripts.
func TestChooser(t *testing.T) {
	h := twoProviders(t, nil)
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/oauth2/start?rd=/reports%3Fq%3D%22x%22&login_hint=ann@elsewhere.example", nil)
	if err := h.ServeHTTP(rec, r, nil); err != nil {
		t.Fatal(err)
	}
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("chooser: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	for _, want := range []string{
		`<html lang="en">`,
		`<form method="get" action="/oauth2/start"`,
		`<input type="hidden" name="rd" value="/reports?q=&#34;x&#34;">`,
		`<input type="hidden" name="login_hint" value="ann@elsewhere.example">`,
		`<button type="submit" name="provider" value="corp">Staff sign-in</button>`,
		`<button type="submit" name="provider" value="partners">partners</button>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("chooser lacks %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script") {
		t.Error("chooser has a script")
	}
	for k, want := range map[string]string{"Cache-Control": "no-store", "Content-Security-Policy": chooserCSP, "Referrer-Policy": "no-referrer"} {
		if got := rec.Header().Get(k); got != want {
			t.Errorf("%s: %q; want %q", k, got, want)
		}
	}
	if c := rec.Result().Cookies(); len(c) != 0 {
		t.Errorf("the chooser set cookies: %v", c)
	}

	// corp has domains: the page also asks for an email address.
	if !strings.Contains(body, `<label for="email">`) || !strings.Contains(body, `<input id="email" type="email" name="email" autocomplete="email" required value="ann@elsewhere.example">`) {
		t.Errorf("chooser lacks the email field:\n%s", body)
	}
	// An email of corp's domain goes to corp (which cannot be reached
	// here); one of no provider's comes back to the chooser.
	if err := h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/oauth2/start?email=+ann@corp.example&rd=/", nil), nil); statusOf(err) != http.StatusServiceUnavailable {
		t.Errorf("email of corp's domain: %v; want the login at corp (503, unreachable)", err)
	}
	rec = httptest.NewRecorder()
	if err := h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/oauth2/start?email=ann@else.example&rd=/", nil), nil); err != nil || !strings.Contains(rec.Body.String(), `value="ann@else.example"`) {
		t.Errorf("email of no provider's domain: %v\n%s", err, rec.Body)
	}

	// An unsafe rd is replaced before it reaches the page.
	rec = httptest.NewRecorder()
	if err := h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/oauth2/start?rd=//evil.example/", nil), nil); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rec.Body.String(), "evil") {
		t.Errorf("chooser kept an unsafe rd:\n%s", rec.Body)
	}

	// A protected page: the chooser comes back to it.
	rec = httptest.NewRecorder()
	r = httptest.NewRequest(http.MethodGet, "/app/page?x=1", nil)
	r.Header.Set("Sec-Fetch-Mode", "navigate")
	if err := h.ServeHTTP(rec, r, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rec.Body.String(), `name="rd" value="/app/page?x=1"`) {
		t.Errorf("chooser of a protected page:\n%s", rec.Body)
	}

	// An unknown provider is the client's mistake.
	err := h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/oauth2/start?provider=evil", nil), nil)
	if statusOf(err) != http.StatusBadRequest {
		t.Errorf("start?provider=evil: %v; want 400", err)
	}
}

func TestChooserTemplate(t *testing.T) {
	h := twoProviders(t, func(h *Handler) { h.ChooserTemplate = "testdata/chooser.html" })
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/oauth2/start?rd=/a%26b", nil), nil); err != nil {
		t.Fatal(err)
	}
	body := rec.Body.String()
	for _, want := range []string{`<html lang="de">`, `<a href="/oauth2/start?provider=corp&amp;rd=%2Fa%26b">Staff sign-in</a>`} {
		if !strings.Contains(body, want) {
			t.Errorf("custom chooser lacks %s:\n%s", want, body)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.html")
	if err := os.WriteFile(bad, []byte("{{.Nope}}"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A template that fails with the data it gets stops Caddy at start.
	h = &Handler{Providers: twoProviders(t, nil).Providers, Cookie: CookieConfig{Secrets: []string{testSecret}}}
	h.ChooserTemplate = bad
	if err := provisioned(t, h); err == nil || !strings.Contains(err.Error(), "executing it with sample data") {
		t.Errorf("a template that fails: Provision %v; want the chooser_template error", err)
	}
}

// TestUnauthenticatedAPIListsProviders: an API call without a session gets
// a 401 that names the providers, and the session endpoint lists them.
func TestUnauthenticatedAPIListsProviders(t *testing.T) {
	h := twoProviders(t, nil)
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/api/x", nil)
	r.Header.Set("Accept", "application/json")
	if err := h.ServeHTTP(rec, r, nil); statusOf(err) != http.StatusUnauthorized {
		t.Fatalf("API call: %v; want 401", err)
	}
	if got, want := rec.Header().Get("WWW-Authenticate"), `OIDC-Session providers="corp partners", login_uri="/oauth2/start"`; got != want {
		t.Errorf("WWW-Authenticate %q; want %q", got, want)
	}
	rec = httptest.NewRecorder()
	if err := h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/oauth2/session", nil), nil); err != nil {
		t.Fatal(err)
	}
	var status struct {
		Authenticated bool
		Providers     []struct {
			Name     string
			Label    string
			LoginURL string `json:"login_url"`
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &status); err != nil || rec.Code != http.StatusUnauthorized {
		t.Fatalf("session: %d %s", rec.Code, rec.Body)
	}
	if len(status.Providers) != 2 || status.Providers[0].Name != "corp" || status.Providers[0].Label != "Staff sign-in" ||
		status.Providers[1].LoginURL != "/oauth2/start?provider=partners" {
		t.Errorf("session providers: %+v", status.Providers)
	}
}

// TestCallbackMixUp: a login flow is finished only by its own provider, at
// its own callback URL; nothing is redeemed anywhere else.
func TestCallbackMixUp(t *testing.T) {
	h := twoProviders(t, nil)
	callback := func(path string, f *oidc.Flow) error {
		rec := httptest.NewRecorder()
		h.writeFlow(rec, httptest.NewRequest(http.MethodGet, "/", nil), f)
		r := httptest.NewRequest(http.MethodGet, path+"?code=c&state="+f.State, nil)
		for _, c := range rec.Result().Cookies() {
			r.AddCookie(c)
		}
		return h.ServeHTTP(httptest.NewRecorder(), r, nil)
	}
	partners := oidc.NewFlow("/", true)
	h.idpByName["partners"].recordIn(h, partners)
	err := callback("/oauth2/callback", partners)
	if statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "another URL than provider partners") {
		t.Errorf("partners' flow at corp's callback: %v; want 400", err)
	}
	corp := oidc.NewFlow("/", true) // the primary: no name recorded
	if err := callback("/oauth2/partners/callback", corp); statusOf(err) != http.StatusBadRequest {
		t.Errorf("corp's flow at partners' callback: %v; want 400", err)
	}
	gone := oidc.NewFlow("/", true)
	gone.Provider = "removed"
	if err := callback("/oauth2/callback", gone); statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "no longer configured") {
		t.Errorf("flow of a removed provider: %v; want 400", err)
	}
	// A reload that gives the name partners to another issuer: the flow's
	// code is not sent there.
	moved := oidc.NewFlow("/", true)
	moved.Provider, moved.Issuer = "partners", "http://127.0.0.1:1/partners-before"
	if err := callback("/oauth2/partners/callback", moved); statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "another issuer") {
		t.Errorf("flow of a provider name now another issuer's: %v; want 400", err)
	}
	// Its own callback: the IdP is asked (and cannot be reached here).
	if err := callback("/oauth2/partners/callback", partners); statusOf(err) != http.StatusServiceUnavailable {
		t.Errorf("partners' flow at its callback: %v; want 503 from the unreachable IdP", err)
	}
}

// TestCallbackURLOfEachProvider: every provider has a callback URL of its
// own (the primary <prefix>/callback, the others with ?provider=<name>, or
// their redirect_url), and the callback takes a flow only at its
// provider's: path, provider parameter and, for an absolute URL, host.
func TestCallbackURLOfEachProvider(t *testing.T) {
	h := twoProviders(t, func(h *Handler) {
		h.Providers[1].RedirectURL = ""
		h.Providers = append(h.Providers, ProviderBlock{Name: "ext", ProviderConfig: ProviderConfig{Issuer: "http://127.0.0.1:1/ext", ClientID: "app-ext", RedirectURL: "https://auth.example.com/oauth2/ext/callback"}})
	})
	start := httptest.NewRequest(http.MethodGet, "http://app.example.com/oauth2/start", nil)
	for name, want := range map[string]string{
		"corp":     "http://app.example.com/oauth2/callback",
		"partners": "http://app.example.com/oauth2/callback?provider=partners",
		"ext":      "https://auth.example.com/oauth2/ext/callback",
	} {
		if got := h.redirectURL(start, h.idpByName[name]); got != want {
			t.Errorf("redirect URI of %s: %q, want %q", name, got, want)
		}
	}
	callback := func(target string, f *oidc.Flow) error {
		rec := httptest.NewRecorder()
		h.writeFlow(rec, start, f)
		r := httptest.NewRequest(http.MethodGet, target+"code=c&state="+f.State, nil)
		for _, c := range rec.Result().Cookies() {
			r.AddCookie(c)
		}
		return h.ServeHTTP(httptest.NewRecorder(), r, nil)
	}
	flow := func(provider string) *oidc.Flow {
		f := oidc.NewFlow("/", true)
		if p := h.idpByName[provider]; p != nil {
			p.recordIn(h, f)
		}
		f.Provider = provider
		return f
	}
	for _, c := range []struct {
		target, provider string
		want             int // 503: taken (the IdP is then asked, and cannot be reached here)
	}{
		{"http://app.example.com/oauth2/callback?", "", http.StatusServiceUnavailable},
		{"http://app.example.com/oauth2/callback?provider=partners&", "partners", http.StatusServiceUnavailable},
		{"https://auth.example.com/oauth2/ext/callback?", "ext", http.StatusServiceUnavailable},
		{"https://AUTH.example.com:443/oauth2/ext/callback?", "ext", http.StatusServiceUnavailable},
		// The mix-up: an answer at another provider's callback URL.
		{"http://app.example.com/oauth2/callback?", "partners", http.StatusBadRequest},
		{"http://app.example.com/oauth2/callback?provider=partners&", "", http.StatusBadRequest},
		{"http://app.example.com/oauth2/callback?provider=ext&", "ext", http.StatusBadRequest},
		{"http://app.example.com/oauth2/callback?provider=&", "partners", http.StatusBadRequest},
		{"http://app.example.com/oauth2/callback?provider=corp&", "", http.StatusBadRequest},
		// An absolute redirect_url's path on another host.
		{"http://app.example.com/oauth2/ext/callback?", "ext", http.StatusBadRequest},
	} {
		if err := callback(c.target, flow(c.provider)); statusOf(err) != c.want {
			t.Errorf("flow of %q at %s: %v; want %d", c.provider, c.target, err, c.want)
		}
	}
}

// TestSessionProvider: a session belongs to the provider of its issuer;
// one of a provider no longer configured belongs to none.
func TestSessionProvider(t *testing.T) {
	h := twoProviders(t, nil)
	for iss, want := range map[string]string{
		"http://127.0.0.1:1/partners": "partners",
		"http://127.0.0.1:1/corp":     "corp",
		"":                            "corp", // stored before sessions recorded it: the primary's
		"http://127.0.0.1:1/gone":     "",
	} {
		if got := h.providerName(&sessions.Session{Issuer: iss}); got != want {
			t.Errorf("session of %q: provider %q; want %q", iss, got, want)
		}
	}
	// A site that moves its one IdP into the first provider block keeps
	// its sessions: they are sealed under the same issuer and client.
	single := &Handler{ProviderConfig: ProviderConfig{Issuer: "http://127.0.0.1:1/corp", ClientID: "app"}, Cookie: CookieConfig{Secrets: []string{testSecret}}}
	if err := provisioned(t, single); err != nil {
		t.Fatal(err)
	}
	sess := &sessions.Session{Subject: "u1", ExpiresAt: time.Now().Add(time.Hour), LastSeen: time.Now()}
	value, err := single.store.Save(t.Context(), "", sess)
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.store.Load(t.Context(), value)
	if err != nil || got.Subject != "u1" || h.providerName(got) != "corp" {
		t.Fatalf("the single-IdP session at the site with two: %+v, %v", got, err)
	}
	// A site whose first provider is another IdP does not read it.
	other := twoProviders(t, func(h *Handler) { h.Providers[0], h.Providers[1] = h.Providers[1], h.Providers[0] })
	if _, err := other.store.Load(t.Context(), value); !errors.Is(err, sessions.ErrNoSession) {
		t.Errorf("a site of another primary IdP read the session: %v", err)
	}
}

// TestProviderRules: a provider's own claims mapping and rules apply to its
// sessions, the site's to the others'.
func TestProviderRules(t *testing.T) {
	h := twoProviders(t, func(h *Handler) {
		h.AllowedGroups = []string{"staff"}
		h.Providers[1].ProviderRules = ProviderRules{UserIDClaim: "email", GroupsClaim: "roles", AllowedGroups: []string{"partner-staff"}}
	})
	claims := map[string]any{"sub": "u1", "email": "ann@partner.example", "email_verified": true, "groups": []any{"staff"}, "roles": []any{"partner-staff"}}
	corp := &sessions.Session{Issuer: "http://127.0.0.1:1/corp"}
	partners := &sessions.Session{Issuer: "http://127.0.0.1:1/partners"}
	for _, s := range []*sessions.Session{corp, partners} {
		if err := h.applyClaims(s, claims); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Join(corp.Groups, ",") != "staff" || strings.Join(partners.Groups, ",") != "partner-staff" {
		t.Errorf("groups: corp %v, partners %v", corp.Groups, partners.Groups)
	}
	if h.userID(corp) != "u1" || h.userID(partners) != "ann@partner.example" {
		t.Errorf("user ids: corp %q, partners %q", h.userID(corp), h.userID(partners))
	}
	if err := h.authorize(corp); err != nil {
		t.Errorf("corp's staff member: %v", err)
	}
	if err := h.authorize(partners); err != nil {
		t.Errorf("partners' staff member: %v", err)
	}
	// Each provider's groups are judged by its own rule only.
	partners.Groups = []string{"staff"}
	if err := h.authorize(partners); err == nil {
		t.Error("a partners user in corp's allowed group only was let in")
	}
}

// TestFrontchannelLogoutOfOneProvider: a front-channel logout names its
// issuer; only that provider's sessions of the sid end, and the browser's
// own session only if it is of that provider.
func TestFrontchannelLogoutOfOneProvider(t *testing.T) {
	h := twoProviders(t, func(h *Handler) { h.StoreRaw = json.RawMessage(`{"backend":"memory"}`) })
	const corpIss, partnersIss = "http://127.0.0.1:1/corp", "http://127.0.0.1:1/partners"
	save := func(iss string) string {
		now := time.Now()
		v, err := h.store.Save(t.Context(), "", &sessions.Session{Issuer: iss, Subject: "u1", SID: "s1", CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	atCorp, atPartners, browser := save(corpIss), save(partnersIss), save(corpIss)
	r := httptest.NewRequest(http.MethodGet, "/oauth2/frontchannel_logout?iss="+url.QueryEscape(partnersIss)+"&sid=s1", nil)
	r.AddCookie(&http.Cookie{Name: h.Cookie.Name, Value: browser})
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, r, nil); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("front-channel logout: %d %v", rec.Code, err)
	}
	if _, err := h.store.Load(t.Context(), atPartners); !errors.Is(err, sessions.ErrNoSession) {
		t.Errorf("partners' session of the sid: %v; want ended", err)
	}
	for name, v := range map[string]string{"corp's session of the sid": atCorp, "the browser's corp session": browser} {
		if _, err := h.store.Load(t.Context(), v); err != nil {
			t.Errorf("%s ended by partners' logout: %v", name, err)
		}
	}
	if c := rec.Result().Cookies(); len(c) != 0 {
		t.Errorf("the browser's corp session cookie was cleared: %v", c)
	}
	// The browser's own session of partners ends, and its cookie goes.
	r = httptest.NewRequest(http.MethodGet, "/oauth2/frontchannel_logout?iss="+url.QueryEscape(partnersIss)+"&sid=s1", nil)
	r.AddCookie(&http.Cookie{Name: h.Cookie.Name, Value: save(partnersIss)})
	rec = httptest.NewRecorder()
	if err := h.ServeHTTP(rec, r, nil); err != nil {
		t.Fatal(err)
	}
	if c := rec.Result().Cookies(); len(c) == 0 || c[0].MaxAge >= 0 {
		t.Errorf("the browser's partners session cookie: %v; want it cleared", c)
	}
	bad := httptest.NewRequest(http.MethodGet, "/oauth2/frontchannel_logout?iss=http://127.0.0.1:1/other&sid=s1", nil)
	if err := h.ServeHTTP(httptest.NewRecorder(), bad, nil); statusOf(err) != http.StatusBadRequest {
		t.Errorf("front-channel logout of another issuer: %v; want 400", err)
	}
}

// TestDomainsAreTheirProviders: partners (an IdP the site does not
// control) asserts a corp subject and a verified address of corp's
// domains: the site's allowed_email_domains would admit it, but the domain
// is corp's, so only corp speaks for it (403). The provider is handed on
// (headers { provider }), and a client cannot send that header itself.
func TestDomainsAreTheirProviders(t *testing.T) {
	h := twoProviders(t, func(h *Handler) {
		h.AllowedEmailDomains = []string{"corp.example", "partner.example"}
		h.Headers = &HeadersConfig{User: "X-Forwarded-User", Provider: "X-Forwarded-Provider"}
	})
	corp := &sessions.Session{Issuer: "http://127.0.0.1:1/corp"}
	forged := &sessions.Session{Issuer: "http://127.0.0.1:1/partners"}
	for _, s := range []*sessions.Session{corp, forged} {
		if err := h.applyClaims(s, map[string]any{"sub": "ceo", "email": "ceo@Corp.Example", "email_verified": true}); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.authorize(corp); err != nil {
		t.Errorf("corp's own user: %v", err)
	}
	if err := h.authorize(forged); !errors.Is(err, errForbidden) || !strings.Contains(err.Error(), "provider corp") {
		t.Errorf("partners' user with a corp address: %v; want refused as corp's domain", err)
	}
	partner := &sessions.Session{Issuer: "http://127.0.0.1:1/partners", Subject: "p", Email: "p@partner.example", EmailVerified: true}
	if err := h.authorize(partner); err != nil {
		t.Errorf("partners' user of a domain no provider claims: %v", err)
	}

	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-Forwarded-Provider", "corp")
	r.Header.Set("x_forwarded_provider", "corp")
	h.stripIdentityHeaders(r)
	if len(r.Header) != 0 {
		t.Errorf("client-sent provider headers kept: %v", r.Header)
	}
	h.expose(r, partner)
	if got := r.Header.Get("X-Forwarded-Provider"); got != "partners" {
		t.Errorf("X-Forwarded-Provider %q, want partners", got)
	}
}

// TestFrontchannelFromOtherIdPOrigin: a frame of partners' pages loading
// frontchannel_logout without iss and sid does not end the browser's corp
// session (partners did not log the user out of corp), even at one origin
// with corp; a frame of corp's pages does.
func TestFrontchannelFromOtherIdPOrigin(t *testing.T) {
	h := twoProviders(t, nil)
	now := time.Now()
	v, err := h.store.Save(t.Context(), "", &sessions.Session{Issuer: "http://127.0.0.1:1/corp", Subject: "u1", CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	frame := func(referer string) (*httptest.ResponseRecorder, error) {
		r := httptest.NewRequest(http.MethodGet, "/oauth2/frontchannel_logout", nil)
		r.Header.Set("Sec-Fetch-Site", "cross-site")
		r.Header.Set("Sec-Fetch-Dest", "iframe")
		r.Header.Set("Referer", referer)
		r.AddCookie(&http.Cookie{Name: h.Cookie.Name, Value: v})
		rec := httptest.NewRecorder()
		return rec, h.ServeHTTP(rec, r, nil)
	}
	cleared := func(rec *httptest.ResponseRecorder) bool {
		c := rec.Result().Cookies()
		return len(c) > 0 && c[0].Name == h.Cookie.Name && c[0].MaxAge < 0
	}
	rec, err := frame("http://127.0.0.1:1/partners/some-page")
	if cleared(rec) || statusOf(err) != http.StatusForbidden {
		t.Errorf("a frame of partners' pages: %v, cookie cleared %v; want 403 and the corp session kept", err, cleared(rec))
	}
	if rec, err := frame("http://127.0.0.1:1/corp/logout"); err != nil || !cleared(rec) {
		t.Errorf("a frame of corp's pages: %v, cookie cleared %v; want the session ended", err, cleared(rec))
	}
}

// TestNarrowerBlockLeavesSessions: a second oidc_session block (same
// cookie and secret) that lets only corp in, e.g. on /admin, answers a
// partners user's request as one without a session (401 here), and leaves
// the session and its cookie alone: the rest of the site still has it.
func TestNarrowerBlockLeavesSessions(t *testing.T) {
	site := twoProviders(t, nil)
	admin := &Handler{ProviderConfig: ProviderConfig{Issuer: "http://127.0.0.1:1/corp", ClientID: "app"}, Cookie: CookieConfig{Secrets: []string{testSecret}}}
	if err := provisioned(t, admin); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	v, err := site.store.Save(t.Context(), "", &sessions.Session{Issuer: "http://127.0.0.1:1/partners", Subject: "p1", CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/admin/", nil)
	r.Header.Set("Accept", "application/json")
	r.AddCookie(&http.Cookie{Name: site.Cookie.Name, Value: v})
	rec := httptest.NewRecorder()
	err = admin.ServeHTTP(rec, r, nil)
	if statusOf(err) != http.StatusUnauthorized {
		t.Errorf("partners' session at the corp-only block: %v; want 401", err)
	}
	if c := rec.Result().Cookies(); len(c) > 0 {
		t.Errorf("the corp-only block wrote cookie %s (max-age %d)", c[0].Name, c[0].MaxAge)
	}
	if s, err := site.store.Load(t.Context(), v); err != nil || s.Subject != "p1" {
		t.Errorf("the partners session after the corp-only block: %v %v; want it kept", s, err)
	}
}
