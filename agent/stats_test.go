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
	reg.MustRegister(requests, latency)
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

	rec = httptest.NewRecorder()
	statsHandler(reg, "n1").ServeHTTP(rec, httptest.NewRequest("POST", "/v1/stats", nil))
	if rec.Code != 405 {
		t.Errorf("POST: %d", rec.Code)
	}
}
