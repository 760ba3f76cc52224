package oidcsession

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/oidc-session/oidc_session/sessions/storetest"
)

// Helpers of scripts/bench.sh's rows with N distinct sessions; they run
// only when it sets their environment.

// TestMintScaleSessions mints OIDC_SESSION_MINT_N sessions through the
// store of the one oidc_session handler of the Caddyfile
// OIDC_SESSION_MINT_CADDYFILE, as logins would, and writes their Cookie
// headers (name=value), one a line, to OIDC_SESSION_MINT_OUT. Each is a
// Dex session of its own subject whose tokens need no refresh for a day.
// The memory store writes them to its state_file when the handler is
// cleaned up, for the Caddy started next to load.
func TestMintScaleSessions(t *testing.T) {
	file := os.Getenv("OIDC_SESSION_MINT_CADDYFILE")
	if file == "" {
		t.Skip("set by scripts/bench.sh")
	}
	n, err := strconv.Atoi(os.Getenv("OIDC_SESSION_MINT_N"))
	if err != nil || n < 1 {
		t.Fatalf("OIDC_SESSION_MINT_N: %v", err)
	}
	adapted, err := adaptCaddyfile(t, file)
	if err != nil {
		t.Fatal(err)
	}
	hs := oidcHandlers(t, adapted)
	if len(hs) != 1 {
		t.Fatalf("%d oidc_session handlers in %s, want 1", len(hs), file)
	}
	raw, _ := json.Marshal(hs[0])
	h := &Handler{}
	if err := json.Unmarshal(raw, h); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(os.Getenv("OIDC_SESSION_MINT_OUT"))
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(out)
	now := time.Now()
	for i := range n {
		s := storetest.DexSession(true)
		s.Subject = fmt.Sprintf("bench-user-%07d", i)
		s.TokenIssued, s.TokenExpiry = now, now.Add(24*time.Hour)
		s.CreatedAt, s.LastSeen, s.ExpiresAt = now, now, now.Add(24*time.Hour)
		s.Issuer = h.Issuer
		v, err := h.store.Save(ctx, "", s)
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		fmt.Fprintf(w, "%s=%s\n", h.Cookie.Name, v)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	cancel() // the store's Cleanup: the memory store saves its state file
}

// TestCheckScaleSessions sends every Cookie header of the file
// OIDC_SESSION_CHECK_COOKIES once to OIDC_SESSION_CHECK_URL and fails
// unless each is answered 200: every minted session is served.
func TestCheckScaleSessions(t *testing.T) {
	url := os.Getenv("OIDC_SESSION_CHECK_URL")
	if url == "" {
		t.Skip("set by scripts/bench.sh")
	}
	f, err := os.Open(os.Getenv("OIDC_SESSION_CHECK_COOKIES"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := make(chan string)
	var bad, total atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range lines {
				req, _ := http.NewRequest("GET", url, nil)
				req.Header.Set("Cookie", c)
				resp, err := client.Do(req)
				total.Add(1)
				if err != nil || resp.StatusCode != http.StatusOK {
					if bad.Add(1) <= 3 {
						t.Errorf("session not served: %v %v", err, resp)
					}
				}
				if resp != nil {
					resp.Body.Close()
				}
			}
		}()
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		lines <- sc.Text()
	}
	close(lines)
	wg.Wait()
	if bad.Load() > 0 {
		t.Fatalf("%d of %d sessions not served", bad.Load(), total.Load())
	}
	t.Logf("all %d sessions served", total.Load())
}
