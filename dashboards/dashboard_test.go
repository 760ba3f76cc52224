// Package dashboards_test checks the Grafana dashboard of the plugin's
// metrics (oidc_session.json) against a real Caddy: every metric and label
// its queries use must exist in a scrape of Caddy's /metrics after real
// logins, refreshes, logouts and a failed login, and every query must run
// in a real Prometheus scraping that Caddy and show the traffic.
package dashboards_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/oidc-session/oidc_session/internal/testcaddy"
)

// targetLabels are added by Prometheus when it scrapes, so they are in
// no scrape: the dashboard may filter on them.
var targetLabels = []string{"job", "instance"}

// dashboard is the part of Grafana's dashboard model the test reads.
type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource map[string]any `json:"datasource"`
	GridPos    struct{ X, Y, W, H int }
	Targets    []struct {
		RefID        string         `json:"refId"`
		Expr         string         `json:"expr"`
		LegendFormat string         `json:"legendFormat"`
		Datasource   map[string]any `json:"datasource"`
	} `json:"targets"`
}

type variable struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Query any    `json:"query"`
}

// expression is one query of the dashboard, with where it is.
type expression struct {
	where, expr, legend string
	panel               panel
	refID               string
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile("oidc_session.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("oidc_session.json: %v", err)
	}
	return d
}

func (d dashboard) expressions() []expression {
	var out []expression
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, expression{where: p.Title + "/" + tg.RefID, expr: tg.Expr, legend: tg.LegendFormat, panel: p, refID: tg.RefID})
		}
	}
	return out
}

// labelValuesQuery splits Grafana's label_values(<selector>, <label>).
var labelValuesQuery = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

// variableQueries returns each query variable's selector and label.
func (d dashboard) variableQueries(t *testing.T) map[string][2]string {
	t.Helper()
	out := map[string][2]string{}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		s, _ := q["query"].(string)
		m := labelValuesQuery.FindStringSubmatch(s)
		if m == nil {
			t.Fatalf("variable %s: query %q is not label_values(<selector>, <label>)", v.Name, s)
		}
		out[v.Name] = [2]string{m[1], m[2]}
	}
	return out
}

// TestDashboardShape: a Prometheus data source variable behind every
// panel and query, rate() windows from $__rate_interval, distinct ids and
// refIds, panels inside Grafana's 24 columns, and legends that name only
// labels the query keeps.
func TestDashboardShape(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Error("the dashboard needs a uid and a title")
	}
	var dsVar bool
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus" {
			dsVar = true
		}
	}
	if !dsVar {
		t.Error("no Prometheus data source variable named datasource")
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside 24 columns", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource["uid"] != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: data source %v, %d queries", p.Title, p.Datasource, len(p.Targets))
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if refs[tg.RefID] || tg.Datasource["uid"] != "${datasource}" {
				t.Errorf("panel %q: refId %q repeated or query without the data source variable", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
		}
	}
	rangeWindow := regexp.MustCompile(`\[([^\]]*)\]`)
	legendLabel := regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)
	for _, e := range d.expressions() {
		for _, w := range rangeWindow.FindAllStringSubmatch(e.expr, -1) {
			if w[1] != "$__rate_interval" {
				t.Errorf("%s: window [%s]; use [$__rate_interval]", e.where, w[1])
			}
		}
		q, err := parse(e.expr)
		if err != nil {
			t.Errorf("%s: %v in %s", e.where, err, e.expr)
			continue
		}
		for _, l := range legendLabel.FindAllStringSubmatch(e.legend, -1) {
			if !slices.Contains(q.grouping, l[1]) {
				t.Errorf("%s: legend {{%s}} names a label the query does not keep (by %v)", e.where, l[1], q.grouping)
			}
		}
	}
}

// families parses a scrape.
func families(t *testing.T, scrape string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(scrape))
	if err != nil {
		t.Fatalf("parse the scrape: %v", err)
	}
	return fams
}

// labelsOf returns the label names (and values) a selector's metric has
// in the scrape: the family's, or for name_bucket, name_count and
// name_sum those of histogram name (with le for buckets). ok is false
// when the scrape has no such metric.
func labelsOf(fams map[string]*dto.MetricFamily, metric string) (map[string]map[string]bool, bool) {
	fam, ok := fams[metric]
	extra := ""
	if !ok {
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			base, cut := strings.CutSuffix(metric, suffix)
			if f := fams[base]; cut && f != nil && f.GetType() == dto.MetricType_HISTOGRAM {
				fam, ok = f, true
				if suffix == "_bucket" {
					extra = "le"
				}
			}
		}
	}
	if !ok {
		return nil, false
	}
	labels := map[string]map[string]bool{}
	if extra != "" {
		labels[extra] = map[string]bool{}
	}
	for _, m := range fam.GetMetric() {
		for _, lp := range m.GetLabel() {
			if labels[lp.GetName()] == nil {
				labels[lp.GetName()] = map[string]bool{}
			}
			labels[lp.GetName()][lp.GetValue()] = true
		}
	}
	return labels, true
}

