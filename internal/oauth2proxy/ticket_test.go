package oauth2proxy

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestParseTicket(t *testing.T) {
	tk := newTicket(DefaultCookieName)
	for what, payload := range map[string][]byte{"v2": tk.v2(), "older": tk.legacy()} {
		got, ok, err := parseTicket(payload)
		if !ok || err != nil || got.key != tk.key || !bytes.Equal(got.secret, tk.secret) {
			t.Errorf("%s form: %+v ok=%v %v", what, got, ok, err)
		}
	}
	// A cookie name with dots and dashes (oauth2-proxy allows them).
	dotted := newTicket("my-app.proxy")
	if got, ok, err := parseTicket(dotted.v2()); !ok || err != nil || got.key != dotted.key {
		t.Errorf("dotted name, v2: %+v ok=%v %v", got, ok, err)
	}

	b64 := base64.RawURLEncoding.EncodeToString
	notTickets := map[string][]byte{
		"binary":  {0x00, 0x9f, '.', 'a'},
		"no dot":  []byte("just-text"),
		"4 parts": []byte("a.b.c.d"),
	}
	for what, p := range notTickets {
		if _, ok, err := parseTicket(p); ok || err != nil {
			t.Errorf("%s: taken for a ticket (ok=%v, %v)", what, ok, err)
		}
	}
	bad := map[string][]byte{
		"v3":                   []byte("v3." + b64([]byte(tk.key)) + "." + b64(tk.secret)),
		"v2 key not base64":    []byte("v2.!!." + b64(tk.secret)),
		"key without id":       []byte(DefaultCookieName + "." + b64(tk.secret)),
		"id too short":         []byte(tk.key[:len(tk.key)-1] + "." + b64(tk.secret)),
		"id upper hex":         []byte(strings.ToUpper(tk.key) + "." + b64(tk.secret)),
		"id not hex":           []byte(tk.key[:len(tk.key)-1] + "g." + b64(tk.secret)),
		"empty name":           []byte(tk.key[len(DefaultCookieName):] + "." + b64(tk.secret)),
		"secret not base64":    []byte(tk.key + ".!!"),
		"secret of 15 bytes":   []byte(tk.key + "." + b64(tk.secret[:15])),
		"secret empty":         []byte(tk.key + "."),
		"v2 secret of 8 bytes": []byte("v2." + b64([]byte(tk.key)) + "." + b64(tk.secret[:8])),
		"v2 key of a ticket":   []byte("v2." + b64([]byte("x")) + "." + b64(tk.secret)),
		"name too long":        []byte(strings.Repeat("n", 257) + tk.key[len(DefaultCookieName):] + "." + b64(tk.secret)),
	}
	for what, p := range bad {
		if _, ok, err := parseTicket(p); !ok || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ok=%v %v; want a malformed ticket", what, ok, err)
		}
	}
}
