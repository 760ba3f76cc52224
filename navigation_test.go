package oidcsession

import (
	"net/http/httptest"
	"testing"
)

func TestNavigation(t *testing.T) {
	const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	cases := []struct {
		name    string
		method  string
		headers map[string]string
		want    bool
	}{
		{"GET navigate", "GET", map[string]string{"Sec-Fetch-Mode": "navigate", "Accept": browserAccept}, true},
		{"GET navigate without Accept", "GET", map[string]string{"Sec-Fetch-Mode": "navigate"}, true},
		{"HEAD navigate", "HEAD", map[string]string{"Sec-Fetch-Mode": "navigate"}, true},
		{"fetch cors with html Accept", "GET", map[string]string{"Sec-Fetch-Mode": "cors", "Accept": browserAccept}, false},
		{"fetch no-cors with html Accept", "GET", map[string]string{"Sec-Fetch-Mode": "no-cors", "Accept": "text/html"}, false},
		{"fetch same-origin", "GET", map[string]string{"Sec-Fetch-Mode": "same-origin", "Accept": "text/html"}, false},
		{"old browser html Accept", "GET", map[string]string{"Accept": browserAccept}, true},
		{"old browser xhtml Accept", "GET", map[string]string{"Accept": "application/xhtml+xml"}, true},
		{"json Accept", "GET", map[string]string{"Accept": "application/json"}, false},
		{"curl Accept", "GET", map[string]string{"Accept": "*/*"}, false},
		{"no Accept at all", "GET", nil, false},
		{"POST navigate", "POST", map[string]string{"Sec-Fetch-Mode": "navigate", "Accept": browserAccept}, false},
		{"POST html Accept", "POST", map[string]string{"Accept": browserAccept}, false},
		{"PUT navigate", "PUT", map[string]string{"Sec-Fetch-Mode": "navigate"}, false},
		{"XHR with html Accept", "GET", map[string]string{"X-Requested-With": "XMLHttpRequest", "Accept": browserAccept}, false},
		{"XHR with navigate", "GET", map[string]string{"X-Requested-With": "XMLHttpRequest", "Sec-Fetch-Mode": "navigate"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "http://app.example.com/page", nil)
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			if got := isNavigation(r); got != tc.want {
				t.Fatalf("isNavigation(%s %v) = %v; want %v", tc.method, tc.headers, got, tc.want)
			}
		})
	}
}
