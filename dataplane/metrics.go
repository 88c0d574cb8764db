package dataplane

import (
	"context"
	"encoding/hex"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

type metrics struct {
	requests       *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	upstreamErrors *prometheus.CounterVec
	retries        *prometheus.CounterVec
	retryBudget    *prometheus.CounterVec
	inflight       prometheus.Gauge
	connections    *prometheus.GaugeVec
	parked         *prometheus.GaugeVec
	swaps          prometheus.Counter
	compile        prometheus.Histogram
	tableIndex     prometheus.Gauge
	clientErrors   *prometheus.CounterVec
	panics         *prometheus.CounterVec

	// Per-backend series, labelled pool and backend (the configured
	// address). They are resolved through backendObs, never per request.
	backendRequests *prometheus.CounterVec
	backendErrors   *prometheus.CounterVec
	backendLatency  *prometheus.HistogramVec
	backendConnect  *prometheus.HistogramVec
	spansDropped    prometheus.Counter

	// obs caches the per-(route, pool) series so that a request neither
	// hashes label values nor takes the vectors' locks. A compiled table
	// holds the entries of its routes (compile looks them up once per
	// build); sweepRoutes drops the entries, and the series, of routes and
	// pools the table being served no longer has.
	obs sync.Map // obsKey -> *requestObs
}

type obsKey struct{ route, pool string }

// requestObs is the resolved series of one (route, pool) pair. A series is
// resolved on first use, exactly when WithLabelValues would have created
// it, so /metrics shows the same series as without the cache. Once retired
// (its route or pool left the configuration) it counts nothing, so a
// request still in flight across the swap cannot bring a deleted series
// back.
type requestObs struct {
	route, pool string
	retired     atomic.Bool
	latency     atomic.Pointer[observerRef]
	class       [5]atomic.Pointer[counterRef]
	// counts is the pair's poolCounter, looked up once instead of per
	// request (by two strings in a sync.Map).
	counts atomic.Pointer[poolCounter]
}

type observerRef struct{ prometheus.Observer }

type counterRef struct{ prometheus.Counter }

func (m *metrics) requestObs(route, pool string) *requestObs {
	k := obsKey{route, pool}
	if o, ok := m.obs.Load(k); ok {
		return o.(*requestObs)
	}
	o, _ := m.obs.LoadOrStore(k, &requestObs{route: route, pool: pool})
	return o.(*requestObs)
}

// record counts one answered request with status code that took dur.
func (m *metrics) record(route, pool string, code int, dur time.Duration) {
	m.recordObs(m.requestObs(route, pool), code, dur)
}

// recordObs is record with the series already looked up.
func (m *metrics) recordObs(o *requestObs, code int, dur time.Duration) {
	if o.retired.Load() {
		return
	}
	i := classIndex(code)
	c := o.class[i].Load()
	if c == nil {
		c = &counterRef{m.requests.WithLabelValues(o.route, o.pool, classLabel(i))}
		o.class[i].Store(c)
	}
	c.Inc()
	l := o.latency.Load()
	if l == nil {
		l = &observerRef{m.latency.WithLabelValues(o.route)}
		o.latency.Store(l)
	}
	l.Observe(dur.Seconds())
}

// sweepRoutes deletes the series of (route, pool) pairs that table t does
// not serve, and the pool-level series of pools it no longer has. It runs
// on the compile path after each swap.
func (m *metrics) sweepRoutes(t *Table) {
	live := make(map[*requestObs]bool, len(t.obs))
	liveRoutes := map[string]bool{"": true}
	for _, o := range t.obs {
		live[o] = true
		liveRoutes[o.route] = true
	}
	m.obs.Range(func(k, v any) bool {
		o := v.(*requestObs)
		if live[o] || (o.route == "" && o.pool == "") {
			return true
		}
		m.obs.Delete(k)
		o.retired.Store(true)
		m.requests.DeletePartialMatch(prometheus.Labels{"route": o.route, "pool": o.pool})
		if !liveRoutes[o.route] {
			m.latency.DeleteLabelValues(o.route)
		}
		return true
	})
}

// dropPool deletes the pool-level series of a pool that left the
// configuration.
func (m *metrics) dropPool(name string) {
	l := prometheus.Labels{"pool": name}
	m.upstreamErrors.DeletePartialMatch(l)
	m.retries.DeletePartialMatch(l)
	m.retryBudget.DeletePartialMatch(l)
}

// Upstream error kinds, as counted in rafter_upstream_errors_total and
// rafter_backend_errors_total. stale, counted in the second only, is no
// failure of the exchange: a connection from the pool that the backend had
// closed or answered 408 on, the request sent again on another
// (roundtrip.go).
var errorKinds = [...]string{"connect", "conn_limit", "timeout", "reset", "truncated", "idle_timeout", "stale"}

func errorKindIndex(kind string) int {
	for i, k := range errorKinds {
		if k == kind {
			return i
		}
	}
	return -1
}

// backendObs is the resolved per-backend series of one (pool, address).
// It lives in the backend's registry entry, so a request reaches it through
// the compiled table without any lookup; series are created on first use
// and deleted when the backend leaves its pool (retire).
type backendObs struct {
	m          *metrics
	pool, addr string
	retired    atomic.Bool
	class      [5]atomic.Pointer[counterRef]
	errs       [len(errorKinds)]atomic.Pointer[counterRef]
	latency    atomic.Pointer[observerRef]
	connect    atomic.Pointer[observerRef]
}

func newBackendObs(m *metrics, pool, addr string) *backendObs {
	if m == nil {
		return nil
	}
	return &backendObs{m: m, pool: pool, addr: addr}
}

// response counts one backend answer with status code whose head took dur.
func (o *backendObs) response(code int, dur time.Duration) {
	if o == nil || o.retired.Load() {
		return
	}
	i := classIndex(code)
	c := o.class[i].Load()
	if c == nil {
		c = &counterRef{o.m.backendRequests.WithLabelValues(o.pool, o.addr, classLabel(i))}
		o.class[i].Store(c)
	}
	c.Inc()
	l := o.latency.Load()
	if l == nil {
		l = &observerRef{o.m.backendLatency.WithLabelValues(o.pool, o.addr)}
		o.latency.Store(l)
	}
	l.Observe(dur.Seconds())
}

// failure counts one failed exchange with the backend.
func (o *backendObs) failure(kind string) {
	i := errorKindIndex(kind)
	if o == nil || i < 0 || o.retired.Load() {
		return
	}
	c := o.errs[i].Load()
	if c == nil {
		c = &counterRef{o.m.backendErrors.WithLabelValues(o.pool, o.addr, kind)}
		o.errs[i].Store(c)
	}
	c.Inc()
}

// connected records the time one new connection to the backend took.
func (o *backendObs) connected(dur time.Duration) {
	if o == nil || o.retired.Load() {
		return
	}
	l := o.connect.Load()
	if l == nil {
		l = &observerRef{o.m.backendConnect.WithLabelValues(o.pool, o.addr)}
		o.connect.Store(l)
	}
	l.Observe(dur.Seconds())
}

// retire deletes the backend's series; nothing is counted for it after.
func (o *backendObs) retire() {
	if o == nil {
		return
	}
	o.retired.Store(true)
	l := prometheus.Labels{"pool": o.pool, "backend": o.addr}
	o.m.backendRequests.DeletePartialMatch(l)
	o.m.backendErrors.DeletePartialMatch(l)
	o.m.backendLatency.DeletePartialMatch(l)
	o.m.backendConnect.DeletePartialMatch(l)
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_requests_total", Help: "Requests answered, by route, pool and status class.",
		}, []string{"route", "pool", "class"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "rafter_request_duration_seconds", Help: "Time to the response head, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_upstream_errors_total", Help: "Failed upstream exchanges by pool and kind.",
		}, []string{"pool", "kind"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_retries_total", Help: "Retries sent to another backend, by pool.",
		}, []string{"pool"}),
		retryBudget: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_retry_budget_exhausted_total", Help: "Retries not sent because the pool's budget was used up.",
		}, []string{"pool"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rafter_requests_in_flight", Help: "Requests being handled.",
		}),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rafter_client_connections", Help: "Open client connections by listener, WebSocket and other Upgrade tunnels included.",
		}, []string{"listener"}),
		parked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rafter_client_connections_parked",
			Help: "Open client connections by listener that wait for their next request parked: no goroutine serves them.",
		}, []string{"listener"}),
		swaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rafter_table_swaps_total", Help: "Routing tables compiled and swapped in.",
		}),
		compile: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rafter_table_compile_seconds", Help: "Time to compile a routing table.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		tableIndex: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rafter_table_index", Help: "Configuration index of the table being served.",
		}),
		clientErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_client_errors_total", Help: "Requests refused before routing (parse errors, limits), by status.",
		}, []string{"status"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_panics_total", Help: "Panics recovered on the request path (the request got a 500 or its tunnel was closed), by where.",
		}, []string{"where"}),
		backendRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_backend_requests_total",
			Help: "Responses received from a backend (every attempt, retries included), by pool, backend and status class.",
		}, []string{"pool", "backend", "class"}),
		backendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_backend_errors_total",
			Help: "Failed exchanges with a backend, by pool, backend and kind (connect, conn_limit, timeout, reset, truncated, idle_timeout; stale: a pooled connection the backend had closed or answered 408 on, the request sent again on another).",
		}, []string{"pool", "backend", "kind"}),
		backendLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "rafter_backend_response_seconds", Help: "Time from sending a request to a backend to its response head, by pool and backend.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"pool", "backend"}),
		backendConnect: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "rafter_backend_connect_seconds", Help: "Time to open a new connection to a backend, by pool and backend.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"pool", "backend"}),
		spansDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rafter_trace_spans_dropped_total", Help: "Request spans not exported because the exporter's queue was full.",
		}),
	}
	// The places a panic is recovered are fixed: their series exist from
	// the start, so a dashboard shows 0 rather than no data.
	for _, where := range []string{"request", "finish", "tunnel"} {
		m.panics.WithLabelValues(where)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.latency, m.upstreamErrors, m.retries,
			m.retryBudget, m.inflight, m.connections, m.parked, m.swaps, m.compile, m.tableIndex, m.clientErrors, m.panics,
			m.backendRequests, m.backendErrors, m.backendLatency, m.backendConnect, m.spansDropped} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// classIndex maps a status code to its class; anything outside 1xx-4xx
