package dashboards_test

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/internal/testenv"
)

// grafanaVars is what Grafana puts in the queries with the dashboard's
// defaults (All for job and instance) and a 1 s scrape interval;
// $__rate_interval is kept wide so that the traffic stays in the window.
var grafanaVars = strings.NewReplacer(`$__rate_interval`, `30s`, `$job`, `.*`, `$instance`, `.*`)

// prometheus is a running Prometheus, stopped at cleanup.
type prometheus struct {
	base string
	log  string
}

// startPrometheus runs Prometheus scraping target's /metrics every
// second as job "caddy".
func startPrometheus(t *testing.T, target string) *prometheus {
	t.Helper()
	bin := os.Getenv("OIDC_SESSION_PROMETHEUS")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("prometheus"); err != nil {
			testenv.Missing(t, "prometheus is not installed", testenv.InstallDeps)
		}
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	err := os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: caddy
    static_configs:
      - targets: [%q]
`, target)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	p := &prometheus{base: "http://" + addr, log: filepath.Join(dir, "prometheus.log")}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", testenv.Tail(p.log, 30))
		}
	})
	p.waitFor(t, "Prometheus to scrape Caddy", `up{job="caddy"}`, func(v float64) bool { return v == 1 })
	return p
}

// series is one series of a query's answer.
type series struct {
	labels map[string]string
	value  float64
}

// query runs an instant query, failing the test unless Prometheus accepts
// it.
func (p *prometheus) query(t *testing.T, expr string) []series {
	t.Helper()
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	p.get(t, "/api/v1/query?query="+url.QueryEscape(expr), &out)
	if out.Status != "success" || out.Data.ResultType != "vector" {
		t.Fatalf("Prometheus refused %s: %s %s", expr, out.Status, out.Error)
	}
	var samples []series
	for _, r := range out.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("%s: value %v", expr, r.Value)
		}
		samples = append(samples, series{r.Metric, v})
	}
	return samples
}

func (p *prometheus) get(t *testing.T, path string, into any) {
	t.Helper()
	resp, err := http.Get(p.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// waitFor polls expr until a series satisfies ok, for at most 30 s.
func (p *prometheus) waitFor(t *testing.T, what, expr string, ok func(float64) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.base + "/api/v1/query?query=" + url.QueryEscape(expr))
		if err == nil {
			var out struct {
				Data struct {
					Result []struct {
						Value [2]any `json:"value"`
					} `json:"result"`
				} `json:"data"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			for _, r := range out.Data.Result {
				s, _ := r.Value[1].(string)
				if v, err := strconv.ParseFloat(s, 64); err == nil && ok(v) {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 30 s for %s (%s)", what, expr)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestDashboardInPrometheus runs every query of the dashboard, as Grafana
// would with its defaults, in a real Prometheus that scrapes a Caddy
// carrying real traffic: Prometheus's parser accepts each, each returns
// series, and the panels show the traffic (logins, the forged callback,
// the refresh, the sign-out, store operations). The variables' label
// queries find this Caddy.
func TestDashboardInPrometheus(t *testing.T) {
	d := loadDashboard(t)
	c, idp := startPlugin(t)
	prom := startPrometheus(t, strings.TrimPrefix(c.AdminURL, "http://"))
	traffic(t, c, idp)
	// A sample before and one after the sign-out, the last of the traffic:
	// every rate() window then spans the whole traffic.
	prom.waitFor(t, "the sign-out in Prometheus", `increase(caddy_oidc_session_logouts_total{kind="local",provider="default"}[30s])`, func(v float64) bool { return v > 0 })

	results := map[string][]series{} // by panel title/refId
	for _, e := range d.expressions() {
		got := prom.query(t, grafanaVars.Replace(e.expr))
		if len(got) == 0 {
			t.Errorf("%s: no series for %s", e.where, e.expr)
		}
		results[e.where] = got
	}
	// The counters exist from the start, so their rates show the traffic.
	// A store's series start at its first operation, and Prometheus sees
	// no increase in the scrape that brings a new series: the store panels
	// are only checked for the memory store's series.
	for _, want := range []struct {
		where    string
		labels   map[string]string
		positive bool
	}{
		{"Logins/A", nil, true},
		{"Failed logins/A", nil, true},
		{"Logins and failures by reason/A", nil, true},
		{"Logins and failures by reason/B", map[string]string{"reason": "state"}, true},
		{"Refreshes and failures by reason/A", nil, true},
		{"Sessions ended by kind/A", map[string]string{"kind": "local"}, true},
		{"Store operations and mean latency/A", map[string]string{"store": "memory", "op": "load"}, false},
		{"Store latency p50 / p99/B", map[string]string{"store": "memory", "op": "load"}, false},
	} {
		found := slices.ContainsFunc(results[want.where], func(s series) bool {
			for k, v := range want.labels {
				if s.labels[k] != v {
					return false
				}
			}
			return !want.positive || s.value > 0 && !math.IsInf(s.value, 0)
		})
		if !found {
			t.Errorf("%s: no series %v (above 0: %v): %+v", want.where, want.labels, want.positive, results[want.where])
		}
	}
	if got := results["Active sessions per instance/A"]; len(got) != 1 || got[0].labels["store"] != "memory" || got[0].value != 0 {
		t.Errorf("active sessions per instance after the sign-out: %+v", got)
	}

	for name, sl := range d.variableQueries(t) {
		var out struct {
			Data []string `json:"data"`
		}
		prom.get(t, "/api/v1/label/"+sl[1]+"/values?match[]="+url.QueryEscape(grafanaVars.Replace(sl[0])), &out)
		wantValue := map[string]string{"job": "caddy", "instance": strings.TrimPrefix(c.AdminURL, "http://")}[sl[1]]
		if !slices.Contains(out.Data, wantValue) {
			t.Errorf("variable %s: label_values gives %v, want %q among them", name, out.Data, wantValue)
		}
	}
}