// checkQuery fails the test for a metric or label of q that the scrape
// lacks; an exact (=) matcher's value must be in the scrape too.
func checkQuery(t *testing.T, fams map[string]*dto.MetricFamily, where string, q query) {
	t.Helper()
	kept := map[string]bool{}
	for _, l := range targetLabels {
		kept[l] = true
	}
	for _, s := range q.selectors {
		labels, ok := labelsOf(fams, s.metric)
		if !ok {
			t.Errorf("%s: metric %s is not in the scrape", where, s.metric)
			continue
		}
		for l := range labels {
			kept[l] = true
		}
		for _, m := range s.matchers {
			values, ok := labels[m.label]
			switch {
			case !ok && !slices.Contains(targetLabels, m.label):
				t.Errorf("%s: %s has no label %s in the scrape", where, s.metric, m.label)
			case ok && m.op == "=" && !values[m.value]:
				t.Errorf("%s: %s{%s=%q} matches nothing in the scrape", where, s.metric, m.label, m.value)
			}
		}
	}
	for _, l := range q.grouping {
		if !kept[l] {
			t.Errorf("%s: groups by %s, which none of its metrics has", where, l)
		}
	}
}

// traffic runs Caddy with the plugin and the memory store against
// mockoidc, and makes every counter move: a login, a refresh (access
// tokens live 2 s), a failed login (a callback with a forged state) and
// a sign-out.
func traffic(t *testing.T, c *testcaddy.Caddy, idp *testcaddy.MockIdP) {
	t.Helper()
	// The plugin's counters live as long as the process: count from here.
	refreshes := sample(t, c, "caddy_oidc_session_refreshes_total", nil)
	b := testcaddy.NewBrowser(t)
	b.LoginAs(idp, c.Base, "alice")
	if got := sample(t, c, "caddy_oidc_session_active_sessions", map[string]string{"store": "memory"}); got != 1 {
		t.Errorf("active_sessions{store=memory} after one login: %v", got)
	}
	deadline := time.Now().Add(15 * time.Second)
	for sample(t, c, "caddy_oidc_session_refreshes_total", nil) <= refreshes {
		if time.Now().After(deadline) {
			t.Fatal("no refresh within 15 s of 2 s access tokens")
		}
		if code, _ := b.Get(c.Base + "/"); code != 200 {
			t.Fatalf("the session ended while waiting for a refresh: %d", code)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, _ := testcaddy.NewBrowser(t).Get(c.Base + "/oauth2/callback?code=forged&state=forged"); code != 400 {
		t.Errorf("forged callback: %d, want 400", code)
	}
	if code, _ := b.Get(c.Base + "/oauth2/sign_out"); code != 302 {
		t.Errorf("sign_out: %d, want 302", code)
	}
}

// sample returns the value of the scraped series of metric with the given
// labels (a counter or gauge), or -1 when there is none.
func sample(t *testing.T, c *testcaddy.Caddy, metric string, labels map[string]string) float64 {
	t.Helper()
	fam := families(t, c.Scrape(t))[metric]
	for _, m := range fam.GetMetric() {
		match := true
		for k, v := range labels {
			if !slices.ContainsFunc(m.GetLabel(), func(lp *dto.LabelPair) bool { return lp.GetName() == k && lp.GetValue() == v }) {
				match = false
			}
		}
		if match {
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

func startPlugin(t *testing.T) (*testcaddy.Caddy, *testcaddy.MockIdP) {
	t.Helper()
	idp := testcaddy.StartMockIdP(t, 2*time.Second, false)
	c := testcaddy.Start(t, "", testcaddy.OIDCBlock(idp, "store memory")+"\trespond ok 200\n")
	return c, idp
}

// TestDashboardMatchesScrape: after real traffic, every metric, label and
// exact label value the dashboard's queries and variables use is in
// Caddy's /metrics, and every metric of the plugin there is on the
// dashboard.
func TestDashboardMatchesScrape(t *testing.T) {
	d := loadDashboard(t)
	c, idp := startPlugin(t)
	moving := map[string]map[string]string{
		"caddy_oidc_session_logins_total":         nil,
		"caddy_oidc_session_login_failures_total": {"reason": "state"},
		"caddy_oidc_session_logouts_total":        {"kind": "local", "provider": "default"},
	}
	before := map[string]float64{}
	for metric, labels := range moving {
		before[metric] = sample(t, c, metric, labels)
	}
	traffic(t, c, idp)
	fams := families(t, c.Scrape(t))
	for metric, labels := range moving {
		if got := sample(t, c, metric, labels); got <= before[metric] {
			t.Errorf("%s%v did not move: %v before, %v after", metric, labels, before[metric], got)
		}
	}

	used := map[string]bool{}
	for _, e := range d.expressions() {
		q, err := parse(e.expr)
		if err != nil {
			t.Fatalf("%s: %v", e.where, err)
		}
		checkQuery(t, fams, e.where, q)
		for _, s := range q.selectors {
			used[s.metric] = true
		}
	}
	for name, sl := range d.variableQueries(t) {
		q, err := parse(sl[0])
		if err != nil {
			t.Fatalf("variable %s: %v", name, err)
		}
		q.grouping = []string{sl[1]} // the label must exist like a by() label
		checkQuery(t, fams, "variable "+name, q)
	}
	for name, fam := range fams {
		if !strings.HasPrefix(name, "caddy_oidc_session_") {
			continue
		}
		series := []string{name}
		if fam.GetType() == dto.MetricType_HISTOGRAM {
			series = []string{name + "_bucket", name + "_count", name + "_sum"}
		}
		if !slices.ContainsFunc(series, func(s string) bool { return used[s] }) {
			t.Errorf("metric %s is on no panel", name)
		}
	}
}
