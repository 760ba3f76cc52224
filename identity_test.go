package oidcsession

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/oidc-session/oidc_session/sessions"
)

func TestAuthorize(t *testing.T) {
	cases := []struct {
		name string
		h    Handler
		s    sessions.Session
		ok   bool
	}{
		{"no rules", Handler{}, sessions.Session{Subject: "u"}, true},

		// allowed_email_domains
		{"domain verified", Handler{AccessRules: AccessRules{AllowedEmailDomains: []string{"example.com"}}},
			sessions.Session{Email: "a@example.com", EmailVerified: true}, true},
		{"domain second in list", Handler{AccessRules: AccessRules{AllowedEmailDomains: []string{"other.org", "example.com"}}},
			sessions.Session{Email: "a@example.com", EmailVerified: true}, true},
		{"domain unverified", Handler{AccessRules: AccessRules{AllowedEmailDomains: []string{"example.com"}}},
			sessions.Session{Email: "a@example.com"}, false},
		{"domain unverified allowed", Handler{AccessRules: AccessRules{AllowedEmailDomains: []string{"example.com"}, AllowUnverifiedEmail: true}},
			sessions.Session{Email: "a@example.com"}, true},
		{"domain unverified allowed but wrong domain", Handler{AccessRules: AccessRules{AllowedEmailDomains: []string{"example.com"}, AllowUnverifiedEmail: true}},
			sessions.Session{Email: "a@evil.com"}, false},
		{"domain case in email", Handler{AccessRules: AccessRules{AllowedEmailDomains: []string{"example.com"}}},
			sessions.Session{Email: "A@EXAMPLE.COM", EmailVerified: true}, true},
		{"domain case in config", Handler{AccessRules: AccessRules{AllowedEmailDomains: []string{"Example.COM"}}},
			sessions.Session{Email: "a@example.com", EmailVerified: true}, true},
		{"other domain", Handler{AccessRules: AccessRules{AllowedEmailDomains: []string{"example.com"}}},
			sessions.Session{Email: "a@evil.com", EmailVerified: true}, false},
		{"subdomain is not the domain", Handler{AccessRules: AccessRules{AllowedEmailDomains: []string{"example.com"}}},
			sessions.Session{Email: "a@sub.example.com", EmailVerified: true}, false},
		{"domain as suffix of other", Handler{AccessRules: AccessRules{AllowedEmailDomains: []string{"example.com"}}},
			sessions.Session{Email: "a@evilexample.com", EmailVerified: true}, false},
		{"no email", Handler{AccessRules: AccessRules{AllowedEmailDomains: []string{"example.com"}}},
			sessions.Session{EmailVerified: true}, false},
		{"email without @", Handler{AccessRules: AccessRules{AllowedEmailDomains: []string{"example.com"}}},
			sessions.Session{Email: "example.com", EmailVerified: true}, false},
		// An address with several @ is ambiguous (what a mail system does
		// with it depends on its parser), so it never matches a domain:
		// neither the part after the first @ nor the part after the last.
		{"two @ allowed last", Handler{AccessRules: AccessRules{AllowedEmailDomains: []string{"example.com"}}},
			sessions.Session{Email: "a@evil.com@example.com", EmailVerified: true}, false},
		{"two @ allowed middle", Handler{AccessRules: AccessRules{AllowedEmailDomains: []string{"evil.com"}}},
			sessions.Session{Email: "a@evil.com@example.com", EmailVerified: true}, false},
		{"two @ allowed first-cut remainder", Handler{AccessRules: AccessRules{AllowedEmailDomains: []string{"example.com"}}},
			sessions.Session{Email: "a@example.com@evil.com", EmailVerified: true}, false},
		{"quoted local part with @", Handler{AccessRules: AccessRules{AllowedEmailDomains: []string{"example.com"}}},
			sessions.Session{Email: `"a@evil.com"@example.com`, EmailVerified: true}, false},

		// allowed_groups
		{"group member", Handler{AccessRules: AccessRules{AllowedGroups: []string{"admins", "ops"}}},
			sessions.Session{Groups: []string{"users", "ops"}}, true},
		{"not a member", Handler{AccessRules: AccessRules{AllowedGroups: []string{"admins"}}},
			sessions.Session{Groups: []string{"users"}}, false},
		{"no groups", Handler{AccessRules: AccessRules{AllowedGroups: []string{"admins"}}},
			sessions.Session{}, false},
		{"group case matters", Handler{AccessRules: AccessRules{AllowedGroups: []string{"admins"}}},
			sessions.Session{Groups: []string{"Admins"}}, false},

		// required_claims
		{"scalar claim matches", Handler{AccessRules: AccessRules{RequiredClaims: map[string][]string{"role": {"admin", "editor"}}}},
			sessions.Session{Claims: map[string][]string{"role": {"editor"}}}, true},
		{"scalar claim differs", Handler{AccessRules: AccessRules{RequiredClaims: map[string][]string{"role": {"admin"}}}},
			sessions.Session{Claims: map[string][]string{"role": {"viewer"}}}, false},
		{"list claim contains", Handler{AccessRules: AccessRules{RequiredClaims: map[string][]string{"roles": {"admin"}}}},
			sessions.Session{Claims: map[string][]string{"roles": {"viewer", "admin"}}}, true},
		{"list claim lacks", Handler{AccessRules: AccessRules{RequiredClaims: map[string][]string{"roles": {"admin"}}}},
			sessions.Session{Claims: map[string][]string{"roles": {"viewer", "editor"}}}, false},
		{"claim missing", Handler{AccessRules: AccessRules{RequiredClaims: map[string][]string{"role": {"admin"}}}},
			sessions.Session{}, false},
		{"every claim must match", Handler{AccessRules: AccessRules{RequiredClaims: map[string][]string{"role": {"admin"}, "tenant": {"acme"}}}},
			sessions.Session{Claims: map[string][]string{"role": {"admin"}, "tenant": {"other"}}}, false},
		{"every claim matches", Handler{AccessRules: AccessRules{RequiredClaims: map[string][]string{"role": {"admin"}, "tenant": {"acme"}}}},
			sessions.Session{Claims: map[string][]string{"role": {"admin"}, "tenant": {"acme"}}}, true},

		// rules combine
		{"all rules pass", Handler{
			AccessRules: AccessRules{AllowedEmailDomains: []string{"example.com"}, AllowedGroups: []string{"ops"}, RequiredClaims: map[string][]string{"role": {"admin"}}},
		},
			sessions.Session{Email: "a@example.com", EmailVerified: true, Groups: []string{"ops"},
				Claims: map[string][]string{"role": {"admin"}}}, true},
		{"group fails while email passes", Handler{AccessRules: AccessRules{AllowedEmailDomains: []string{"example.com"}, AllowedGroups: []string{"ops"}}},
			sessions.Session{Email: "a@example.com", EmailVerified: true, Groups: []string{"dev"}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.h.authorize(&tc.s)
			if tc.ok && err != nil {
				t.Fatalf("authorize: %v; want allowed", err)
			}
			if !tc.ok {
				if err == nil {
					t.Fatal("authorize allowed; want denied")
				}
				if !errors.Is(err, errForbidden) {
					t.Fatalf("authorize error %v does not wrap errForbidden", err)
				}
			}
		})
	}
}