// counts as 5xx.
func classIndex(code int) int {
	if c := code / 100; c >= 1 && c <= 4 {
		return c - 1
	}
	return 4
}

// classLabel is the class label value of classIndex i.
func classLabel(i int) string {
	return [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}[i]
}

// finish records one request in the metrics, the access log and, when
// it is sampled and spans are exported, as a span.
func (d *Dataplane) finish(ctx *fasthttp.RequestCtx, ex *exchange) {
	code := ctx.Response.StatusCode()
	routeName, poolName := "", ""
	if ex.route != nil {
		routeName = ex.route.name
	}
	if ex.pool != nil {
		poolName = ex.pool.name
	}
	if ex.obs != nil {
		d.metrics.recordObs(ex.obs, code, ex.head)
	} else {
		d.metrics.record(routeName, poolName, code, ex.head)
	}
	if o := ex.obs; o != nil && o.pool != "" && o.route == routeName && o.pool == poolName {
		c := o.counts.Load()
		if c == nil {
			c = d.counts.counter(o.route, o.pool)
			o.counts.Store(c)
		}
		c.add(code, ex.head)
	} else {
		d.counts.record(routeName, poolName, code, ex.head)
	}
	// The clock is read only for a span or a log line: a clock read is
	// not free on every machine (a virtual one may trap it).
	spans := d.opts.Spans != nil && ex.trace.sampled() && len(ex.reqID) > 0
	if !spans && d.accessLog == nil {
		return
	}
	end := time.Now()
	if spans {
		d.exportSpan(ctx, ex, code, end, routeName, poolName)
	}
	if d.accessLog == nil {
		return
	}
	// Body would read a body stream to its end: a streamed body counts
	// what passed through it.
	var bytesOut int64
	switch {
	case ex.respBody.src != nil:
		bytesOut = ex.respBody.n
	case !ctx.Response.IsBodyStream():
		bytesOut = int64(len(ctx.Response.Body()))
	}
	upstream := ""
	if ex.upstream != nil {
		upstream = ex.upstream.String()
	}
	var traceID [32]byte
	var spanID [16]byte
	hex.Encode(traceID[:], ex.trace.traceID[:])
	hex.Encode(spanID[:], ex.trace.spanID[:])
	d.accessLog.LogAttrs(context.Background(), slog.LevelInfo, "request",
		slog.String("client", ctx.RemoteIP().String()),
		slog.String("method", string(ctx.Method())),
		slog.String("host", string(ctx.Request.Header.Host())),
		slog.String("uri", string(ctx.Request.Header.RequestURI())),
		slog.String("user_agent", string(ctx.Request.Header.UserAgent())),
		slog.Int("status", code),
		slog.Duration("duration", end.Sub(ex.start)),
		slog.Int64("bytes_in", max(int64(len(ex.body)), ex.stream.read)),
		slog.Int64("bytes_out", bytesOut),
		slog.String("route", routeName),
		slog.String("pool", poolName),
		slog.String("backend", ex.backend),
		slog.String("upstream_addr", upstream),
		slog.Duration("upstream_connect", ex.connect),
		slog.Duration("upstream_response", ex.upstreamTime),
		slog.Int("retries", ex.retries),
		slog.String("error", ex.kind),
		slog.String("request_id", string(ex.reqID)),
		slog.String("trace_id", string(traceID[:])),
		slog.String("span_id", string(spanID[:])),
	)
}

