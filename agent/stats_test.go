package agent

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/api"
)

// GET /v1/stats reads the data plane's counters as /metrics shows them:
// by route (summed over pools) and by pool (summed over routes), each by
// status class, with the route's latency histogram.
func TestNodeStatsFromTheRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: requestsMetric, Help: "h"}, []string{"route", "pool", "class"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: latencyMetric, Help: "h", Buckets: []float64{0.01, 0.1}}, []string{"route"})
	backendReqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: backendRequestsMetric, Help: "h"}, []string{"pool", "backend", "class"})
	backendErrs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: backendErrorsMetric, Help: "h"}, []string{"pool", "backend", "kind"})
	backendLat := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: backendLatencyMetric, Help: "h", Buckets: []float64{0.01, 0.1}}, []string{"pool", "backend"})
	reg.MustRegister(requests, latency, backendReqs, backendErrs, backendLat)
	backendReqs.WithLabelValues("b", "10.0.0.1:80", "2xx").Add(4)
	backendReqs.WithLabelValues("b", "10.0.0.1:80", "5xx").Add(2)
	backendErrs.WithLabelValues("b", "10.0.0.1:80", "connect").Add(1)
	backendErrs.WithLabelValues("b", "10.0.0.1:80", "timeout").Add(2)
	backendErrs.WithLabelValues("b", "10.0.0.2:80", "connect").Add(5)
	for _, s := range []float64{0.005, 0.05} {
		backendLat.WithLabelValues("b", "10.0.0.1:80").Observe(s)
	}
	requests.WithLabelValues("web", "a", "2xx").Add(7)
	requests.WithLabelValues("web", "b", "2xx").Add(3)
	requests.WithLabelValues("web", "b", "5xx").Add(2)
	requests.WithLabelValues("api", "b", "2xx").Add(1)
	for _, s := range []float64{0.005, 0.005, 0.05, 1} {
		latency.WithLabelValues("web").Observe(s)
	}

	rec := httptest.NewRecorder()
	statsHandler(reg, "n1").ServeHTTP(rec, httptest.NewRequest("GET", "/v1/stats", nil))
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	var st api.NodeStats
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Node != "n1" || time.Since(st.At) > time.Minute || len(st.Routes) != 2 || len(st.Pools) != 2 {
		t.Fatalf("stats: %+v", st)
	}
	web := st.Routes[1]
	if web.Name != "web" || web.Requests["2xx"] != 10 || web.Requests["5xx"] != 2 || web.Latency == nil {
		t.Fatalf("route web: %+v", web)
	}
	if h := web.Latency; h.Count != 4 || len(h.Bounds) != 2 || h.Counts[0] != 2 || h.Counts[1] != 3 {
		t.Errorf("latency of web: %+v", h)
	}
	if b := st.Pools[1]; b.Name != "b" || b.Requests["2xx"] != 4 || b.Requests["5xx"] != 2 || b.Latency != nil {
		t.Errorf("pool b: %+v", b)
	}

	if len(st.Backends) != 2 {
		t.Fatalf("backends: %+v", st.Backends)
	}
	if b := st.Backends[0]; b.Name != "b/10.0.0.1:80" || b.Requests["2xx"] != 4 || b.Requests["5xx"] != 2 || b.Requests["failed"] != 3 ||
		b.Latency == nil || b.Latency.Count != 2 || b.Latency.Counts[0] != 1 {
		t.Errorf("backend b/10.0.0.1:80: %+v", b)
	}
	if b := st.Backends[1]; b.Name != "b/10.0.0.2:80" || b.Requests["failed"] != 5 || b.Requests["2xx"] != 0 {
		t.Errorf("backend b/10.0.0.2:80: %+v", b)
	}

	rec = httptest.NewRecorder()
	statsHandler(reg, "n1").ServeHTTP(rec, httptest.NewRequest("POST", "/v1/stats", nil))
	if rec.Code != 405 {
		t.Errorf("POST: %d", rec.Code)
	}
}
