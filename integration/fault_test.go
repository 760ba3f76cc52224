package integration

// Fault tests: Redis (standalone, Sentinel, Cluster) failing under load,
// the IdP down, slow or rotating its keys. Everything runs on loopback and
// every wait is bounded. The IdP failing a refresh with a 503 is covered by
// TestRefreshFailures, Redis down between requests by TestRedisTwoInstances.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
	"github.com/redis/go-redis/v9"

	"github.com/oidc-session/oidc_session/internal/testcaddy"
	"github.com/oidc-session/oidc_session/internal/testredis"
)

// loadTarget is one logged-in user for runLoad.
type loadTarget struct {
	base, sub, cookie string
}

// loadStats is what runLoad saw.
type loadStats struct {
	mu      sync.Mutex
	codes   map[int]int
	bad     []string // outcomes other than a 200 for the right user or a 503
	cleared int      // responses that dropped a session cookie
}

func (s *loadStats) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("codes %v, %d cleared cookies, %d bad outcomes", s.codes, s.cleared, len(s.bad))
}

// runLoad makes authenticated requests for the targets from workers
// goroutines until stop is closed, then returns once they have finished.
func runLoad(targets []loadTarget, workers int, stop <-chan struct{}) *loadStats {
	st := &loadStats{codes: map[int]int{}}
	tr := &http.Transport{MaxIdleConnsPerHost: workers}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				tg := targets[i%len(targets)]
				req, _ := http.NewRequest(http.MethodGet, tg.base+"/", nil)
				req.Header.Set("Accept", "application/json")
				req.Header.Set("Cookie", sessionCookie+"="+tg.cookie)
				resp, err := client.Do(req)
				st.mu.Lock()
				switch {
				case err != nil:
					st.bad = append(st.bad, err.Error())
				default:
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					st.codes[resp.StatusCode]++
					if clearsSession(resp) {
						st.cleared++
					}
					if resp.StatusCode == http.StatusOK && !strings.Contains(string(body), "id="+tg.sub+" ") ||
						resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
						st.bad = append(st.bad, fmt.Sprintf("%d for %s: %.80s", resp.StatusCode, tg.sub, body))
					}
				}
				st.mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}(w)
	}
	wg.Wait()
	tr.CloseIdleConnections()
	return st
}

// underLoad runs fault with load on the targets, from a second before it
// to a second after, and checks that requests only ever got a 200 for the
// right user or a 503, that no response dropped a session cookie, and that
// every session is valid within recover after the fault.
func underLoad(t *testing.T, targets []loadTarget, recover time.Duration, fault func()) {
	t.Helper()
	stop := make(chan struct{})
	done := make(chan *loadStats)
	go func() { done <- runLoad(targets, 4, stop) }()
	time.Sleep(time.Second)
	fault()
	time.Sleep(time.Second)
	close(stop)
	st := <-done
	t.Logf("under load: %v", st)
	st.mu.Lock()
	if len(st.bad) > 0 {
		t.Errorf("%d requests got something other than a 200 for the right user or a 503, e.g. %q", len(st.bad), st.bad[:min(5, len(st.bad))])
	}
	if st.cleared > 0 {
		t.Errorf("%d responses dropped a session cookie", st.cleared)
	}
	if st.codes[http.StatusOK] == 0 {
		t.Errorf("no request succeeded under load")
	}
	st.mu.Unlock()
	expectAllValid(t, targets, recover)
}

// expectAllValid waits (at most timeout) until every target's session
// answers 200 for its user.
func expectAllValid(t *testing.T, targets []loadTarget, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for _, tg := range targets {
		for {
			resp, body := withCookies(t, tg.base+"/", sessionCookie+"="+tg.cookie, "Accept: application/json")
			if resp.StatusCode == http.StatusOK && strings.Contains(body, "id="+tg.sub+" ") {
				break
			}
			if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
				t.Errorf("%s's session after the fault: %d %s", tg.sub, resp.StatusCode, body)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// loginUsers logs n users in at base and returns them as load targets.
func loginUsers(t *testing.T, idp *testcaddy.MockIdP, base string, n int) []loadTarget {
	t.Helper()
	var out []loadTarget
	for i := 0; i < n; i++ {
		sub := fmt.Sprintf("user%d", i)
		b := testcaddy.LoginAs(t, idp, base, sub)
		out = append(out, loadTarget{base: base, sub: sub, cookie: b.Cookie(base, sessionCookie).Value})
	}
	return out
}

// TestFaultRedisRestartUnderLoad: Redis (with an append-only file) is
// killed for a second while authenticated requests keep coming, and
// restarted: requests get 200 or 503, never another status or a cleared
// cookie, and every session is valid afterwards.
func TestFaultRedisRestartUnderLoad(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{Args: []string{"--appendonly", "yes", "--appendfsync", "always"}})
	idp := testcaddy.StartMockIdP(t, 0, false)
	store := testcaddy.StoreBlock("redis", "url "+srv.URL(), "dial_timeout 300ms", "read_timeout 500ms", "write_timeout 500ms")
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, store))
	targets := loginUsers(t, idp, base, 5)
	var down503 atomic.Int32
	underLoad(t, targets, 10*time.Second, func() {
		srv.Stop()
		time.Sleep(time.Second)
		if resp, _ := withCookies(t, base+"/", sessionCookie+"="+targets[0].cookie, "Accept: application/json"); resp.StatusCode == http.StatusServiceUnavailable {
			down503.Add(1)
		}
		srv.Restart(t)
	})
	if down503.Load() != 1 {
		t.Errorf("with Redis down a request did not get a 503")
	}
}

