package oidcsession

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const metricPrefix = "caddy_oidc_session_"

// gatheredNames returns the metric family names reg exposes.
func gatheredNames(t *testing.T, reg prometheus.Gatherer) map[string]bool {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	return names
}

// restoreActive puts the active-sessions function back to none after a test.
func restoreActive(t *testing.T) {
	t.Cleanup(func() { activeSessions.setFunc(nil) })
}

func TestMetricsRegisterAcrossReloads(t *testing.T) {
	restoreActive(t)
	active := func(context.Context) map[string]int { return map[string]int{"redis": 3} }
	observeStore("cookie", storeOpLoad, time.Now()) // histogram children appear once used

	// Two configs, as Caddy makes on a reload: a new pedantic registry each.
	first := prometheus.NewPedanticRegistry()
	second := prometheus.NewPedanticRegistry()
	if err := registerMetrics(first, active); err != nil {
		t.Fatalf("first registry: %v", err)
	}
	if err := registerMetrics(second, active); err != nil {
		t.Fatalf("second registry: %v", err)
	}
	// Several handlers of one config register into the same registry.
	if err := registerMetrics(second, active); err != nil {
		t.Fatalf("registering twice into one registry: %v", err)
	}

	want := []string{
		"logins_total", "login_failures_total",
		"refreshes_total", "refresh_failures_total",
		"logouts_total", "store_duration_seconds", "active_sessions",
	}
	for i, reg := range []*prometheus.Registry{first, second} {
		names := gatheredNames(t, reg)
		for _, n := range want {
			if !names[metricPrefix+n] {
				t.Errorf("registry %d: %s%s not exposed (got %v)", i, metricPrefix, n, names)
			}
		}
	}

	// Counts carry over: both registries see the same counters.
	before := 0.0
	for _, m := range collectMetrics(t, loginsTotal) {
		before += m.GetCounter().GetValue()
	}
	metricLogin(&idp{counters: providerMetrics(defaultProviderName)})
	for i, reg := range []*prometheus.Registry{first, second} {
		if got := gatheredCounter(t, reg, metricPrefix+"logins_total"); got != before+1 {
			t.Errorf("registry %d: logins_total %v, want %v", i, got, before+1)
		}
	}
}

// gatheredCounter returns the value of a counter in reg, summed over its
// series.
func gatheredCounter(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			sum := 0.0
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("%s not gathered", name)
	return 0
}

// collectMetrics runs c's Collect, as a scrape does, and returns what it
// sent.
func collectMetrics(t *testing.T, c prometheus.Collector) []*dto.Metric {
	t.Helper()
	ch := make(chan prometheus.Metric)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	var out []*dto.Metric
	for m := range ch {
		pb := new(dto.Metric)
		if err := m.Write(pb); err != nil {
			t.Fatalf("writing metric: %v", err)
		}
		out = append(out, pb)
	}
	return out
}

func collectCount(t *testing.T, c prometheus.Collector) int {
	t.Helper()
	return len(collectMetrics(t, c))
}

// metricValue returns the value of the one counter or gauge c collects.
func metricValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ms := collectMetrics(t, c)
	if len(ms) != 1 {
		t.Fatalf("collected %d metrics, want 1", len(ms))
	}
	switch {
	case ms[0].Counter != nil:
		return ms[0].GetCounter().GetValue()
	case ms[0].Gauge != nil:
		return ms[0].GetGauge().GetValue()
	}
	t.Fatalf("not a counter or gauge: %v", ms[0])
	return 0
}

func labelValue(labels []*dto.LabelPair, name string) string {
	for _, l := range labels {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestMetricsRegisterConflict(t *testing.T) {
	restoreActive(t)
	reg := prometheus.NewRegistry()
	// Someone else's collector under our name is a real conflict.
	reg.MustRegister(prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "logins_total", Help: "Logins completed: a new session was started, by identity provider.",
	}, []string{"provider"}))
	err := registerMetrics(reg, nil)
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Fatalf("want AlreadyRegisteredError for a foreign collector, got %v", err)
	}
}

func TestMetricsRegisterNilRegistry(t *testing.T) {
	restoreActive(t)
	if err := registerMetrics(nil, nil); err != nil {
		t.Fatal(err)
	}
}

