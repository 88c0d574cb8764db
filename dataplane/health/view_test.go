package health

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

func TestHandler(t *testing.T) {
	clk := newFakeClock()
	m := NewMonitor(Options{Clock: clk, NodeID: "n1"})
	m.Update(map[string]fsm.PoolSpec{
		"web": poolWith(nil, &fsm.Outlier{Consecutive5xx: 1, BaseEjection: fsm.Duration(5 * time.Second)},
			"10.0.0.2:80", "10.0.0.1:80"),
		"api": poolWith(nil, nil, "10.0.1.1:80"),
	})
	clk.Advance(time.Minute)
	m.Observe("web", "10.0.0.2:80", Status5xx)

	tests := []struct {
		name       string
		method     string
		target     string
		wantStatus int
		wantAddrs  []string
	}{
		{"all targets sorted", http.MethodGet, "/v1/health", 200, []string{"api/10.0.1.1:80", "web/10.0.0.1:80", "web/10.0.0.2:80"}},
		{"one pool", http.MethodGet, "/v1/health?pool=web", 200, []string{"web/10.0.0.1:80", "web/10.0.0.2:80"}},
		{"unknown pool", http.MethodGet, "/v1/health?pool=nope", 200, []string{}},
		{"write refused", http.MethodPost, "/v1/health", 405, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			m.Handler(nil).ServeHTTP(rec, httptest.NewRequest(tc.method, tc.target, nil))
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tc.wantStatus)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			if tc.wantAddrs == nil {
				return
			}
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
				t.Fatal(err)
			}
			if string(raw["targets"]) == "null" {
				t.Fatal("targets must be a list, never null")
			}
			var v HealthView
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
				t.Fatal(err)
			}
			if v.Node != "n1" || len(v.Targets) != len(tc.wantAddrs) {
				t.Fatalf("view %+v", v)
			}
			for i, ts := range v.Targets {
				if got := ts.Pool + "/" + ts.Addr; got != tc.wantAddrs[i] {
					t.Fatalf("target %d = %s, want %s", i, got, tc.wantAddrs[i])
				}
			}
		})
	}

	// The fields an operator reads, as JSON.
	rec := httptest.NewRecorder()
	m.Handler(nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/health?pool=web", nil))
	var doc struct {
		Targets []map[string]any `json:"targets"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	ok, ejected := doc.Targets[0], doc.Targets[1]
	if ok["healthy"] != true || ok["reason"] != "new backend" || ok["ejected_until"] != nil {
		t.Fatalf("healthy target JSON %v", ok)
	}
	wantUntil := clk.Now().Add(5 * time.Second).Format(time.RFC3339Nano)
	if ejected["healthy"] != false || ejected["reason"] != "outlier: 1 consecutive 5xx" ||
		ejected["ejected_until"] != wantUntil || ejected["since"] != clk.Now().Format(time.RFC3339Nano) ||
		ejected["ejections"] != float64(1) || ejected["active_failures"] != float64(0) {
		t.Fatalf("ejected target JSON %v", ejected)
	}
}