// TestFaultSentinelFailoverUnderLoad: a Sentinel failover while
// authenticated requests keep coming: 200 or 503 only, no cleared cookie,
// every session valid on the new master.
func TestFaultSentinelFailoverUnderLoad(t *testing.T) {
	sen := testredis.StartSentinel(t, testredis.SentinelOptions{})
	idp := testcaddy.StartMockIdP(t, 0, false)
	store := testcaddy.StoreBlock("redis", "sentinel_master "+sen.MasterName, "sentinel_urls "+strings.Join(sen.SentinelAddrs, " "),
		"dial_timeout 300ms", "read_timeout 500ms", "write_timeout 500ms")
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, store))
	targets := loginUsers(t, idp, base, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sen.Master.Client().Do(ctx, "WAIT", 1, 5000).Err(); err != nil {
		t.Fatalf("WAIT for the replica: %v", err)
	}
	oldMaster := sen.Master.Addr
	underLoad(t, targets, 15*time.Second, func() { sen.Failover(t) })
	if sen.Master.Addr == oldMaster {
		t.Errorf("no failover happened")
	}
}

// TestFaultClusterNodeRestartUnderLoad: in a Redis Cluster with a replica
// per master, the master holding the most sessions is killed while
// authenticated requests keep coming, its replica takes over, and the old
// master comes back (as a replica): 200 or 503 only, no cleared cookie,
// every session valid afterwards.
func TestFaultClusterNodeRestartUnderLoad(t *testing.T) {
	cl := testredis.StartCluster(t, testredis.ClusterOptions{ReplicasPerMaster: 1})
	idp := testcaddy.StartMockIdP(t, 0, false)
	store := testcaddy.StoreBlock("redis", "cluster_urls "+strings.Join(cl.Addrs, " "), "dial_timeout 300ms", "read_timeout 500ms", "write_timeout 500ms")
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, store))
	targets := loginUsers(t, idp, base, 8)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cc := cl.ClusterClient()
	var mu sync.Mutex
	most, victim := -1, ""
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		keys, err := c.Keys(ctx, "*").Result()
		if err != nil {
			return err
		}
		if err := c.Do(ctx, "WAIT", 1, 5000).Err(); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if len(keys) > most {
			most, victim = len(keys), c.Options().Addr
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	node := -1
	for i, a := range cl.Addrs {
		if a == victim {
			node = i
		}
	}
	if node < 0 {
		t.Fatalf("master %s not among %v", victim, cl.Addrs)
	}
	t.Logf("killing master %s, which holds %d keys", victim, most)
	underLoad(t, targets, 20*time.Second, func() {
		cl.Nodes[node].Stop()
		// Its replica is promoted after cluster-node-timeout (2 s).
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) && !promoted(ctx, cl, victim) {
			time.Sleep(200 * time.Millisecond)
		}
		cl.Nodes[node].Restart(t)
		cl.WaitOK(t)
	})
}

// promoted reports whether the cluster, seen from a live node, has marked
// the old master as failed and serves all slots again (its replica took
// over).
func promoted(ctx context.Context, cl *testredis.Cluster, old string) bool {
	for _, n := range cl.Nodes {
		if n.Addr == old || !n.Running() {
			continue
		}
		c := redis.NewClient(&redis.Options{Addr: n.Addr})
		nodes, err := c.ClusterNodes(ctx).Result()
		info, ierr := c.ClusterInfo(ctx).Result()
		_ = c.Close()
		if err != nil || ierr != nil || !strings.Contains(info, "cluster_state:ok") {
			return false
		}
		for _, line := range strings.Split(nodes, "\n") {
			f := strings.Fields(line)
			if len(f) >= 3 && strings.HasPrefix(f[1], old+"@") {
				return strings.Contains(f[2], "fail") && !strings.Contains(f[2], "fail?")
			}
		}
		return false
	}
	return false
}

