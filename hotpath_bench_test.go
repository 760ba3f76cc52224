package oidcsession

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oidc-session/oidc_session/sessions/storetest"
)

// BenchmarkHotPath measures what every authenticated request costs: read
// and verify the session, authorize, hand the identity on, strip the
// plugin's cookies and identity headers.
func BenchmarkHotPath(b *testing.B) {
	b.Run("cookie", func(b *testing.B) { benchHotPath(b, nil, nil) })
	b.Run("memory", func(b *testing.B) { benchHotPath(b, json.RawMessage(`{"backend":"memory"}`), nil) })
	// During an oauth2-proxy migration window, for users already on a
	// session of ours: only the proxy's cookies are stripped.
	b.Run("cookie, migrating", func(b *testing.B) {
		benchHotPath(b, nil, &MigrateOAuth2Proxy{CookieSecrets: []string{testSecret}, Until: "2999-01-01"})
	})
}

func benchHotPath(b *testing.B, store json.RawMessage, migrate *MigrateOAuth2Proxy) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	h := &Handler{
		ProviderConfig: ProviderConfig{Issuer: "http://127.0.0.1:1/idp", ClientID: "app"},
		IdentityConfig: IdentityConfig{Headers: &HeadersConfig{User: "X-Forwarded-User", Email: "X-Forwarded-Email", Groups: "X-Forwarded-Groups"}},
		Cookie:         CookieConfig{Secrets: []string{testSecret}},
		StoreRaw:       store,
		Migrate:        migrate,
	}
	if err := h.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	defer h.Cleanup()
	sess := storetest.DexSession(true)
	now := time.Now()
	sess.CreatedAt, sess.LastSeen, sess.ExpiresAt = now, now, now.Add(time.Hour)
	sess.TokenIssued, sess.TokenExpiry = now, now.Add(time.Hour)
	value, err := h.store.Save(context.Background(), "", sess)
	if err != nil {
		b.Fatal(err)
	}
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	req := httptest.NewRequest("GET", "http://app.example.com/page", nil)
	req.Header.Set("Cookie", "_oauth2_proxy="+value+"; theme=dark")
	req.Header.Set("Accept", "text/html")
	req.Header.Set("User-Agent", "bench")
	w := httptest.NewRecorder()
	serve := func(r *http.Request) error { return h.ServeHTTP(w, r, next) }
	b.Run("plugin", func(b *testing.B) { benchRequests(b, req, serve) })
	// What the loop itself costs (a fresh request with a replacer, as Caddy
	// makes for every request): subtract it from "plugin".
	b.Run("baseline", func(b *testing.B) { benchRequests(b, req, func(*http.Request) error { return nil }) })
}

func benchRequests(b *testing.B, req *http.Request, serve func(*http.Request) error) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r := req.Clone(req.Context())
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
		if err := serve(r); err != nil {
			b.Fatal(err)
		}
	}
}
