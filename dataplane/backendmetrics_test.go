package dataplane

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rafterlb/rafter/fsm"
)

// gathered is one scrape of a registry: metric family name -> series.
type gathered map[string][]*dto.Metric

func gather(t *testing.T, g prometheus.Gatherer) gathered {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := gathered{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf.GetMetric()
	}
	return out
}

// series returns the series of name whose labels include want, or nil.
func (g gathered) series(name string, want map[string]string) *dto.Metric {
	for _, m := range g[name] {
		ok := true
		for k, v := range want {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			ok = ok && found
		}
		if ok {
			return m
		}
	}
	return nil
}

// withLabel lists "name{labels}" of every series having label k = v.
func (g gathered) withLabel(k, v string) []string {
	var out []string
	for name, ms := range g {
		for _, m := range ms {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					out = append(out, fmt.Sprintf("%s%v", name, m.GetLabel()))
				}
			}
		}
	}
	return out
}

// TestBackendMetricsAfterKnownTraffic sends known traffic and reads the
// per-backend series back: ten answered requests, one refused connection,
// and the gauges of the live backends. Then it removes a route, a pool and
// a backend and checks that their series are gone from the registry.
func TestBackendMetricsAfterKnownTraffic(t *testing.T) {
	be := newBackend(t, nil)
	dead := deadAddr(t)
	cfg := simpleConfig(be.addr)
	cfg.index = 1
	cfg.pools["dead"] = fsm.PoolSpec{Backends: []fsm.Backend{{Addr: dead}}}
	cfg.routes["dead"] = fsm.RouteSpec{Listener: "web", Match: fsm.RouteMatch{Path: fsm.PathMatch{Prefix: "/dead"}},
		Action:  fsm.RouteAction{Split: []fsm.WeightedPool{{Pool: "dead", Weight: 1}}},
		Retries: &fsm.RetryPolicy{Attempts: 0}} // one attempt: one connect failure
	src := newFakeSource(cfg.build())
	reg := prometheus.NewRegistry()
	d := startDataplane(t, src, func(o *Options) { o.Registerer = reg })
	addr := d.ListenerAddr("web")
	client := &http.Client{}
	get := func(path string) int {
		t.Helper()
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := 0; i < 10; i++ {
		if code := get("/app"); code != 200 {
			t.Fatalf("GET /app: %d", code)
		}
	}
	if code := get("/dead/x"); code != http.StatusBadGateway {
		t.Fatalf("GET /dead/x: %d, want 502", code)
	}

	g := gather(t, reg)
	app := map[string]string{"pool": "app", "backend": be.addr}
	if m := g.series("rafter_backend_requests_total", map[string]string{"pool": "app", "backend": be.addr, "class": "2xx"}); m.GetCounter().GetValue() != 10 {
		t.Errorf("rafter_backend_requests_total{app,2xx} = %v, want 10", m.GetCounter().GetValue())
	}
	if m := g.series("rafter_backend_response_seconds", app); m.GetHistogram().GetSampleCount() != 10 {
		t.Errorf("rafter_backend_response_seconds{app} count = %d, want 10", m.GetHistogram().GetSampleCount())
	}
	if m := g.series("rafter_backend_connect_seconds", app); m.GetHistogram().GetSampleCount() < 1 {
		t.Errorf("rafter_backend_connect_seconds{app}: no connection recorded")
	}
	if m := g.series("rafter_backend_errors_total", map[string]string{"pool": "dead", "backend": dead, "kind": "connect"}); m.GetCounter().GetValue() != 1 {
		t.Errorf("rafter_backend_errors_total{dead,connect} = %v, want 1", m.GetCounter().GetValue())
	}
	if m := g.series("rafter_backend_errors_total", app); m != nil {
		t.Errorf("errors counted for the healthy backend: %v", m)
	}
	if m := g.series("rafter_requests_total", map[string]string{"route": "app", "pool": "app", "class": "2xx"}); m.GetCounter().GetValue() != 10 {
		t.Errorf("rafter_requests_total{app,app,2xx} = %v, want 10", m.GetCounter().GetValue())
	}
	for _, gauge := range []struct {
		name string
		want func(float64) bool
	}{
		{"rafter_backend_healthy", func(v float64) bool { return v == 1 }},
		{"rafter_backend_usable", func(v float64) bool { return v == 1 }},
		{"rafter_backend_active_requests", func(v float64) bool { return v == 0 }},
		{"rafter_backend_connections", func(v float64) bool { return v >= 1 }},
	} {
		if m := g.series(gauge.name, app); m == nil || !gauge.want(m.GetGauge().GetValue()) {
			t.Errorf("%s{app}: %v", gauge.name, m)
		}
	}

	// The dead route and pool go; the app pool swaps its backend.
	be2 := newBackend(t, nil)
	next := simpleConfig(be2.addr)
	next.index = 2
	src.Set(next.build())
	waitFor(t, "table 2 served", func() bool { return d.Table().Index() == 2 })
	if code := get("/app"); code != 200 {
		t.Fatalf("GET /app after the change: %d", code)
	}
	g = gather(t, reg)
	for _, stale := range [][2]string{{"backend", be.addr}, {"backend", dead}, {"pool", "dead"}, {"route", "dead"}} {
		if s := g.withLabel(stale[0], stale[1]); len(s) > 0 {
			t.Errorf("series of removed %s %s remain:\n%s", stale[0], stale[1], strings.Join(s, "\n"))
		}
	}
	if m := g.series("rafter_backend_requests_total", map[string]string{"pool": "app", "backend": be2.addr, "class": "2xx"}); m.GetCounter().GetValue() != 1 {
		t.Errorf("new backend's 2xx series = %v, want 1", m.GetCounter().GetValue())
	}
	if m := g.series("rafter_requests_total", map[string]string{"route": "app", "pool": "app", "class": "2xx"}); m.GetCounter().GetValue() != 11 {
		t.Errorf("the remaining route's series lost its count: %v, want 11", m.GetCounter().GetValue())
	}
}

// A backend whose connection settings change keeps its series: only a
// backend that leaves its pool loses them.
func TestBackendSeriesSurviveSettingsChange(t *testing.T) {
	be := newBackend(t, nil)
	cfg := simpleConfig(be.addr)
	cfg.index = 1
	src := newFakeSource(cfg.build())
	reg := prometheus.NewRegistry()
	d := startDataplane(t, src, func(o *Options) { o.Registerer = reg })
	addr := d.ListenerAddr("web")
	for i := 0; i < 3; i++ {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	next := simpleConfig(be.addr)
	next.index = 2
	next.pools["app"] = fsm.PoolSpec{Backends: []fsm.Backend{{Addr: be.addr}}, MaxConnsPerBackend: 7}
	src.Set(next.build())
	waitFor(t, "table 2 served", func() bool { return d.Table().Index() == 2 })
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	m := gather(t, reg).series("rafter_backend_requests_total", map[string]string{"pool": "app", "backend": be.addr, "class": "2xx"})
	if m.GetCounter().GetValue() != 4 {
		t.Errorf("rafter_backend_requests_total after a settings change = %v, want 4", m.GetCounter().GetValue())
	}
}

// Counting into a backend's resolved series does not allocate.
func TestBackendObsDoesNotAllocate(t *testing.T) {
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	o := newBackendObs(m, "p", "10.0.0.1:80")
	o.response(200, 1)
	o.failure("reset")
	if n := testing.AllocsPerRun(100, func() {
		o.response(200, 1)
		o.failure("reset")
	}); n != 0 {
		t.Errorf("backend series allocate %v times per request", n)
	}
}
