package agent

import (
	"encoding/json"
	"math"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rafterlb/rafter/api"
)

// The data plane's request counters that GET /v1/stats reads: requests by
// route, pool and status class, and the latency histogram by route; and
// per backend, answers by status class, attempts that got no answer, and
// the latency histogram.
const (
	requestsMetric        = "rafter_requests_total"
	latencyMetric         = "rafter_request_duration_seconds"
	backendRequestsMetric = "rafter_backend_requests_total"
	backendErrorsMetric   = "rafter_backend_errors_total"
	backendLatencyMetric  = "rafter_backend_response_seconds"
)

// nodeStats reads this node's request counters from the registry the data
// plane registers them with, so the figures are exactly those /metrics
// shows; it needs nothing of the data plane but the metric names.
func nodeStats(g prometheus.Gatherer, node string, now time.Time) (api.NodeStats, error) {
	out := api.NodeStats{Node: node, At: now.UTC(), Routes: []api.RequestStats{}, Pools: []api.RequestStats{}, Backends: []api.RequestStats{}}
	families, err := g.Gather()
	if err != nil {
		return out, err
	}
	routes := map[string]*api.RequestStats{}
	pools := map[string]*api.RequestStats{}
	backends := map[string]*api.RequestStats{}
	row := func(m map[string]*api.RequestStats, name string) *api.RequestStats {
		r := m[name]
		if r == nil {
			r = &api.RequestStats{Name: name, Requests: map[string]uint64{}}
			m[name] = r
		}
		return r
	}
	backend := func(m *dto.Metric) *api.RequestStats {
		l := labels(m)
		return row(backends, l["pool"]+"/"+l["backend"])
	}
	for _, f := range families {
		switch f.GetName() {
		case requestsMetric:
			for _, m := range f.GetMetric() {
				l := labels(m)
				n := uint64(math.Round(m.GetCounter().GetValue()))
				row(routes, l["route"]).Requests[l["class"]] += n
				row(pools, l["pool"]).Requests[l["class"]] += n
			}
		case latencyMetric:
			for _, m := range f.GetMetric() {
				row(routes, labels(m)["route"]).Latency = histogram(m)
			}
		case backendRequestsMetric:
			for _, m := range f.GetMetric() {
				backend(m).Requests[labels(m)["class"]] += uint64(math.Round(m.GetCounter().GetValue()))
			}
		case backendErrorsMetric:
			for _, m := range f.GetMetric() {
				backend(m).Requests["failed"] += uint64(math.Round(m.GetCounter().GetValue()))
			}
		case backendLatencyMetric:
			for _, m := range f.GetMetric() {
				backend(m).Latency = histogram(m)
			}
		}
	}
	out.Routes = sorted(routes)
	out.Pools = sorted(pools)
	out.Backends = sorted(backends)
	return out, nil
}

func histogram(m *dto.Metric) *api.Histogram {
	h := m.GetHistogram()
	hist := &api.Histogram{Count: h.GetSampleCount(), Sum: h.GetSampleSum()}
	for _, b := range h.GetBucket() {
		if math.IsInf(b.GetUpperBound(), 1) {
			continue
		}
		hist.Bounds = append(hist.Bounds, b.GetUpperBound())
		hist.Counts = append(hist.Counts, b.GetCumulativeCount())
	}
	return hist
}

func labels(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func sorted(m map[string]*api.RequestStats) []api.RequestStats {
	out := make([]api.RequestStats, 0, len(m))
	for _, r := range m {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// statsHandler serves GET /v1/stats: this node's request counters since it
// started (the admin API sums them over the cluster in /v1/stats/cluster
// and turns them into rates in /v1/events).
func statsHandler(g prometheus.Gatherer, node string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			w.WriteHeader(http.StatusMethodNotAllowed)
			_, _ = w.Write([]byte(`{"error":{"code":"method_not_allowed","message":"use GET"}}` + "\n"))
			return
		}
		st, err := nodeStats(g, node, time.Now())
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			b, _ := json.Marshal(api.ErrorBody{Error: api.ErrorDetail{Code: "internal", Message: "reading the request counters: " + err.Error()}})
			_, _ = w.Write(append(b, '\n'))
			return
		}
		b, _ := json.Marshal(st)
		_, _ = w.Write(append(b, '\n'))
	})
}
