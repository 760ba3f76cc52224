package oidcsession

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Prometheus metrics of the handler, in Caddy's metrics registry:
//
//	caddy_oidc_session_logins_total{provider}
//	caddy_oidc_session_login_failures_total{reason,provider}
//	caddy_oidc_session_refreshes_total{provider}
//	caddy_oidc_session_refresh_failures_total{reason,provider}
//	caddy_oidc_session_logouts_total{kind,provider}
//	caddy_oidc_session_store_duration_seconds{store,op}
//	caddy_oidc_session_active_sessions{store}
//
// The collectors are created once per process. Caddy gives every config a
// new registry, so each config registers the same collectors into its own
// (registerMetrics); counts therefore carry over a reload, as Caddy's own
// HTTP metrics do.

const (
	metricsNamespace = "caddy"
	metricsSubsystem = "oidc_session"
)

// Label values of login_failures_total{reason}. Any other value is counted
// as "other", so that the number of series stays bounded.
const (
	loginFailureState       = "state"       // no, unknown, invalid or expired login flow for the callback
	loginFailureExchange    = "exchange"    // the IdP rejected the code exchange
	loginFailureVerify      = "verify"      // the ID token (or its claims) did not verify
	loginFailureUnavailable = "unavailable" // the IdP or the session store could not be reached
	loginFailureDenied      = "denied"      // authorization rules (domains, groups, claims) refused the user
	loginFailureIdPError    = "idp_error"   // the IdP sent the browser back with an error
	loginFailureOther       = "other"
)

// Label values of refresh_failures_total{reason}; any other value counts as
// "other".
const (
	refreshFailureInvalidGrant = "invalid_grant" // refresh token rejected: the session ends
	refreshFailureUnavailable  = "unavailable"   // the IdP could not be reached: the session goes on
	refreshFailureOther        = "other"
)

// Label values of logouts_total{kind}: why a session ended. Any other
// value counts as "other".
const (
	logoutLocal        = "local"        // sign_out without an IdP end_session_endpoint
	logoutRPInitiated  = "rp_initiated" // sign_out that sends the browser on to the IdP
	logoutBackchannel  = "backchannel"  // IdP back-channel logout
	logoutFrontchannel = "frontchannel" // IdP front-channel logout
	logoutAdmin        = "admin"        // ended through the admin API
	logoutLimit        = "limit"        // pushed out by the per-user session limit
	logoutExpired      = "expired"      // lifetime or idle timeout reached
	logoutOther        = "other"
)

// Label values of store_duration_seconds{op}.
const (
	storeOpLoad   = "load"
	storeOpSave   = "save"
	storeOpDelete = "delete"
)

// activeSessionsTimeout bounds one call of the active-sessions function at
// scrape time.
const activeSessionsTimeout = 2 * time.Second

// storeDurationBuckets go from 100 µs (an in-process or cookie store) to
// 5 s (a store that is timing out).
var storeDurationBuckets = []float64{
	0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005,
	0.01, 0.025, 0.05,
	0.1, 0.25, 0.5,
	1, 2.5, 5,
}

var (
	loginsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Subsystem: metricsSubsystem,
		Name:      "logins_total",
		Help:      "Logins completed: a new session was started, by identity provider.",
	}, []string{"provider"})
	loginFailuresTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Subsystem: metricsSubsystem,
		Name:      "login_failures_total",
		Help:      "Login callbacks that did not start a session, by reason and identity provider (empty when the callback's is not known: a bad or expired state).",
	}, []string{"reason", "provider"})
	refreshesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Subsystem: metricsSubsystem,
		Name:      "refreshes_total",
		Help:      "Token refreshes that succeeded, by identity provider.",
	}, []string{"provider"})
	refreshFailuresTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Subsystem: metricsSubsystem,
		Name:      "refresh_failures_total",
		Help:      "Token refreshes that failed, by reason and identity provider.",
	}, []string{"reason", "provider"})
	logoutsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Subsystem: metricsSubsystem,
		Name:      "logouts_total",
		Help:      "Sessions ended, by kind of logout and identity provider (empty when the session's is not known).",
	}, []string{"kind", "provider"})
	storeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metricsNamespace,
		Subsystem: metricsSubsystem,
		Name:      "store_duration_seconds",
		Help:      "Duration of session store operations, by store and operation.",
		Buckets:   storeDurationBuckets,
	}, []string{"store", "op"})
	activeSessions = newActiveSessionsCollector(nil)
)

