package bearer

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
)

func TestMetadata(t *testing.T) {
	idp := newTestIdP(t)
	extra := newTestIdP(t)
	cases := []struct {
		name     string
		cfg      Config
		path     string
		tls      bool
		resource string // "" when the path is not this resource's metadata
		dpop     []string
		required bool
	}{
		{"origin", Config{}, MetadataPath, true, "https://api.test", algsParam, false},
		{"plain http", Config{}, MetadataPath, false, "http://api.test", algsParam, false},
		{"path resource", Config{Resource: "/api"}, MetadataPath + "/api", true, "https://api.test/api", algsParam, false},
		{"path resource, root metadata", Config{Resource: "/api"}, MetadataPath, true, "", nil, false},
		{"root resource, suffixed request", Config{}, MetadataPath + "/other", true, "", nil, false},
		{"absolute resource", Config{Resource: "https://api.example.com/v1/"}, MetadataPath + "/v1", true, "https://api.example.com/v1/", algsParam, false},
		{"dpop off", Config{DPoP: DPoPOff}, MetadataPath, true, "https://api.test", nil, false},
		{"dpop required", Config{DPoP: DPoPRequired}, MetadataPath, true, "https://api.test", algsParam, true},
		{"elsewhere", Config{}, "/things", true, "", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Issuers = []string{extra.issuer}
			tc.cfg.ScopesRequired = []string{"read"}
			v := newTestVerifier(t, tc.cfg, idp)
			r := httptest.NewRequest(http.MethodGet, "http://api.test"+tc.path, nil)
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			w := httptest.NewRecorder()
			served := v.ServeMetadata(w, r)
			if tc.resource == "" {
				if served || w.Code != http.StatusOK || w.Body.Len() != 0 {
					t.Fatalf("served %v: %d %s", served, w.Code, w.Body)
				}
				return
			}
			if !served || w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("served %v: %d %v", served, w.Code, w.Header())
			}
			var got map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			want := map[string]any{
				"resource":                 tc.resource,
				"authorization_servers":    []any{idp.issuer, extra.issuer},
				"scopes_supported":         []any{"read"},
				"bearer_methods_supported": []any{"header"},
			}
			if tc.dpop != nil {
				algs := make([]any, len(tc.dpop))
				for i, a := range tc.dpop {
					algs[i] = a
				}
				want["dpop_signing_alg_values_supported"] = algs
			}
			if tc.required {
				want["dpop_bound_access_tokens_required"] = true
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("document\n got %v\nwant %v", got, want)
			}
		})
	}
	v := newTestVerifier(t, Config{}, idp)
	w := httptest.NewRecorder()
	if !v.ServeMetadata(w, httptest.NewRequest(http.MethodPost, "http://api.test"+MetadataPath, nil)) || w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", w.Code)
	}
}

func TestChallenge(t *testing.T) {
	idp := newTestIdP(t)
	const meta = `resource_metadata="https://api.test/.well-known/oauth-protected-resource/api"`
	cases := map[string][]string{
		DPoPOff:      {`Bearer ` + meta},
		DPoPAllowed:  {`Bearer ` + meta, `DPoP algs="ES256 ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512 EdDSA"`},
		DPoPRequired: {`DPoP algs="ES256 ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512 EdDSA", ` + meta},
	}
	for mode, want := range cases {
		v := newTestVerifier(t, Config{DPoP: mode, Resource: "/api"}, idp)
		r := httptest.NewRequest(http.MethodGet, "https://api.test/api/things", nil)
		e := v.Challenge(r)
		if e.Status != http.StatusUnauthorized || e.Code != "" || !reflect.DeepEqual(e.Challenges, want) {
			t.Errorf("%s: %d %q %q, want %q", mode, e.Status, e.Code, e.Challenges, want)
		}
		w := httptest.NewRecorder()
		e.WriteResponse(w)
		if w.Code != http.StatusUnauthorized || !reflect.DeepEqual(w.Header().Values("WWW-Authenticate"), want) || w.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s: response %d %v", mode, w.Code, w.Header())
		}
	}
}

// TestWriteResponse: the refusal's challenge, status and JSON body.
func TestWriteResponse(t *testing.T) {
	idp := newTestIdP(t)
	v := newTestVerifier(t, Config{}, idp)
	_, err := v.Verify(t.Context(), apiRequest("Bearer not.a.jwt"))
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("err = %v", err)
	}
	w := httptest.NewRecorder()
	e.WriteResponse(w)
	var body map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusUnauthorized || body["error"] != CodeInvalidToken || body["error_description"] != e.Description ||
		w.Header().Get("WWW-Authenticate") != e.Challenges[0] {
		t.Errorf("%d %v %v", w.Code, w.Header(), body)
	}
}
