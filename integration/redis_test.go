package integration

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/internal/testcaddy"
	"github.com/oidc-session/oidc_session/internal/testenv"
	"github.com/oidc-session/oidc_session/internal/testredis"
)

// concurrentNavigations sends n requests at once, spread over the bases,
// with the browser's cookies, and returns their status codes.
func concurrentNavigations(t *testing.T, b *testcaddy.Browser, bases []string, n int) []int {
	t.Helper()
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req, _ := http.NewRequest("GET", bases[i%len(bases)]+"/", nil)
			req.Header.Set("Accept", "text/html")
			req.Header.Set("Sec-Fetch-Mode", "navigate")
			resp, err := b.Client.Do(req)
			if err != nil {
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}(i)
	}
	wg.Wait()
	return codes
}

func allOK(codes []int) bool {
	for _, c := range codes {
		if c != http.StatusOK {
			return false
		}
	}
	return true
}

// TestRotatingRefreshCookieStore: one instance, cookie store, an IdP that
// rotates refresh tokens and refuses reuse; 30 requests at token expiry.
func TestRotatingRefreshCookieStore(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 3*time.Second, false)
	idp.Rotate.Store(true)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	b := testcaddy.NewBrowser(t)
	b.Login(base + "/")
	time.Sleep(2200 * time.Millisecond)
	codes := concurrentNavigations(t, b, []string{base}, 30)
	if !allOK(codes) || idp.Reused.Load() != 0 || idp.Refreshes.Load() != 1 {
		t.Errorf("codes %v, %d reused refresh tokens, %d refreshes (want all 200, 0, 1)", codes, idp.Reused.Load(), idp.Refreshes.Load())
	}
	// Later requests, some still with the pre-refresh cookie, keep working.
	time.Sleep(2200 * time.Millisecond)
	if codes := concurrentNavigations(t, b, []string{base}, 10); !allOK(codes) || idp.Reused.Load() != 0 {
		t.Errorf("second round: %v, %d reused", codes, idp.Reused.Load())
	}
}

// TestRedisTwoInstances: two handler instances share sessions through a
// real Redis: log in at one, use the other, refresh at expiry with strict
// refresh token rotation from both at once, log out at the other, and
// ride out Redis going down.
func TestRedisTwoInstances(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{Args: []string{"--appendonly", "yes", "--appendfsync", "always"}})
	idp := testcaddy.StartMockIdP(t, 3*time.Second, false)
	idp.Rotate.Store(true)
	store := testcaddy.StoreBlock("redis", "url "+srv.URL(), "key_prefix e2e:", "dial_timeout 300ms")
	a, b := testenv.FreeAddr(t), testenv.FreeAddr(t)
	testcaddy.StartCaddySites(t, map[string]string{a: testcaddy.SiteConfig(idp, store), b: testcaddy.SiteConfig(idp, store)})
	baseA, baseB := "http://"+a, "http://"+b

	br := testcaddy.NewBrowser(t)
	if resp, body := br.Login(baseA + "/"); resp.StatusCode != 200 || !strings.Contains(body, "id=1234567890") {
		t.Fatalf("login at A: %d %s", resp.StatusCode, body)
	}
	value := br.Cookie(baseA, "_oauth2_proxy").Value
	if len(value) > 80 || !strings.HasPrefix(value, "_oauth2_proxy-") {
		t.Fatalf("cookie is not a ticket: %q", value)
	}
	rdb := srv.Client()
	// The session, its metadata, and the subject index.
	if keys := rdb.Keys(context.Background(), "e2e:*").Val(); len(keys) != 3 {
		t.Fatalf("Redis keys after login: %v", keys)
	}
	if resp, body := br.Navigate(baseB + "/"); resp.StatusCode != 200 || !strings.Contains(body, "id=1234567890") {
		t.Fatalf("session made at A used at B: %d %s", resp.StatusCode, body)
	}

	time.Sleep(2200 * time.Millisecond)
	codes := concurrentNavigations(t, br, []string{baseA, baseB}, 30)
	if !allOK(codes) || idp.Reused.Load() != 0 {
		t.Fatalf("at expiry across two instances: %v, %d refresh tokens reused", codes, idp.Reused.Load())
	}
	if n := idp.Refreshes.Load(); n != 1 {
		t.Errorf("%d refreshes for one session across two instances, want 1", n)
	}
	if v := br.Cookie(baseA, "_oauth2_proxy").Value; v != value {
		t.Errorf("refresh changed the ticket")
	}

	if code, body := health(t); code != 200 || !strings.Contains(body, `"store":"redis","reachable":true,"report":"subscribed to ended sessions on e2e:oidc_session:ended"`) {
		t.Errorf("health with Redis up: %d %s", code, body)
	}

	// Redis down: 503, the cookie stays; back: the session works again.
	srv.Stop()
	if code, body := health(t); code != http.StatusServiceUnavailable || !strings.Contains(body, `"reachable":false`) {
		t.Errorf("health with Redis down: %d %s", code, body)
	}
	resp, _ := br.Navigate(baseA + "/")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("Redis down: %d, want 503", resp.StatusCode)
	}
	if testcaddy.SetCookieNamed(resp, "_oauth2_proxy") != nil {
		t.Errorf("Redis down: the response touched the session cookie")
	}
	srv.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, _ = br.Navigate(baseB + "/")
		if resp.StatusCode == 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("after Redis came back: %d", resp.StatusCode)
	}

	// Logout at B ends the session everywhere: a copy of the cookie is dead.
	thief := testcaddy.NewBrowser(t)
	thief.SetCookie(baseA, "_oauth2_proxy", value)
	if resp, _ := thief.Navigate(baseA + "/"); resp.StatusCode != 200 {
		t.Fatalf("copied cookie before logout: %d", resp.StatusCode)
	}
	br.Navigate(baseB + "/oauth2/sign_out")
	if keys := rdb.Keys(context.Background(), "e2e:*").Val(); len(keys) != 0 {
		t.Errorf("Redis keys after sign_out (nothing may be left behind): %v", keys)
	}
	if resp, _ := thief.Navigate(baseA + "/"); resp.StatusCode != http.StatusFound {
		t.Errorf("copied cookie after logout at B: %d, want a new login", resp.StatusCode)
	}
	// A new login mints a new ticket (no fixation).
	br.Login(baseA + "/")
	if br.Cookie(baseA, "_oauth2_proxy").Value == value {
		t.Errorf("a new login reused the ticket")
	}
}

