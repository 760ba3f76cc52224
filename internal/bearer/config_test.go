package bearer

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// parseBlock reads `bearer { ... }` as the handler would hand it over: the
// dispenser on the bearer token.
func parseBlock(t *testing.T, input string) (*Config, error) {
	t.Helper()
	d := caddyfile.NewTestDispenser(input)
	d.Next()
	var c Config
	err := c.UnmarshalCaddyfile(d)
	return &c, err
}

func TestUnmarshalCaddyfile(t *testing.T) {
	c, err := parseBlock(t, `bearer {
		audiences        https://api.example.com api://default
		issuers          https://other.example.com https://third.example.com/realms/x
		scopes_required  read write
		introspection
		dpop             required
		at_jwt_issuers   https://other.example.com
		resource         /api
	}`)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Audiences:      []string{"https://api.example.com", "api://default"},
		Issuers:        []string{"https://other.example.com", "https://third.example.com/realms/x"},
		ScopesRequired: []string{"read", "write"},
		Introspection:  true,
		DPoP:           DPoPRequired,
		ATJWTIssuers:   []string{"https://other.example.com"},
		Resource:       "/api",
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v\nwant %+v", c, want)
	}
	// The JSON the root embeds.
	b, _ := json.Marshal(c)
	if got := string(b); got != `{"audiences":["https://api.example.com","api://default"],"issuers":["https://other.example.com","https://third.example.com/realms/x"],"scopes_required":["read","write"],"introspection":true,"dpop":"required","at_jwt_issuers":["https://other.example.com"],"resource":"/api"}` {
		t.Errorf("JSON %s", got)
	}
	minimal, err := parseBlock(t, "bearer {\n audiences a\n}")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(minimal); string(b) != `{"audiences":["a"]}` {
		t.Errorf("minimal JSON %s", b)
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	cases := map[string]string{
		"bearer":                                           "audiences is required",
		"bearer {\n}":                                      "audiences is required",
		"bearer x {\n audiences a\n}":                      "wrong argument count",
		"bearer {\n audiences\n}":                          "audiences needs at least one value",
		"bearer {\n audiences a\n audience b\n}":           `unknown bearer option "audience"`,
		"bearer {\n audiences a\n dpop maybe\n}":           `dpop must be off, allowed or required, not "maybe"`,
		"bearer {\n audiences a\n dpop\n}":                 "dpop needs a value",
		"bearer {\n audiences a\n introspection yes\n}":    "introspection takes no value",
		"bearer {\n audiences a\n issuers not-a-url\n}":    `issuers: "not-a-url" must be an absolute http(s) issuer URL`,
		"bearer {\n audiences a\n issuers ftp://x\n}":      "must be an absolute http(s) issuer URL",
		"bearer {\n audiences a\n at_jwt_issuers /x\n}":    "at_jwt_issuers",
		"bearer {\n audiences a\n resource api\n}":         "resource",
		"bearer {\n audiences a\n resource /a?b\n}":        "query or fragment",
		"bearer {\n audiences a\n resource //evil\n}":      "single /",
		"bearer {\n audiences a\n scopes_required a\"b\n}": "is not a scope",
	}
	for input, want := range cases {
		_, err := parseBlock(t, input)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", input, err, want)
		}
	}
}

// TestValidatePlaceholders: values with placeholders are checked only
// when the verifier resolves them.
func TestValidatePlaceholders(t *testing.T) {
	c := Config{Audiences: []string{"{env.API_AUD}"}, Issuers: []string{"{env.OTHER_ISSUER}"}, Resource: "{env.RESOURCE}"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