func TestIdentityApplyClaims(t *testing.T) {
	cases := []struct {
		name    string
		h       Handler
		claims  map[string]any
		want    sessions.Session
		wantErr bool
	}{
		{
			name: "defaults",
			h:    Handler{IdentityConfig: IdentityConfig{UserIDClaim: "sub", GroupsClaim: "groups"}},
			claims: map[string]any{
				"sub": "u1", "email": "a@example.com", "email_verified": true,
				"name": "Ann", "preferred_username": "ann", "groups": []any{"g1", "g2"}, "sid": "s1",
			},
			want: sessions.Session{Subject: "u1", Email: "a@example.com", EmailVerified: true,
				Name: "Ann", Groups: []string{"g1", "g2"}, SID: "s1"},
		},
		{
			name:   "user id from email",
			h:      Handler{IdentityConfig: IdentityConfig{UserIDClaim: "email", GroupsClaim: "groups"}},
			claims: map[string]any{"sub": "u1", "email": "a@example.com", "email_verified": true},
			want: sessions.Session{Subject: "u1", Email: "a@example.com", EmailVerified: true,
				Claims: map[string][]string{"email": {"a@example.com"}}},
		},
		{
			// Anyone who can register an address at the IdP must not
			// become its owner here.
			name:    "user id from an unverified email",
			h:       Handler{IdentityConfig: IdentityConfig{UserIDClaim: "email", GroupsClaim: "groups"}},
			claims:  map[string]any{"sub": "u1", "email": "a@example.com"},
			wantErr: true,
		},
		{
			name:   "user id from an unverified email, allowed",
			h:      Handler{IdentityConfig: IdentityConfig{UserIDClaim: "email", GroupsClaim: "groups"}, AccessRules: AccessRules{AllowUnverifiedEmail: true}},
			claims: map[string]any{"sub": "u1", "email": "a@example.com"},
			want: sessions.Session{Subject: "u1", Email: "a@example.com",
				Claims: map[string][]string{"email": {"a@example.com"}}},
		},
		{
			name:   "unverified email asked for as a claim",
			h:      Handler{IdentityConfig: IdentityConfig{UserIDClaim: "sub", GroupsClaim: "groups", Claims: []string{"email"}}},
			claims: map[string]any{"sub": "u1", "email": "a@example.com", "email_verified": false},
			want:   sessions.Session{Subject: "u1"},
		},
		{
			name:    "missing user id claim",
			h:       Handler{IdentityConfig: IdentityConfig{UserIDClaim: "email", GroupsClaim: "groups"}},
			claims:  map[string]any{"sub": "u1"},
			wantErr: true,
		},
		{
			name:   "groups as single string",
			h:      Handler{IdentityConfig: IdentityConfig{UserIDClaim: "sub", GroupsClaim: "groups"}},
			claims: map[string]any{"sub": "u1", "groups": "admins"},
			want:   sessions.Session{Subject: "u1", Groups: []string{"admins"}},
		},
		{
			name:   "custom groups claim",
			h:      Handler{IdentityConfig: IdentityConfig{UserIDClaim: "sub", GroupsClaim: "roles"}},
			claims: map[string]any{"sub": "u1", "groups": []any{"ignored"}, "roles": []any{"r1"}},
			want:   sessions.Session{Subject: "u1", Groups: []string{"r1"}},
		},
		{
			name:   "name falls back to preferred_username",
			h:      Handler{IdentityConfig: IdentityConfig{UserIDClaim: "sub", GroupsClaim: "groups"}},
			claims: map[string]any{"sub": "u1", "preferred_username": "ann"},
			want:   sessions.Session{Subject: "u1", Name: "ann"},
		},
		{
			name:   "email_verified false",
			h:      Handler{IdentityConfig: IdentityConfig{UserIDClaim: "sub", GroupsClaim: "groups"}},
			claims: map[string]any{"sub": "u1", "email": "a@example.com", "email_verified": false},
			want:   sessions.Session{Subject: "u1"},
		},
		{
			name:   "email_verified false, allowed",
			h:      Handler{IdentityConfig: IdentityConfig{UserIDClaim: "sub", GroupsClaim: "groups"}, AccessRules: AccessRules{AllowUnverifiedEmail: true}},
			claims: map[string]any{"sub": "u1", "email": "a@example.com", "email_verified": false},
			want:   sessions.Session{Subject: "u1", Email: "a@example.com"},
		},
		{
			// Some IdPs send the boolean as a string.
			name:   "email_verified as string",
			h:      Handler{IdentityConfig: IdentityConfig{UserIDClaim: "sub", GroupsClaim: "groups"}},
			claims: map[string]any{"sub": "u1", "email": "a@example.com", "email_verified": "true"},
			want:   sessions.Session{Subject: "u1", Email: "a@example.com", EmailVerified: true},
		},
		{
			name: "kept claims: asked for and required",
			h: Handler{
				IdentityConfig: IdentityConfig{UserIDClaim: "sub", GroupsClaim: "groups", Claims: []string{"department", "absent"}},
				AccessRules:    AccessRules{RequiredClaims: map[string][]string{"roles": {"admin"}}},
			},
			claims: map[string]any{"sub": "u1", "department": "sales", "roles": []any{"admin", "dev"}, "other": "x"},
			want: sessions.Session{Subject: "u1",
				Claims: map[string][]string{"department": {"sales"}, "roles": {"admin", "dev"}}},
		},
		{
			name:    "missing sub",
			h:       Handler{IdentityConfig: IdentityConfig{UserIDClaim: "sub", GroupsClaim: "groups"}},
			claims:  map[string]any{"email": "a@example.com"},
			wantErr: true,
		},
		{
			name:    "sub not a string",
			h:       Handler{IdentityConfig: IdentityConfig{UserIDClaim: "sub", GroupsClaim: "groups"}},
			claims:  map[string]any{"sub": 42.0},
			wantErr: true,
		},
		{
			name:    "missing user id claim and sub",
			h:       Handler{IdentityConfig: IdentityConfig{UserIDClaim: "email", GroupsClaim: "groups"}},
			claims:  map[string]any{"name": "Ann"},
			wantErr: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var s sessions.Session
			err := tc.h.applyClaims(&s, tc.claims)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("applyClaims succeeded with %+v; want error", s)
				}
				return
			}
			if err != nil {
				t.Fatalf("applyClaims: %v", err)
			}
			if !reflect.DeepEqual(s, tc.want) {
				t.Fatalf("applyClaims:\n got %+v\nwant %+v", s, tc.want)
			}
		})
	}
}