// TestRedisIdleAcrossInstances: a user who keeps a session alive at one
// instance is not logged out at another whose last copy of the session is
// older than the idle timeout.
func TestRedisIdleAcrossInstances(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	idp := testcaddy.StartMockIdP(t, 0, false)
	store := "idle_timeout 2s\n\t\t" + testcaddy.StoreBlock("redis", "url "+srv.URL())
	a, b := testenv.FreeAddr(t), testenv.FreeAddr(t)
	testcaddy.StartCaddySites(t, map[string]string{a: testcaddy.SiteConfig(idp, store), b: testcaddy.SiteConfig(idp, store)})
	baseA, baseB := "http://"+a, "http://"+b

	br := testcaddy.NewBrowser(t)
	if resp, _ := br.Login(baseA + "/"); resp.StatusCode != 200 {
		t.Fatalf("login at A: %d", resp.StatusCode)
	}
	if resp, _ := br.Navigate(baseB + "/"); resp.StatusCode != 200 {
		t.Fatalf("first visit at B: %d", resp.StatusCode)
	}
	// Active at A for longer than the idle timeout.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		if resp, _ := br.Navigate(baseA + "/"); resp.StatusCode != 200 {
			t.Fatalf("while active at A: %d", resp.StatusCode)
		}
	}
	if resp, _ := br.Navigate(baseB + "/"); resp.StatusCode != 200 {
		t.Errorf("back at B after being active at A: %d, want 200 (B judged a stale copy)", resp.StatusCode)
	}
	if resp, _ := br.Navigate(baseA + "/"); resp.StatusCode != 200 {
		t.Errorf("at A after the visit to B: %d, want 200", resp.StatusCode)
	}
	// Really idle: ended at both.
	time.Sleep(2200 * time.Millisecond)
	if resp, _ := br.Navigate(baseB + "/"); resp.StatusCode != http.StatusFound {
		t.Errorf("idle past the timeout, at B: %d, want a new login", resp.StatusCode)
	}
}

// health reads the admin API's readiness view of the running test Caddy.
func health(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.Get(testcaddy.Running().AdminURL + "/oidc_session/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRedisDownAtStartup: a config whose Redis is not running loads; a
// request with a session cookie gets the configured status and keeps its
// cookie, one without a cookie is sent to log in; when Redis starts, the
// login works.
func TestRedisDownAtStartup(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	srv.Stop() // its port stays reserved for Restart
	idp := testcaddy.StartMockIdP(t, 0, false)
	store := "unavailable_status 502\n\t\t" + testcaddy.StoreBlock("redis", "url "+srv.URL(), "dial_timeout 200ms")
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, store))
	b := testcaddy.NewBrowser(t)
	b.SetCookie(base, "_oauth2_proxy", "_oauth2_proxy-"+strings.Repeat("a", 32)+"."+strings.Repeat("A", 22))
	resp, _ := b.Navigate(base + "/")
	if resp.StatusCode != http.StatusBadGateway || testcaddy.SetCookieNamed(resp, "_oauth2_proxy") != nil {
		t.Fatalf("Redis down, with a cookie: %d (want the configured 502) %v", resp.StatusCode, resp.Header["Set-Cookie"])
	}
	if resp, _ := testcaddy.NewBrowser(t).Navigate(base + "/"); resp.StatusCode != http.StatusFound {
		t.Errorf("Redis down, no cookie: %d, want a login redirect", resp.StatusCode)
	}
	srv.Restart(t)
	if resp, body := testcaddy.NewBrowser(t).Login(base + "/"); resp.StatusCode != 200 {
		t.Errorf("login after Redis started: %d %s", resp.StatusCode, body)
	}
}
