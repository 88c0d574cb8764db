package dataplane

import (
	"context"
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
	swaps          prometheus.Counter
	compile        prometheus.Histogram
	tableIndex     prometheus.Gauge
	clientErrors   *prometheus.CounterVec
	panics         *prometheus.CounterVec

	// obs caches the per-(route, pool) series so that a request neither
	// hashes label values nor takes the vectors' locks. Keys are names, not
	// compiled objects, so a table swap keeps the entries valid; like the
	// vectors themselves, it holds one entry per label set ever served.
	obs sync.Map // obsKey -> *requestObs
}

type obsKey struct{ route, pool string }

// requestObs is the resolved series of one (route, pool) pair. A series is
// resolved on first use, exactly when WithLabelValues would have created
// it, so /metrics shows the same series as without the cache.
type requestObs struct {
	route, pool string
	latency     atomic.Pointer[observerRef]
	class       [5]atomic.Pointer[counterRef]
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
	o := m.requestObs(route, pool)
	i := classIndex(code)
	c := o.class[i].Load()
	if c == nil {
		c = &counterRef{m.requests.WithLabelValues(route, pool, classLabel(i))}
		o.class[i].Store(c)
	}
	c.Inc()
	l := o.latency.Load()
	if l == nil {
		l = &observerRef{m.latency.WithLabelValues(route)}
		o.latency.Store(l)
	}
	l.Observe(dur.Seconds())
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
			Name: "rafter_client_connections", Help: "Open client connections by listener.",
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
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.latency, m.upstreamErrors, m.retries,
			m.retryBudget, m.inflight, m.connections, m.swaps, m.compile, m.tableIndex, m.clientErrors, m.panics} {
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

// finish records one request in the metrics and the access log.
func (d *Dataplane) finish(ctx *fasthttp.RequestCtx, ex *exchange) {
	code := ctx.Response.StatusCode()
	routeName, poolName := "", ""
	if ex.route != nil {
		routeName = ex.route.name
	}
	if ex.pool != nil {
		poolName = ex.pool.name
	}
	d.metrics.record(routeName, poolName, code, ex.head)
	d.counts.record(routeName, poolName, code, ex.head)
	dur := time.Since(ex.start)
	if d.accessLog == nil {
		return
	}
	attrs := []slog.Attr{
		slog.String("client", ctx.RemoteIP().String()),
		slog.String("method", string(ctx.Method())),
		slog.String("host", string(ctx.Request.Header.Host())),
		slog.String("uri", string(ctx.Request.Header.RequestURI())),
		slog.Int("status", code),
		slog.Duration("duration", dur),
		slog.String("route", routeName),
		slog.String("pool", poolName),
		slog.String("backend", ex.backend),
		slog.Int("retries", ex.retries),
		slog.String("error", ex.kind),
	}
	if ex.respBody.src != nil {
		attrs = append(attrs, slog.Int64("body_bytes", ex.respBody.n))
	}
	d.accessLog.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
}
