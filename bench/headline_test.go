package bench

import (
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"
)

// withExtras is fakeResult plus the comparisons, idle connections and
// cluster figures the headline reads.
func withExtras(t *testing.T) *Result {
	t.Helper()
	r := fakeResult(t)
	r.Proxies[2].RSSIdleBytes = 30 << 20
	r.IdleConns = []IdleConns{
		{Proxy: HAProxy, Conns: 2000, RSSBeforeBytes: 10 << 20, RSSAfterBytes: 10<<20 + 2000*2048, BytesPerConn: 2048},
		{Proxy: Rafter, Conns: 2000, RSSBeforeBytes: 30 << 20, RSSAfterBytes: 30<<20 + 2000*10240, BytesPerConn: 10240},
	}
	sc := Comparison{Name: CompareScaling, Phase: Scaling, Reference: HAProxy1, Variants: []string{HAProxy1, HAProxy2, Rafter1, Rafter2},
		Pairs: [][2]string{{Rafter2, Rafter1}, {HAProxy2, HAProxy1}, {Rafter1, HAProxy1}, {Rafter2, HAProxy2}}}
	rps := map[string]float64{HAProxy1: 40000, HAProxy2: 70000, Rafter1: 20000, Rafter2: 30000}
	cores := map[string]float64{HAProxy1: 1, HAProxy2: 1.5, Rafter1: 1, Rafter2: 1.6}
	for _, s := range Schedule(Scaling, 0, sc.Variants, HAProxy1, 3) {
		sc.Slices = append(sc.Slices, Slice{SliceSpec: s, Measurement: Measurement{RPS: rps[s.Proxy], Seconds: 2, CPUSeconds: 2 * cores[s.Proxy],
			CPUPerReqUs: cores[s.Proxy] / rps[s.Proxy] * 1e6}})
	}
	hs := Comparison{Name: TLSComparisonName(CertECDSA), Phase: Handshake, Reference: HAProxy1, Variants: []string{HAProxy1, Rafter1},
		Pairs: [][2]string{{Rafter1, HAProxy1}}}
	cpu := map[string]float64{HAProxy1: 100, Rafter1: 125}
	for _, s := range Schedule(Handshake, 0, hs.Variants, HAProxy1, 3) {
		hs.Slices = append(hs.Slices, Slice{SliceSpec: s, Measurement: Measurement{RPS: 5000, CPUPerReqUs: cpu[s.Proxy]}})
	}
	r.Comparisons = []Comparison{hs, sc}
	r.Cluster = &Cluster{Nodes: 3, Propagation: &LatencySummary{Count: 10, P50Ms: 3, P99Ms: 8},
		Routes: &RouteScale{Routes: 10000, UnchangedRawSeconds: []float64{0.4, 0.6, 0.5}, UnchangedSeconds: 0.5,
			Propagation: &LatencySummary{Count: 20, P50Ms: 40, P99Ms: 150}}}
	r.Analyze()
	r.Headline = BuildHeadline(r, DefaultTargets())
	return r
}

func findRow(t *testing.T, rows []Row, prefix string) Row {
	t.Helper()
	for _, r := range rows {
		if strings.HasPrefix(r.Figure, prefix) {
			return r
		}
	}
	t.Fatalf("no row %q among %d", prefix, len(rows))
	return Row{}
}