// A refresh whose ID token has no sid keeps the login's: back- and
// front-channel logout find sessions by it. A new sid replaces it.
func TestIdentityApplyClaimsKeepsSID(t *testing.T) {
	h := Handler{IdentityConfig: IdentityConfig{UserIDClaim: "sub", GroupsClaim: "groups"}}
	s := sessions.Session{SID: "idp-session-1"}
	if err := h.applyClaims(&s, map[string]any{"sub": "u1"}); err != nil || s.SID != "idp-session-1" {
		t.Fatalf("refresh without sid: sid %q, %v; want the login's", s.SID, err)
	}
	if err := h.applyClaims(&s, map[string]any{"sub": "u1", "sid": "idp-session-2"}); err != nil || s.SID != "idp-session-2" {
		t.Fatalf("refresh with a new sid: sid %q, %v", s.SID, err)
	}
}

// A refresh re-applies claims to an existing session: claims dropped from
// the configuration or the token must not linger.
func TestIdentityApplyClaimsResetsClaims(t *testing.T) {
	h := Handler{IdentityConfig: IdentityConfig{UserIDClaim: "sub", GroupsClaim: "groups", Claims: []string{"department"}}}
	s := sessions.Session{Claims: map[string][]string{"department": {"old"}, "stale": {"x"}}}
	if err := h.applyClaims(&s, map[string]any{"sub": "u1"}); err != nil {
		t.Fatal(err)
	}
	if s.Claims != nil {
		t.Fatalf("claims = %v; want none", s.Claims)
	}
}