// exportSpan hands the request's span to the exporter; a full exporter
// queue drops it (counted).
func (d *Dataplane) exportSpan(ctx *fasthttp.RequestCtx, ex *exchange, code int, end time.Time, route, pool string) {
	// The span lives in the exchange: handing a pointer to a local over
	// the interface would move it to the heap on every request.
	ex.span = Span{
		TraceID: ex.trace.traceID, SpanID: ex.trace.spanID, ParentID: ex.trace.parentID,
		Start: ex.start, End: end, Method: methodName(ctx.Method()),
		Route: route, Pool: pool, Backend: ex.backend, Status: code, Error: ex.kind,
	}
	if !d.opts.Spans.ExportSpan(&ex.span) {
		d.metrics.spansDropped.Inc()
	}
}

// backendCollector exports, at scrape time, the gauges of every backend of
// the table being served: what the request path reads (active requests,
// open connections, the health verdict the balancers consult), so the
// series of a removed backend vanish with the table that had it.
type backendCollector struct{ d *Dataplane }

var (
	backendActiveDesc = prometheus.NewDesc("rafter_backend_active_requests",
		"Requests this node has in flight to a backend.", []string{"pool", "backend"}, nil)
	backendConnsDesc = prometheus.NewDesc("rafter_backend_connections",
		"Open connections from this node to a backend (idle and busy).", []string{"pool", "backend"}, nil)
	backendHealthyDesc = prometheus.NewDesc("rafter_backend_healthy",
		"1 when this node's health view lets a backend take requests, else 0.", []string{"pool", "backend"}, nil)
	backendUsableDesc = prometheus.NewDesc("rafter_backend_usable",
		"1 when a backend may take new requests by configuration (weight above 0, not draining, zone not evacuated), else 0.",
		[]string{"pool", "backend"}, nil)
)

func (backendCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- backendActiveDesc
	ch <- backendConnsDesc
	ch <- backendHealthyDesc
	ch <- backendUsableDesc
}

func (c backendCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	b01 := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for name, p := range d.table.Load().pools {
		for i := range p.backends {
			b := &p.backends[i]
			ch <- prometheus.MustNewConstMetric(backendActiveDesc, prometheus.GaugeValue, float64(b.st.active.Load()), name, b.addr)
			ch <- prometheus.MustNewConstMetric(backendConnsDesc, prometheus.GaugeValue, float64(b.st.conns()), name, b.addr)
			ch <- prometheus.MustNewConstMetric(backendHealthyDesc, prometheus.GaugeValue, b01(d.health.Healthy(name, b.addr)), name, b.addr)
			ch <- prometheus.MustNewConstMetric(backendUsableDesc, prometheus.GaugeValue, b01(b.usable()), name, b.addr)
		}
	}
}