// restartIdP stops the mock IdP and starts it again on the same address.
func restartIdP(t *testing.T, idp *testcaddy.MockIdP, addr string) {
	t.Helper()
	_ = idp.Shutdown()
	idp.Server = nil
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	if err := idp.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
}

// TestFaultIdPDownDuringLogin: the IdP goes away between the start of a
// login and its callback: the callback answers 503 at once (no session, no
// 5xx other than the configured one), and once the IdP is back a new login
// works. The login attempt itself is spent: its flow cookie is gone.
func TestFaultIdPDownDuringLogin(t *testing.T) {
	idp := testcaddy.StartMockIdP(t, 0, false)
	addr := strings.TrimPrefix(strings.TrimSuffix(idp.Issuer(), "/oidc"), "http://")
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	b := testcaddy.NewBrowser(t)
	resp, _ := b.Navigate(base + "/")
	cb := b.Authorize(resp.Header.Get("Location"))
	_ = idp.Shutdown()
	start := time.Now()
	resp, body := b.Navigate(cb)
	if resp.StatusCode != http.StatusServiceUnavailable || testcaddy.SetCookieNamed(resp, sessionCookie) != nil {
		t.Errorf("callback with the IdP down: %d %s %v, want 503 and no session", resp.StatusCode, body, resp.Header["Set-Cookie"])
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("callback with the IdP down took %v", d)
	}
	restartIdP(t, idp, addr)
	if resp, _ := b.Navigate(cb); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("the spent callback once the IdP is back: %d, want 400", resp.StatusCode)
	}
	if resp, body := b.Login(base + "/"); resp.StatusCode != http.StatusOK {
		t.Errorf("login once the IdP is back: %d %s", resp.StatusCode, body)
	}
}

// TestFaultIdPDownDuringSharedRefresh: with Redis (refresh under the
// store's lock), the IdP's process is gone when a token needs refreshing:
// the request is served with the current tokens and the cookie kept; when
// the IdP is back the next request refreshes.
func TestFaultIdPDownDuringSharedRefresh(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	idp := testcaddy.StartMockIdP(t, 3*time.Second, false)
	addr := strings.TrimPrefix(strings.TrimSuffix(idp.Issuer(), "/oidc"), "http://")
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, testcaddy.StoreBlock("redis", "url "+srv.URL())))
	b := testcaddy.LoginAs(t, idp, base, "alice")
	time.Sleep(2200 * time.Millisecond)
	_ = idp.Shutdown()
	resp, body := b.Do(http.MethodGet, base+"/", "Accept: application/json")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "id=alice ") || clearsSession(resp) {
		t.Fatalf("refresh with the IdP down: %d %s %v, want the page and the cookie kept", resp.StatusCode, body, resp.Header["Set-Cookie"])
	}
	restartIdP(t, idp, addr)
	// The per-instance cache of recent refresh results and the provider's
	// retry pause are short; within a few seconds the refresh happens.
	deadline := time.Now().Add(10 * time.Second)
	for idp.Refreshes.Load() == 0 && time.Now().Before(deadline) {
		expectUser(t, b, base, "alice", "while the IdP comes back")
		time.Sleep(300 * time.Millisecond)
	}
	if idp.Refreshes.Load() == 0 {
		t.Errorf("no refresh once the IdP was back")
	}
	expectUser(t, b, base, "alice", "after the refresh")
}

// keyRotation is mockoidc middleware that rotates the IdP's signing key:
// in phase 0 mockoidc's own key signs and is published; in phase 1 a new
// key signs and only it is published (the old one retired); in phase 2 the
// retired key signs again (a token made with a stolen old key).
type keyRotation struct {
	phase    atomic.Int32
	old, new *mockoidc.Keypair
	fetches  atomic.Int32
}