func TestHeaderStripping(t *testing.T) {
	h := &Handler{IdentityConfig: IdentityConfig{Headers: &HeadersConfig{User: "X-Auth-Id"}}}
	h.provisionIdentity()

	r := httptest.NewRequest("GET", "http://app.example.com/", nil)
	// Set the map directly: these are the spellings a client can put on
	// the wire, not Go's canonical form.
	forged := []string{
		"X-Forwarded-User", "x-forwarded-user", "X_Forwarded_User", "x_fORWARDED_uSER",
		"Remote-User", "remote_user", "X-Forwarded-Email", "X-Auth-Request-User",
		"X-Auth-Id", "x-auth-id", "X_AUTH_ID", "x_Auth-iD",
	}
	for _, name := range forged {
		r.Header[name] = []string{"admin"}
	}
	kept := map[string]string{
		"X-Forwarded-For":   "203.0.113.1",
		"X-Forwarded-Proto": "https",
		"X-Forwarded-Host":  "app.example.com",
		"X-Auth-Idx":        "near miss",
		"Accept":            "text/html",
		"Authorization":     "Bearer t",
	}
	for k, v := range kept {
		r.Header.Set(k, v)
	}

	h.stripIdentityHeaders(r)

	for _, name := range forged {
		if _, ok := r.Header[name]; ok {
			t.Errorf("header %q not stripped", name)
		}
	}
	for k, v := range kept {
		if got := r.Header.Get(k); got != v {
			t.Errorf("unrelated header %s = %q; want %q", k, got, v)
		}
	}
	if len(r.Header) != len(kept) {
		t.Errorf("headers left: %v; want only %d unrelated ones", r.Header, len(kept))
	}
}