func TestMetricHelpersCount(t *testing.T) {
	check := func(name string, c prometheus.Collector, f func()) {
		t.Helper()
		before := metricValue(t, c)
		f()
		if got := metricValue(t, c); got != before+1 {
			t.Errorf("%s: %v, want %v", name, got, before+1)
		}
	}
	def, corp := &idp{counters: providerMetrics(defaultProviderName)}, &idp{counters: providerMetrics("corp")}
	check("logins", loginsTotal.WithLabelValues(defaultProviderName), func() { metricLogin(def) })
	check("refreshes", refreshesTotal.WithLabelValues(defaultProviderName), func() { metricRefresh(def) })
	check("logins at corp", loginsTotal.WithLabelValues("corp"), func() { metricLogin(corp) })
	for _, r := range []string{loginFailureState, loginFailureExchange, loginFailureVerify,
		loginFailureUnavailable, loginFailureDenied, loginFailureIdPError} {
		check("login failure "+r, loginFailuresTotal.WithLabelValues(r, ""), func() { metricLoginFailure(nil, r) })
		check("login failure at corp "+r, loginFailuresTotal.WithLabelValues(r, "corp"), func() { metricLoginFailure(corp, r) })
	}
	for _, r := range []string{refreshFailureInvalidGrant, refreshFailureUnavailable, refreshFailureOther} {
		check("refresh failure "+r, refreshFailuresTotal.WithLabelValues(r, ""), func() { metricRefreshFailure(nil, r) })
		check("refresh failure at corp "+r, refreshFailuresTotal.WithLabelValues(r, "corp"), func() { metricRefreshFailure(corp, r) })
	}
	for _, k := range []string{logoutLocal, logoutRPInitiated, logoutBackchannel, logoutFrontchannel,
		logoutAdmin, logoutLimit, logoutExpired} {
		check("logout "+k, logoutsTotal.WithLabelValues(k, ""), func() { metricLogout(nil, k) })
		check("logout at corp "+k, logoutsTotal.WithLabelValues(k, "corp"), func() { metricLogout(corp, k) })
	}

	// Values outside the fixed sets count as "other", not as new series.
	check("unknown login failure", loginFailuresTotal.WithLabelValues(loginFailureOther, "corp"),
		func() { metricLoginFailure(corp, "error from somewhere: 42") })
	check("unknown refresh failure", refreshFailuresTotal.WithLabelValues(refreshFailureOther, "corp"),
		func() { metricRefreshFailure(corp, "nope") })
	check("unknown logout", logoutsTotal.WithLabelValues(logoutOther, "corp"), func() { metricLogout(corp, "nope") })
	// Per provider (other tests make other providers' series).
	for vec, n := range map[*prometheus.CounterVec]int{loginFailuresTotal: 7, refreshFailuresTotal: 3, logoutsTotal: 8} {
		got := 0
		for _, m := range collectMetrics(t, vec) {
			for _, l := range m.GetLabel() {
				if l.GetName() == "provider" && l.GetValue() == "corp" {
					got++
				}
			}
		}
		if got != n {
			t.Errorf("corp: %d series, want %d", got, n)
		}
	}
}

func TestMetricObserveStore(t *testing.T) {
	const store = "metrictest"
	for _, op := range []string{storeOpLoad, storeOpSave, storeOpDelete, "ping"} {
		before := histogramCount(t, store, op)
		observeStore(store, op, time.Now().Add(-3*time.Millisecond))
		if got := histogramCount(t, store, op); got != before+1 {
			t.Errorf("%s: %d observations, want %d", op, got, before+1)
		}
	}
	// The sample landed in a bucket above 2.5 ms.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(storeDuration)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if labelValue(m.GetLabel(), "store") != store || labelValue(m.GetLabel(), "op") != storeOpLoad {
				continue
			}
			for _, b := range m.GetHistogram().GetBucket() {
				if b.GetUpperBound() <= 0.0025 && b.GetCumulativeCount() != 0 {
					t.Errorf("3 ms counted in bucket le=%v", b.GetUpperBound())
				}
			}
		}
	}
}