func TestHeadlineRatios(t *testing.T) {
	rows := withExtras(t).Headline
	for _, tt := range []struct {
		prefix          string
		haproxy, rafter float64
		ratio           float64
		status          string
	}{
		// CPU efficiency is HAProxy's µs/req over rafter's: 100/125.
		{"CPU efficiency, 1 KiB", 100, 125, 0.8, StatusNotMet},
		{"requests/s at saturation, 1 KiB", 10000, 8000, 0.8, StatusNotMet},
		{"p99 paced, 1 KiB", 1, 2, 2, StatusNotMet},
		{"idle RSS", 10, 30, 3, StatusNotMet},
		{"memory per idle", 2, 10, 5, StatusNotMet},
		// rafter 30000/20000 = 1.5 of its 1-core rate, HAProxy 1.75.
		{"2-core scaling, req/s", 1.75, 1.5, 1.5, StatusNotMet},
		// Per core used: rafter (30000/1.6)/(20000/1) × 2 = 1.875.
		{"2-core scaling per proxy CPU", 70000.0 / 1.5 / 40000 * 2, 1.875, 1.875, StatusNoTarget},
		// CPU per request: rafter 1.6/30000 at 2 cores over 1/20000 at 1.
		{"proxy CPU µs per request, 2 cores ÷ 1 core", (1.5 / 70000) / (1.0 / 40000), (1.6 / 30000) / (1.0 / 20000), (1.6 / 30000) / (1.0 / 20000), StatusNoTarget},
		{"TLS full handshakes per CPU-second, ecdsa-p256", 10000, 8000, 0.8, StatusNotMet},
		{"propagation p99, normal", math.NaN(), 8, math.NaN(), StatusMet},
		{"unchanged `rafter apply -f`", math.NaN(), 0.5, math.NaN(), StatusNotMet},
		{"one-route change with 10000 routes → 3 nodes, p50", math.NaN(), 40, math.NaN(), StatusNoTarget},
		{"one-route change with 10000 routes → 3 nodes, p99", math.NaN(), 150, math.NaN(), StatusNotMet},
	} {
		r := findRow(t, rows, tt.prefix)
		same := func(a, b float64) bool { return (math.IsNaN(a) && math.IsNaN(b)) || near(a, b) }
		if !same(r.HAProxy, tt.haproxy) || !same(r.Rafter, tt.rafter) || !same(r.Ratio, tt.ratio) || r.Status != tt.status {
			t.Errorf("%s: haproxy %v rafter %v ratio %v status %q, want %v %v %v %q (%s)",
				tt.prefix, r.HAProxy, r.Rafter, r.Ratio, r.Status, tt.haproxy, tt.rafter, tt.ratio, tt.status, r.Reason)
		}
	}
	// TLS ECDSA ran, RSA did not: its row says so rather than vanishing.
	if r := findRow(t, rows, "TLS full handshakes per CPU-second, rsa-2048"); r.Status != StatusMissing {
		t.Errorf("rsa row %+v", r)
	}
}

func TestNewRowInvertsSpread(t *testing.T) {
	r := newRow("x", "µs/req", 1, 2, Ratio{Value: 2, Min: 1.6, Max: 2.5}, true, "", Target{Op: ">=", Value: 0.5})
	if !near(r.Ratio, 0.5) || !near(r.RatioMin, 0.4) || !near(r.RatioMax, 0.625) || r.Status != StatusMet {
		t.Fatalf("%+v", r)
	}
	r = newRow("x", "", 1, 2, Ratio{Refused: true, Reason: "noisy"}, true, "", Target{Op: ">=", Value: 0.5})
	if r.Status != StatusRefused || r.Reason != "noisy" || !math.IsNaN(r.Ratio) {
		t.Fatalf("%+v", r)
	}
	r = newRow("x", "", math.NaN(), math.NaN(), Ratio{}, false, "", Target{Op: "<=", Value: 1})
	if r.Status != StatusMissing {
		t.Fatalf("%+v", r)
	}
}

func TestTargetMet(t *testing.T) {
	for _, tt := range []struct {
		t    Target
		v    float64
		want bool
	}{
		{Target{Op: ">=", Value: 1.8}, 1.8, true}, {Target{Op: ">=", Value: 1.8}, 1.79, false},
		{Target{Op: "<=", Value: 100}, 99, true}, {Target{Op: "<=", Value: 100}, 101, false},
		{Target{Op: ">=", Value: 1}, math.NaN(), false},
	} {
		if got := tt.t.Met(tt.v); got != tt.want {
			t.Errorf("%+v.Met(%v) = %v", tt.t, tt.v, got)
		}
	}
}