// The same, for a request as the HTTP server parses it off the wire.
func TestHeaderStrippingFromWire(t *testing.T) {
	h := &Handler{IdentityConfig: IdentityConfig{Headers: &HeadersConfig{User: "X-Auth-Id", Email: "X-Auth-Mail"}}}
	h.provisionIdentity()
	raw := "GET / HTTP/1.1\r\nHost: app.example.com\r\n" +
		"x-forwarded-user: a\r\nX_Forwarded_User: b\r\nx_fORWARDED_uSER: c\r\nREMOTE-USER: d\r\n" +
		"x-auth-id: e\r\nX_AUTH_ID: f\r\nx_auth_mail: g\r\n" +
		"X-Request-Id: keep\r\n\r\n"
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	h.stripIdentityHeaders(r)
	if len(r.Header) != 1 || r.Header.Get("X-Request-Id") != "keep" {
		t.Fatalf("headers after stripping: %v; want only X-Request-Id", r.Header)
	}
}

// Without a headers config the conventional identity headers are still
// stripped.
func TestHeaderStrippingDefaults(t *testing.T) {
	names := identityHeaderNames(nil)
	for _, n := range []string{"x-forwarded-user", "x-forwarded-email", "x-forwarded-groups",
		"x-forwarded-access-token", "x-auth-request-user", "remote-user"} {
		if !names[n] {
			t.Errorf("default identity header %q not in strip set", n)
		}
	}
	withCustom := identityHeaderNames(&HeadersConfig{Groups: "X_Team_List", AccessToken: "X-Upstream-Token"})
	for _, n := range []string{"x-team-list", "x-upstream-token", "x-forwarded-user"} {
		if !withCustom[n] {
			t.Errorf("header %q not in strip set", n)
		}
	}
	if withCustom[""] {
		t.Error("empty header name in strip set")
	}
}

func newReplRequest() (*http.Request, *caddy.Replacer) {
	repl := caddy.NewReplacer()
	r := httptest.NewRequest("GET", "http://app.example.com/", nil)
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	return r, repl
}

func testSession() *sessions.Session {
	return &sessions.Session{
		Subject:     "u1",
		Email:       "ann@example.com",
		Name:        "Ann Example",
		Groups:      []string{"admins", "ops"},
		Claims:      map[string][]string{"department": {"sales"}, "roles": {"a", "b"}},
		AccessToken: "at-secret",
	}
}

func TestExposePlaceholders(t *testing.T) {
	h := &Handler{IdentityConfig: IdentityConfig{Claims: []string{"department", "roles", "missing"}}}
	h.provisionIdentity()
	r, repl := newReplRequest()
	h.expose(r, testSession())
	want := map[string]string{
		"{http.auth.user.id}":         "u1",
		"{http.auth.user.email}":      "ann@example.com",
		"{http.auth.user.name}":       "Ann Example",
		"{http.auth.user.groups}":     "admins,ops",
		"{http.auth.user.department}": "sales",
		"{http.auth.user.roles}":      "a,b",
	}
	for in, w := range want {
		if got := repl.ReplaceAll(in, "<unset>"); got != w {
			t.Errorf("%s = %q; want %q", in, got, w)
		}
	}
	// A configured claim the session lacks is set, to the empty string.
	if v, ok := repl.Get("http.auth.user.missing"); !ok || v != "" {
		t.Errorf("http.auth.user.missing = %v, %v; want \"\", true", v, ok)
	}
	// Only configured claims become placeholders.
	h2 := &Handler{IdentityConfig: IdentityConfig{Claims: []string{"department"}}}
	h2.provisionIdentity()
	r2, repl2 := newReplRequest()
	h2.expose(r2, testSession())
	if v, ok := repl2.Get("http.auth.user.roles"); ok {
		t.Errorf("unconfigured claim placeholder set to %v", v)
	}
	// No headers are set without a headers config.
	if len(r.Header) != 0 || len(r2.Header) != 0 {
		t.Errorf("headers set without a headers config: %v %v", r.Header, r2.Header)
	}
}

