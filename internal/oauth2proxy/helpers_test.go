package oauth2proxy

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// requestWith is a request carrying cookies.
func requestWith(cookies ...*http.Cookie) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, "http://site.test/", nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	return req
}

// cookieNames lists the names of cookies.
func cookieNames(cookies []*http.Cookie) []string {
	out := make([]string, len(cookies))
	for i, c := range cookies {
		out[i] = c.Name
	}
	return out
}

// mustRead reads with r and fails the test on an error.
func mustRead(t *testing.T, r *Reader, req *http.Request) *Session {
	t.Helper()
	s, err := r.Read(context.Background(), req)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return s
}

// wantErr reads with r and checks the error wraps want.
func wantErr(t *testing.T, r *Reader, req *http.Request, want error) error {
	t.Helper()
	s, err := r.Read(context.Background(), req)
	if !errors.Is(err, want) {
		t.Fatalf("Read: err = %v, session %v; want %v", err, s != nil, want)
	}
	if s != nil {
		t.Fatal("Read returned a session with its error")
	}
	return err
}

// tamper returns value with the byte at i changed to another character of
// the same alphabet.
func tamper(value string, i int) string {
	c := value[i]
	repl := byte('A')
	if c == 'A' {
		repl = 'B'
	}
	return value[:i] + string(repl) + value[i+1:]
}

// fields splits a signed value into payload, time and signature.
func fields(t *testing.T, value string) (payload, ts, sig string) {
	t.Helper()
	parts := strings.Split(value, "|")
	if len(parts) != 3 {
		t.Fatalf("signed value has %d fields", len(parts))
	}
	return parts[0], parts[1], parts[2]
}
