package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fakeResult is a finished run on invented figures: haproxy reference,
// nginx steady, rafter at 80% throughput; one noisy latency round.
func fakeResult(t *testing.T) *Result {
	t.Helper()
	cfg := DefaultConfig()
	cfg.BodySizes = []int{1024}
	cfg.Proxies = []string{HAProxy, Nginx, Rafter}
	cfg.SaturationRounds, cfg.LatencyRounds = 2, 3
	start := time.Date(2026, 11, 24, 17, 0, 0, 0, time.UTC)
	r := &Result{Schema: SchemaVersion, StartedAt: start, FinishedAt: start.Add(time.Minute), GitSHA: "abc123",
		Machine: Machine{CPUModel: "fake", CPUs: 2}, Versions: map[string]string{HAProxy: "2.6"}, Config: cfg,
		Proxies: []ProxyInfo{{Name: HAProxy, RSSIdleBytes: 10 << 20}, {Name: Nginx}, {Name: Rafter}},
		Notes:   []string{FailoverNote}}
	rps := map[string]float64{HAProxy: 10000, Nginx: 9000, Rafter: 8000}
	for _, s := range Schedule(Saturation, 1024, cfg.Proxies, HAProxy, 2) {
		r.Slices = append(r.Slices, Slice{SliceSpec: s, Measurement: Measurement{RPS: rps[s.Proxy],
			Requests: int64(rps[s.Proxy]), CPUPerReqUs: 1e6 / rps[s.Proxy], RSSBytes: 20 << 20}})
	}
	p50 := map[string]float64{HAProxy: 0.1, Nginx: 0.12, Rafter: 0.2}
	for _, s := range Schedule(Latency, 1024, cfg.Proxies, HAProxy, 3) {
		m := Measurement{P50Ms: p50[s.Proxy], P99Ms: 10 * p50[s.Proxy], P999Ms: 20 * p50[s.Proxy], OfferedRPS: 4000, RPS: 4000}
		if s.Round == 1 && s.Pos == 5 {
			m.P50Ms *= 2 // the reference disagrees with itself: round 1 goes
		}
		r.Slices = append(r.Slices, Slice{SliceSpec: s, Measurement: m})
	}
	r.Groups = []Group{{Phase: Latency, BodyBytes: 1024, PacedRPS: 4000}}
	r.Analyze()
	return r
}

func TestAnalyzeOnFakes(t *testing.T) {
	r := fakeResult(t)
	if len(r.Groups) != 2 {
		t.Fatalf("groups %+v", r.Groups)
	}
	lat := r.Groups[1]
	if lat.Phase != Latency || lat.PacedRPS != 4000 || len(lat.DiscardedRounds) != 1 || lat.DiscardedSlices != 6 {
		t.Fatalf("latency group %+v", lat)
	}
	for _, tt := range []struct {
		proxy string
		m     Metric
		want  float64
	}{
		{Rafter, MetricRPS, 0.8}, {Nginx, MetricRPS, 0.9}, {Rafter, MetricCPU, 1.25},
		{Rafter, MetricRSS, 1}, {Rafter, MetricP50, 2}, {Nginx, MetricP99, 1.2},
	} {
		x, ok := r.Ratio(tt.proxy, tt.m, 1024)
		if !ok || x.Refused || !near(x.Value, tt.want) {
			t.Errorf("%s %s = %+v, want %v", tt.proxy, tt.m, x, tt.want)
		}
	}
	if _, ok := r.Ratio(HAProxy, MetricRPS, 1024); ok {
		t.Error("reference has a ratio to itself")
	}
	for _, f := range r.Figures {
		if f.Proxy == HAProxy && (f.RPS != 10000 || f.P50Ms != 0.1 || f.RSSIdleBytes != 10<<20 || f.PacedRPS != 4000) {
			t.Errorf("haproxy figure %+v", f)
		}
	}
	// Analyze is idempotent: marks are recomputed, not accumulated.
	before, _ := json.Marshal(r)
	r.Analyze()
	after, _ := json.Marshal(r)
	if !bytes.Equal(before, after) {
		t.Error("second Analyze changed the result")
	}
}

func TestAnalyzeRefusesWhenTooManyDiscarded(t *testing.T) {
	r := fakeResult(t)
	for i := range r.Slices {
		s := &r.Slices[i]
		if s.Phase == Saturation && s.Proxy == HAProxy && s.Pos == 0 {
			s.RPS = 5000 // every saturation round now disagrees with itself
		}
	}
	r.Analyze()
	x, _ := r.Ratio(Rafter, MetricRPS, 1024)
	if !x.Refused || !strings.Contains(x.Reason, "2 of 2 rounds discarded") {
		t.Fatalf("ratio %+v not refused for discards", x)
	}
	sum := Summary(r)
	for _, want := range []string{"refused [1]", "2 of 2 rounds discarded", "Ratios not reported", FailoverNote} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
}

func TestSkippedProxyHasNoRatios(t *testing.T) {
	r := fakeResult(t)
	r.Proxies[2] = ProxyInfo{Name: Rafter, Skipped: true, Reason: "data plane not built"}
	var kept []Slice
	for _, s := range r.Slices {
		if s.Proxy != Rafter {
			kept = append(kept, s)
		}
	}
	r.Slices = kept
	r.Analyze()
	if _, ok := r.Ratio(Rafter, MetricRPS, 1024); ok {
		t.Fatal("ratio for a skipped proxy")
	}
	if sum := Summary(r); !strings.Contains(sum, "- rafter: data plane not built") {
		t.Fatalf("summary does not say why rafter is missing:\n%s", sum)
	}
}