func histogramCount(t *testing.T, store, op string) uint64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(storeDuration)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if labelValue(m.GetLabel(), "store") == store && labelValue(m.GetLabel(), "op") == op {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

func TestMetricHelpersDoNotAllocate(t *testing.T) {
	observeStore("cookie", storeOpSave, time.Now()) // first use of a store resolves its children
	start := time.Now()
	p := &idp{counters: providerMetrics(defaultProviderName)}
	allocs := testing.AllocsPerRun(100, func() {
		metricLogin(p)
		metricLoginFailure(p, loginFailureState)
		metricRefresh(p)
		metricRefreshFailure(p, refreshFailureInvalidGrant)
		metricLogout(p, logoutLocal)
		observeStore("cookie", storeOpLoad, start)
		observeStore("cookie", storeOpSave, start)
		observeStore("cookie", storeOpDelete, start)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run, want 0", allocs)
	}
}

func TestMetricActiveSessions(t *testing.T) {
	c := newActiveSessionsCollector(func(ctx context.Context) map[string]int {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("active-sessions function called without a deadline")
		}
		return map[string]int{"redis": 12, "memory": 0}
	})
	got := map[string]float64{}
	for _, m := range collectMetrics(t, c) {
		got[labelValue(m.GetLabel(), "store")] = m.GetGauge().GetValue()
	}
	if len(got) != 2 || got["redis"] != 12 || got["memory"] != 0 {
		t.Errorf("active_sessions %v, want redis=12 memory=0", got)
	}

	// The function is asked again at every scrape.
	c.setFunc(func(context.Context) map[string]int { return map[string]int{"redis": 5} })
	if got := metricValue(t, c); got != 5 {
		t.Errorf("after replacing the function: %v, want 5", got)
	}
}

func TestMetricActiveSessionsNilFunction(t *testing.T) {
	c := newActiveSessionsCollector(nil)
	if n := collectCount(t, c); n != 0 {
		t.Errorf("nil function: %d series, want 0", n)
	}
	var zero activeSessionsCollector // not even a function holder
	zero.desc = c.desc
	if n := collectCount(t, &zero); n != 0 {
		t.Errorf("zero collector: %d series, want 0", n)
	}
	c.setFunc(func(context.Context) map[string]int { return nil })
	if n := collectCount(t, c); n != 0 {
		t.Errorf("nil map: %d series, want 0", n)
	}
	c.setFunc(func(context.Context) map[string]int { panic("store exploded") })
	if n := collectCount(t, c); n != 0 {
		t.Errorf("panicking function: %d series, want 0", n)
	}
}

func TestMetricActiveSessionsSlowFunction(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	release := make(chan struct{})
	c := newActiveSessionsCollector(func(ctx context.Context) map[string]int {
		mu.Lock()
		calls++
		mu.Unlock()
		<-release // a store that ignores its context
		return map[string]int{"redis": 1}
	})
	c.timeout = 50 * time.Millisecond
	for i := 0; i < 3; i++ {
		start := time.Now()
		if n := collectCount(t, c); n != 0 {
			t.Errorf("slow function: %d series, want 0", n)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("scrape took %v despite the timeout", d)
		}
	}
	mu.Lock()
	if calls != 1 {
		t.Errorf("hung function started %d times, want once", calls)
	}
	mu.Unlock()
	close(release)

	// Once it returns, the next scrape gets its answer.
	deadline := time.Now().Add(5 * time.Second)
	for collectCount(t, c) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("no active_sessions after the slow function returned")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A function that honours its context is cut off at the timeout.
	c.setFunc(func(ctx context.Context) map[string]int {
		<-ctx.Done()
		return map[string]int{"redis": 1}
	})
	start := time.Now()
	if n := collectCount(t, c); n != 0 {
		t.Errorf("timed-out function: %d series, want 0", n)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("scrape took %v despite the timeout", d)
	}
}

func TestMetricActiveSessionsThroughRegistry(t *testing.T) {
	restoreActive(t)
	reg := prometheus.NewPedanticRegistry()
	if err := registerMetrics(reg, func(context.Context) map[string]int { return map[string]int{"redis": 2} }); err != nil {
		t.Fatal(err)
	}
	// A reload: the new config's function replaces the old one.
	reg2 := prometheus.NewPedanticRegistry()
	if err := registerMetrics(reg2, func(context.Context) map[string]int { return map[string]int{"redis": 7} }); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg2.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != metricPrefix+"active_sessions" {
			continue
		}
		found = true
		if mf.GetType() != dto.MetricType_GAUGE || len(mf.GetMetric()) != 1 ||
			labelValue(mf.GetMetric()[0].GetLabel(), "store") != "redis" || mf.GetMetric()[0].GetGauge().GetValue() != 7 {
			t.Errorf("active_sessions: %v, want one gauge redis=7", mf)
		}
	}
	if !found {
		t.Error("active_sessions not gathered")
	}
}