func TestExposeHeaders(t *testing.T) {
	h := &Handler{
		IdentityConfig: IdentityConfig{Headers: &HeadersConfig{
			User: "X-Forwarded-User", Email: "X-Forwarded-Email", Name: "X-Forwarded-Name",
			Groups: "X-Forwarded-Groups", AccessToken: "X-Forwarded-Access-Token",
		}},
	}
	r, _ := newReplRequest()
	h.expose(r, testSession())
	want := map[string]string{
		"X-Forwarded-User":         "u1",
		"X-Forwarded-Email":        "ann@example.com",
		"X-Forwarded-Name":         "Ann Example",
		"X-Forwarded-Groups":       "admins,ops",
		"X-Forwarded-Access-Token": "at-secret",
	}
	for k, v := range want {
		if got := r.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("header %s = %q; want [%q]", k, got, v)
		}
	}
	if len(r.Header) != len(want) {
		t.Errorf("headers: %v; want exactly %d", r.Header, len(want))
	}
}

func TestExposeAccessTokenOnlyWhenConfigured(t *testing.T) {
	h := &Handler{IdentityConfig: IdentityConfig{Headers: &HeadersConfig{User: "X-Forwarded-User", Email: "X-Forwarded-Email", Groups: "X-Forwarded-Groups"}}}
	r, _ := newReplRequest()
	h.expose(r, testSession())
	for name, values := range r.Header {
		for _, v := range values {
			if strings.Contains(v, "at-secret") {
				t.Errorf("access token leaked in header %s", name)
			}
		}
	}
	if r.Header.Get("X-Forwarded-User") != "u1" {
		t.Errorf("X-Forwarded-User = %q; want u1", r.Header.Get("X-Forwarded-User"))
	}
	// A session without an access token (drop_tokens) sets no empty header.
	h.Headers.AccessToken = "X-Forwarded-Access-Token"
	s := testSession()
	s.AccessToken = ""
	r2, _ := newReplRequest()
	h.expose(r2, s)
	if _, ok := r2.Header["X-Forwarded-Access-Token"]; ok {
		t.Error("empty access token header set")
	}
}

// In the handler, forged headers are stripped before expose sets the real
// ones: a client value must never survive, even when the session has no
// value to put in its place.
func TestHeaderStripThenExpose(t *testing.T) {
	h := &Handler{IdentityConfig: IdentityConfig{Headers: &HeadersConfig{User: "X-Auth-Id", Email: "X-Auth-Email"}}}
	h.provisionIdentity()
	r, _ := newReplRequest()
	r.Header["x_auth_id"] = []string{"admin"}
	r.Header.Set("X-Auth-Id", "admin")
	r.Header.Set("X-Auth-Email", "boss@example.com")
	s := testSession()
	s.Email = ""
	h.stripIdentityHeaders(r)
	h.expose(r, s)
	if got := r.Header.Values("X-Auth-Id"); len(got) != 1 || got[0] != "u1" {
		t.Errorf("X-Auth-Id = %q; want [u1]", got)
	}
	if _, ok := r.Header["x_auth_id"]; ok {
		t.Error("forged x_auth_id survived")
	}
	if got := r.Header.Get("X-Auth-Email"); got != "" {
		t.Errorf("forged X-Auth-Email survived: %q", got)
	}
}

// The allocation-free normalisation of the request path agrees with the
// one the names to strip were made with, whatever the name.
func TestAppendNormalizedHeader(t *testing.T) {
	names := []string{"X-Forwarded-User", "x_forwarded.user", "X.FORWARDED_USER", "Remote-User", "", "-",
		"Accept", "X-İnjected-User", "X-Forwarded-Usér", strings.Repeat("X-Long", 40), "K\u212aelvin"}
	var buf [64]byte
	for _, n := range names {
		if got, want := string(appendNormalizedHeader(buf[:0], n)), normalizeHeader(n); got != want {
			t.Errorf("%q: %q, normalizeHeader says %q", n, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { appendNormalizedHeader(buf[:0], "X_Forwarded.User") }); n != 0 {
		t.Errorf("%v allocations for an ASCII name", n)
	}
}