func TestResultJSONRoundTrip(t *testing.T) {
	r := fakeResult(t)
	r.Cluster = &Cluster{Nodes: 3, Propagation: &LatencySummary{Count: 2, P50Ms: 1, P99Ms: 2, MaxMs: 2, RawMs: []float64{1, 2}},
		Apply: &ApplySummary{Workers: 8, Writes: 100, Seconds: 1, WritesPerSec: 100}}
	dir := t.TempDir()
	path, err := r.WriteJSON(dir)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "2026-11-24T170000Z-abc123.json" {
		t.Fatalf("file name %s", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadResult(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, r)
	}
	// The top-level keys readers depend on.
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema", "git_sha", "machine", "versions", "config", "proxies", "slices", "groups", "figures", "ratios", "cluster", "notes"} {
		if _, ok := top[k]; !ok {
			t.Errorf("key %q missing", k)
		}
	}
	var slice map[string]any
	var raw []json.RawMessage
	_ = json.Unmarshal(top["slices"], &raw)
	_ = json.Unmarshal(raw[0], &slice)
	for _, k := range []string{"phase", "body_bytes", "round", "pos", "proxy", "rps", "cpu_us_per_request", "rss_bytes", "discarded", "started_at"} {
		if _, ok := slice[k]; !ok {
			t.Errorf("slice key %q missing", k)
		}
	}
}

func TestResultSchemaViolations(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(r *Result)
	}{
		{"wrong schema", func(r *Result) { r.Schema = "v0" }},
		{"no sha", func(r *Result) { r.GitSHA = "" }},
		{"finished before started", func(r *Result) { r.FinishedAt = r.StartedAt.Add(-time.Second) }},
		{"unknown proxy in slice", func(r *Result) { r.Slices[0].Proxy = "envoy" }},
		{"bad phase", func(r *Result) { r.Slices[0].Phase = "warmup" }},
		{"refused without reason", func(r *Result) { r.Ratios[0].Refused, r.Ratios[0].Reason = true, "" }},
		{"value without refusal", func(r *Result) { r.Ratios[0].Value = 0 }},
		{"skipped without reason", func(r *Result) { r.Proxies[1].Skipped = true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fakeResult(t)
			tt.mutate(r)
			if err := r.Validate(); !errors.Is(err, ErrSchema) {
				t.Fatalf("Validate = %v, want ErrSchema", err)
			}
			if _, err := r.WriteJSON(t.TempDir()); !errors.Is(err, ErrSchema) {
				t.Fatalf("WriteJSON = %v, want ErrSchema", err)
			}
		})
	}
}

func TestReadResultRejectsUnknownFields(t *testing.T) {
	r := fakeResult(t)
	b, _ := json.Marshal(r)
	b = bytes.Replace(b, []byte(`"schema"`), []byte(`"surprise":1,"schema"`), 1)
	if _, err := ReadResult(b); !errors.Is(err, ErrSchema) {
		t.Fatalf("ReadResult = %v, want ErrSchema", err)
	}
}

func TestChartIsAPNG(t *testing.T) {
	r := fakeResult(t)
	path := filepath.Join(t.TempDir(), "c.png")
	if err := WriteChart(r, path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 1000 {
		t.Fatalf("not a PNG (%d bytes)", len(b))
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default: %v", err)
	}
	if err := QuickConfig().Validate(); err != nil {
		t.Fatalf("quick: %v", err)
	}
	ab := QuickConfig()
	ab.Proxies, ab.RafterBBin = []string{HAProxy, Rafter, RafterB}, "/usr/local/bin/rafter"
	if err := ab.Validate(); err != nil {
		t.Fatalf("rafter-b with its binary: %v", err)
	}
	floor := QuickConfig()
	floor.Proxies = []string{HAProxy, Rafter, Floor, RawFloor}
	if err := floor.Validate(); err != nil {
		t.Fatalf("the fasthttp and raw Go floors: %v", err)
	}
	tests := []struct {
		field string
		edit  func(c *Config)
	}{
		{"proxies[1]", func(c *Config) { c.Proxies[1] = "envoy" }},
		{"reference", func(c *Config) { c.Reference = "envoy" }},
		{"load_core", func(c *Config) { c.LoadCore = c.ProxyCore }},
		{"body_sizes[0]", func(c *Config) { c.BodySizes = []int{-1} }},
		{"latency_load", func(c *Config) { c.LatencyLoad = 1 }},
		{"min_kept_rounds", func(c *Config) { c.MinKeptRounds = 9 }},
		{"cluster.writes", func(c *Config) { c.Cluster.Writes = 0 }},
		{"extra_rounds", func(c *Config) { c.ExtraRounds = 1 }},
		{"handshake_workers", func(c *Config) { c.HandshakeWorkers = 0 }},
		{"idle_conns", func(c *Config) { c.IdleConns = 1 << 20 }},
		{"cluster.routes", func(c *Config) { c.Cluster.Routes = -1 }},
		{"cluster.route_writes", func(c *Config) { c.Cluster.RouteWrites = 0 }},
		{"proxies[3]", func(c *Config) { c.Proxies = append(c.Proxies, RafterB) }},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			c := DefaultConfig()
			tt.edit(&c)
			err := c.Validate()
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.field+":") {
				t.Fatalf("Validate = %v, want ErrConfig naming %s", err, tt.field)
			}
		})
	}
}