func TestRenderHeadline(t *testing.T) {
	rows := []Row{
		newRow("CPU efficiency, 0 B", "µs/req", 10, 20, Ratio{Value: 2, Min: 1.8, Max: 2.2}, true, "haproxy/rafter µs", Target{Op: ">=", Value: 0.5}),
		newRow("2-core scaling", "×", 1.9, 1.7, Ratio{Refused: true, Reason: "2 of 3 rounds discarded"}, false, "", Target{Op: ">=", Value: 1.8}),
		newRow("idle RSS", "MiB", 8, 31.5, valueRatio(31.5, 8), false, "rafter/haproxy", Target{Op: "<=", Value: 64, OnValue: true}),
	}
	got := RenderHeadline(rows)
	for _, want := range []string{
		"| figure | HAProxy | rafter | ratio | target | met? |",
		"| CPU efficiency, 0 B | 10.0 µs/req | 20.0 µs/req | **0.50** (0.45–0.56) haproxy/rafter µs | ≥ 0.50 | yes |",
		"| 2-core scaling | 1.90× | 1.70× | – | ≥ 1.80 | refused [1] |",
		"| idle RSS | 8.00 MiB | 31.5 MiB | **3.94** rafter/haproxy | rafter ≤ 64 | yes |",
		"1. 2-core scaling: 2 of 3 rounds discarded",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
}

func TestRowJSONKeepsNaNAsNull(t *testing.T) {
	in := newRow("p", "ms", math.NaN(), 8, Ratio{}, false, "", Target{Op: "<=", Value: 100, OnValue: true})
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"haproxy":null`) || !strings.Contains(string(b), `"rafter":8`) {
		t.Fatalf("%s", b)
	}
	var out Row
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(out.HAProxy) || out.Rafter != 8 || !math.IsNaN(out.Ratio) || out.Status != in.Status || out.Target != in.Target {
		t.Fatalf("round trip %+v -> %+v", in, out)
	}
}

func TestComparisonDiscardsOnHandshakeCPU(t *testing.T) {
	c := Comparison{Name: "tls-x", Phase: Handshake, Reference: HAProxy1, Variants: []string{HAProxy1, Rafter1}, Pairs: [][2]string{{Rafter1, HAProxy1}}}
	for _, s := range Schedule(Handshake, 0, c.Variants, HAProxy1, 3) {
		m := Measurement{RPS: 1000, CPUPerReqUs: 100}
		if s.Proxy == Rafter1 {
			m.CPUPerReqUs = 300
		}
		if s.Round == 2 && s.Pos == 3 {
			m.CPUPerReqUs = 150 // the reference's CPU per handshake moved: round 2 goes
		}
		c.Slices = append(c.Slices, Slice{SliceSpec: s, Measurement: m})
	}
	c.Analyze(0.10, RefusalRule{MinKeptRounds: 2, MaxDiscardFraction: 0.5})
	if len(c.Group.DiscardedRounds) != 1 || c.Group.DiscardedRounds[0] != 2 {
		t.Fatalf("group %+v", c.Group)
	}
	x, ok := c.Ratio(Rafter1, HAProxy1)
	if !ok || x.Refused || !near(x.Value, 3) || x.Rounds != 2 {
		t.Fatalf("ratio %+v", x)
	}
}

func TestRefusedRowsShowAnIndicativeRatio(t *testing.T) {
	r := withExtras(t)
	c, _ := r.comparison(CompareScaling)
	for i := range c.Slices {
		if c.Slices[i].Proxy == HAProxy1 && c.Slices[i].Pos == 0 {
			c.Slices[i].RPS *= 2 // the reference disagrees with itself in every round
		}
	}
	r.Analyze()
	rows := BuildHeadline(r, DefaultTargets())
	row := findRow(t, rows, "2-core scaling, req/s")
	if row.Status != StatusRefused || !row.Indicative || !near(row.Ratio, 1.5) || !near(row.Rafter, 1.5) {
		t.Fatalf("%+v", row)
	}
	out := RenderHeadline(rows)
	if !strings.Contains(out, "≈1.50 rafter-2/rafter-1") || !strings.Contains(out, "an indication, not a result") {
		t.Fatalf("render:\n%s", out)
	}
	// A kept ratio is never marked.
	if row := findRow(t, rows, "TLS full handshakes per CPU-second, ecdsa-p256"); row.Indicative {
		t.Fatalf("%+v", row)
	}
}

func TestResultWithExtrasRoundTrips(t *testing.T) {
	r := withExtras(t)
	path, err := r.WriteJSON(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadResult(b)
	if err != nil {
		t.Fatal(err)
	}
	// NaN (a figure not measured) is never equal to itself, so compare
	// the documents rather than the structs.
	again, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if string(append(again, '\n')) != string(b) {
		t.Fatalf("round trip differs")
	}
	if len(got.Headline) != len(r.Headline) || len(got.Comparisons) != 2 || got.Cluster.Routes.Routes != 10000 {
		t.Fatalf("lost parts: %d rows, %d comparisons", len(got.Headline), len(got.Comparisons))
	}
}

func TestScalingAboveTwoIsSuspect(t *testing.T) {
	r := withExtras(t)
	c, _ := r.comparison(CompareScaling)
	for i := range c.Slices {
		if c.Slices[i].Proxy == Rafter1 {
			c.Slices[i].RPS = 10000 // 30000 from two cores against 10000 from one
		}
	}
	r.Analyze()
	row := findRow(t, BuildHeadline(r, DefaultTargets()), "2-core scaling, req/s")
	if row.Status != StatusSuspect || !near(row.Ratio, 3) || !strings.Contains(row.Reason, "starved") {
		t.Fatalf("%+v", row)
	}
}