// Children resolved once for the fixed label values, so that the helpers
// neither allocate nor hash label values.
var (
	// The counts of no known provider (never a login or a refresh).
	unknownProvider = idpCounters{
		loginFailures:   providerSet(loginFailuresTotal, "", loginFailureOther, loginFailureReasons...),
		refreshFailures: providerSet(refreshFailuresTotal, "", refreshFailureOther, refreshFailureInvalidGrant, refreshFailureUnavailable),
		logouts:         providerSet(logoutsTotal, "", logoutOther, logoutKinds...),
	}
	storeObservers = newObserverCache(storeDuration)
)

func init() {
	// The series of a site with one IdP exist from the start, as they did
	// before they had a provider label; providerMetrics adds the others.
	providerMetrics(defaultProviderName)
}

// idpCounters are the series of one provider, resolved once (configured
// names only, so the series stay bounded).
type idpCounters struct {
	logins, refreshes                       prometheus.Counter
	loginFailures, refreshFailures, logouts *counterSet
}

// providerMetrics makes the series of a provider, so that they are
// exposed (at 0) before its first login.
func providerMetrics(name string) idpCounters {
	return idpCounters{
		logins:          loginsTotal.WithLabelValues(name),
		refreshes:       refreshesTotal.WithLabelValues(name),
		loginFailures:   providerSet(loginFailuresTotal, name, loginFailureOther, loginFailureReasons...),
		refreshFailures: providerSet(refreshFailuresTotal, name, refreshFailureOther, refreshFailureInvalidGrant, refreshFailureUnavailable),
		logouts:         providerSet(logoutsTotal, name, logoutOther, logoutKinds...),
	}
}

// loginFailureReasons are the values of login_failures_total{reason}
// besides "other".
var loginFailureReasons = []string{loginFailureState, loginFailureExchange, loginFailureVerify,
	loginFailureUnavailable, loginFailureDenied, loginFailureIdPError}

// logoutKinds are the values of logouts_total{kind} besides "other".
var logoutKinds = []string{logoutLocal, logoutRPInitiated, logoutBackchannel, logoutFrontchannel,
	logoutAdmin, logoutLimit, logoutExpired}

// providerSet is the counterSet of vec for one provider: other, then the
// fixed values.
func providerSet(vec *prometheus.CounterVec, provider, other string, values ...string) *counterSet {
	return newCounterSet(vec.MustCurryWith(prometheus.Labels{"provider": provider}), other, values...)
}

// countersOf are p's series, or those of no known provider for nil.
func countersOf(p *idp) *idpCounters {
	if p == nil || p.counters.logouts == nil {
		return &unknownProvider
	}
	return &p.counters
}