func (k *keyRotation) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, mockoidc.JWKSEndpoint) {
			k.fetches.Add(1)
			if k.phase.Load() > 0 {
				jwks, _ := k.new.JWKS()
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write(jwks)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// TestFaultIdPKeyRotation: the IdP rotates its signing key: a login with a
// token signed by the new key succeeds (go-oidc fetches the JWKS again for
// the unknown key id), sessions made before stay, and once the new key
// set has been fetched a token signed by the retired key is refused.
func TestFaultIdPKeyRotation(t *testing.T) {
	newKey, err := mockoidc.RandomKeypair(2048)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = newKey.KeyID()
	idp := testcaddy.NewMockIdP(t, 0, false)
	rot := &keyRotation{old: idp.Keypair, new: newKey}
	_, _ = rot.old.KeyID()
	for _, mw := range []func(http.Handler) http.Handler{
		rot.middleware,
		rewriteIDToken(func(raw string, c jwt.MapClaims) string {
			switch rot.phase.Load() {
			case 1:
				tok, _ := rot.new.SignJWT(c)
				return tok
			case 2:
				tok, _ := rot.old.SignJWT(c)
				return tok
			}
			return raw
		}),
	} {
		if err := idp.AddMiddleware(mw); err != nil {
			t.Fatal(err)
		}
	}
	testcaddy.StartIdP(t, idp)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	before := testcaddy.LoginAs(t, idp, base, "alice")
	if n := rot.fetches.Load(); n != 1 {
		t.Fatalf("%d JWKS fetches for the first login, want 1", n)
	}

	rot.phase.Store(1)
	testcaddy.LoginAs(t, idp, base, "bob")
	if n := rot.fetches.Load(); n != 2 {
		t.Errorf("%d JWKS fetches after the rotation, want 2 (one refetch for the new key id)", n)
	}
	expectUser(t, before, base, "alice", "a session made before the rotation")

	rot.phase.Store(2)
	b := testcaddy.NewBrowser(t)
	resp, _ := b.Navigate(base + "/")
	resp, body := b.Navigate(b.Authorize(resp.Header.Get("Location")))
	if resp.StatusCode != http.StatusBadRequest || testcaddy.SetCookieNamed(resp, sessionCookie) != nil {
		t.Errorf("token signed by the retired key: %d %s, want 400 and no session", resp.StatusCode, body)
	}
}

// TestFaultSlowIdP: the token endpoint takes longer than provider_timeout
// (1s): logins answer 503 within a bound, set no session, and leave no
// goroutine behind once the connections are gone.
func TestFaultSlowIdP(t *testing.T) {
	var slow atomic.Bool
	idp := testcaddy.NewMockIdP(t, 0, false)
	if err := idp.AddMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if slow.Load() && strings.HasSuffix(r.URL.Path, mockoidc.TokenEndpoint) {
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
				return
			}
			next.ServeHTTP(w, r)
		})
	}); err != nil {
		t.Fatal(err)
	}
	testcaddy.StartIdP(t, idp)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, "provider_timeout 1s"))
	testcaddy.LoginAs(t, idp, base, "warmup") // discovery, keys, connections

	var browsers []*testcaddy.Browser
	idle := func() int {
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		for _, b := range browsers {
			b.Client.CloseIdleConnections()
		}
		time.Sleep(300 * time.Millisecond)
		runtime.GC()
		return runtime.NumGoroutine()
	}
	before := idle()
	slow.Store(true)
	var wg sync.WaitGroup
	type outcome struct {
		code    int
		d       time.Duration
		session bool
	}
	results := make(chan outcome, 5)
	var cbs []string
	for i := 0; i < 5; i++ {
		b := testcaddy.NewBrowser(t)
		resp, _ := b.Navigate(base + "/")
		cbs = append(cbs, b.Authorize(resp.Header.Get("Location")))
		browsers = append(browsers, b)
	}
	for i := range cbs {
		wg.Add(1)
		go func(b *testcaddy.Browser, cb string) {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, cb, nil)
			req.Header.Set("Accept", "text/html")
			start := time.Now()
			resp, err := b.Client.Do(req)
			if err != nil {
				results <- outcome{code: -1, d: time.Since(start)}
				return
			}
			resp.Body.Close()
			c := testcaddy.SetCookieNamed(resp, sessionCookie)
			results <- outcome{code: resp.StatusCode, d: time.Since(start), session: c != nil && c.MaxAge > 0}
		}(browsers[i], cbs[i])
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r.code != http.StatusServiceUnavailable || r.session || r.d > 3*time.Second {
			t.Errorf("callback with a slow token endpoint: %d after %v (session %v), want 503 within 3s", r.code, r.d, r.session)
		}
	}
	slow.Store(false)

	deadline := time.Now().Add(10 * time.Second)
	after := idle()
	for after > before+5 && time.Now().Before(deadline) {
		after = idle()
	}
	t.Logf("goroutines: %d before, %d after the slow logins", before, after)
	if after > before+5 {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d before, %d after the slow logins\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
	if resp, body := testcaddy.NewBrowser(t).Login(base + "/"); resp.StatusCode != http.StatusOK {
		t.Errorf("login once the IdP is fast again: %d %s", resp.StatusCode, body)
	}
}