// registerMetrics registers the handler's collectors into reg, the registry
// of the config being loaded (caddy.Context.GetMetricsRegistry()); call it
// in Provision. Registering into a registry that already has them (several
// handlers in one config) is not an error, and each new registry (a reload)
// gets the same collectors, so counts carry on.
//
// active becomes the function behind active_sessions, replacing the one
// given before, so that the newest config's stores are counted. It is called
// at scrape time with a context that expires after 2 s, and returns the
// number of live sessions per store name; a nil function, a panic, or a call
// that does not return in time reports no active_sessions at all.
//
// A nil reg only sets active.
func registerMetrics(reg prometheus.Registerer, active func(context.Context) map[string]int) error {
	activeSessions.setFunc(active)
	if reg == nil {
		return nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{
		loginsTotal,
		loginFailuresTotal,
		refreshesTotal,
		refreshFailuresTotal,
		logoutsTotal,
		storeDuration,
		activeSessions,
	} {
		err := reg.Register(c)
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) && are.ExistingCollector == c {
			continue
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// metricLogin counts a completed login at p.
func metricLogin(p *idp) { p.counters.logins.Inc() }

// metricLoginFailure counts a failed login at p (nil: not known); reason
// is one of the loginFailure* constants.
func metricLoginFailure(p *idp, reason string) { countersOf(p).loginFailures.get(reason).Inc() }

// metricRefresh counts a successful token refresh at p.
func metricRefresh(p *idp) { p.counters.refreshes.Inc() }

// metricRefreshFailure counts a failed token refresh at p (nil: not
// known); reason is one of the refreshFailure* constants.
func metricRefreshFailure(p *idp, reason string) { countersOf(p).refreshFailures.get(reason).Inc() }

// metricLogout counts an ended session of p (nil: not known); kind is one
// of the logout* constants.
func metricLogout(p *idp, kind string) { countersOf(p).logouts.get(kind).Inc() }

// observeStore records how long a store operation took since start; store
// is the store's name (storeName) and op one of the storeOp* constants. It
// suits a defer:
//
//	defer observeStore(name, storeOpLoad, time.Now())
func observeStore(store, op string, start time.Time) {
	storeObservers.get(store, op).Observe(time.Since(start).Seconds())
}

// counterSet holds the children of a one-label counter vector for a fixed
// set of values, plus the one that any other value is counted in.
type counterSet struct {
	values   []string
	counters []prometheus.Counter
	other    prometheus.Counter
}

// newCounterSet resolves (and so exposes, at 0) the children for values and
// for other.
func newCounterSet(vec *prometheus.CounterVec, other string, values ...string) *counterSet {
	s := &counterSet{values: values, other: vec.WithLabelValues(other)}
	for _, v := range values {
		s.counters = append(s.counters, vec.WithLabelValues(v))
	}
	return s
}

func (s *counterSet) get(value string) prometheus.Counter {
	for i, v := range s.values {
		if v == value {
			return s.counters[i]
		}
	}
	return s.other
}

// observerCache holds the store_duration_seconds children per store name,
// for the three operations. Store names are few (one per store module), so
// the map is copied on the rare write and read without a lock.
type observerCache struct {
	vec *prometheus.HistogramVec
	mu  sync.Mutex // serializes writers
	m   atomic.Pointer[map[string]*[3]prometheus.Observer]
}

func newObserverCache(vec *prometheus.HistogramVec) *observerCache {
	c := &observerCache{vec: vec}
	c.m.Store(&map[string]*[3]prometheus.Observer{})
	return c
}

func (c *observerCache) get(store, op string) prometheus.Observer {
	var i int
	switch op {
	case storeOpLoad:
		i = 0
	case storeOpSave:
		i = 1
	case storeOpDelete:
		i = 2
	default:
		return c.vec.WithLabelValues(store, op)
	}
	if obs, ok := (*c.m.Load())[store]; ok {
		return obs[i]
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.m.Load()
	if obs, ok := old[store]; ok {
		return obs[i]
	}
	obs := &[3]prometheus.Observer{
		c.vec.WithLabelValues(store, storeOpLoad),
		c.vec.WithLabelValues(store, storeOpSave),
		c.vec.WithLabelValues(store, storeOpDelete),
	}
	m := make(map[string]*[3]prometheus.Observer, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[store] = obs
	c.m.Store(&m)
	return obs[i]
}

// activeSessionsCollector reports caddy_oidc_session_active_sessions{store}
// at scrape time from a function that counts each store's live sessions.
type activeSessionsCollector struct {
	desc    *prometheus.Desc
	timeout time.Duration // set before use, then only read
	fn      atomic.Pointer[activeFunc]

	mu       sync.Mutex
	inflight *activeCall // the call still running, if any
}

// activeFunc wraps the function so that it can be swapped atomically and
// told apart from its successor.
type activeFunc struct {
	count func(context.Context) map[string]int
}

// activeCall is one run of the function, shared by the scrapes that arrive
// while it runs; a function that hangs past the timeout is not started
// again until it returns, so hung calls do not pile up.
type activeCall struct {
	fn     *activeFunc
	done   chan struct{}
	counts map[string]int
}

func newActiveSessionsCollector(fn func(context.Context) map[string]int) *activeSessionsCollector {
	c := &activeSessionsCollector{
		desc: prometheus.NewDesc(
			prometheus.BuildFQName(metricsNamespace, metricsSubsystem, "active_sessions"),
			"Live sessions, by server-side session store.",
			[]string{"store"}, nil),
		timeout: activeSessionsTimeout,
	}
	c.setFunc(fn)
	return c
}

func (c *activeSessionsCollector) setFunc(fn func(context.Context) map[string]int) {
	c.fn.Store(&activeFunc{count: fn})
}

// Describe implements prometheus.Collector.
func (c *activeSessionsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *activeSessionsCollector) Collect(ch chan<- prometheus.Metric) {
	fn := c.fn.Load()
	if fn == nil || fn.count == nil {
		return
	}
	call := c.start(fn)
	timer := time.NewTimer(c.timeout)
	defer timer.Stop()
	select {
	case <-call.done:
	case <-timer.C:
		return
	}
	for store, n := range call.counts {
		m, err := prometheus.NewConstMetric(c.desc, prometheus.GaugeValue, float64(n), store)
		if err == nil {
			ch <- m
		}
	}
}

// start returns the running call of fn, or starts one.
func (c *activeSessionsCollector) start(fn *activeFunc) *activeCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	if call := c.inflight; call != nil && call.fn == fn {
		select {
		case <-call.done:
		default:
			return call
		}
	}
	call := &activeCall{fn: fn, done: make(chan struct{})}
	c.inflight = call
	go func() {
		defer close(call.done)
		defer func() { _ = recover() }()
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		// An answer given after the time ran out (a store that returned what
		// it had when its context ended) is no count: without this, a scrape
		// whose timer fires at the same moment could take it or not.
		if counts := fn.count(ctx); ctx.Err() == nil {
			call.counts = counts
		}
	}()
	return call
}
