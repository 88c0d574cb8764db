package bench

import (
	"math"
	"strings"
	"testing"
	"time"
)

// satRound builds one A-B-B-A saturation round from four throughputs.
func satRound(r int, ref1, cand1, cand2, ref2 float64) []Slice {
	mk := func(pos int, p string, rps float64) Slice {
		return Slice{SliceSpec: SliceSpec{Phase: Saturation, BodyBytes: 1024, Round: r, Pos: pos, Proxy: p},
			Measurement: Measurement{RPS: rps, CPUPerReqUs: 1e6 / rps, Requests: int64(rps)}}
	}
	return []Slice{mk(0, HAProxy, ref1), mk(1, Rafter, cand1), mk(2, Rafter, cand2), mk(3, HAProxy, ref2)}
}

func rounds(rs ...[]Slice) []Slice {
	var out []Slice
	for _, r := range rs {
		out = append(out, r...)
	}
	return out
}

func TestDiscardRule(t *testing.T) {
	tests := []struct {
		name          string
		slices        []Slice
		wantDiscarded []int
		wantReason    string
	}{
		{"steady reference keeps every round", rounds(satRound(0, 100, 50, 50, 100), satRound(1, 100, 50, 50, 109)), nil, ""},
		{"exactly at the tolerance is kept", rounds(satRound(0, 95, 1, 1, 105)), nil, ""},
		{"more than 10% apart is discarded", rounds(satRound(0, 100, 50, 50, 100), satRound(1, 100, 50, 50, 120)), []int{1}, "differs by 18.2%"},
		{"candidate noise does not discard", rounds(satRound(0, 100, 10, 90, 100)), nil, ""},
		{"zero reference is discarded", rounds(satRound(0, 0, 50, 50, 0)), []int{0}, "differs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := DiscardRounds(tt.slices, HAProxy, 0.10)
			if len(g.DiscardedRounds) != len(tt.wantDiscarded) {
				t.Fatalf("discarded %v, want %v (%v)", g.DiscardedRounds, tt.wantDiscarded, g.Reasons)
			}
			for i, r := range tt.wantDiscarded {
				if g.DiscardedRounds[i] != r {
					t.Fatalf("discarded %v, want %v", g.DiscardedRounds, tt.wantDiscarded)
				}
			}
			if tt.wantReason != "" && !strings.Contains(strings.Join(g.Reasons, ";"), tt.wantReason) {
				t.Fatalf("reasons %q lack %q", g.Reasons, tt.wantReason)
			}
			// Every slice of a discarded round is marked, and counted.
			marked := 0
			for _, s := range tt.slices {
				in := false
				for _, r := range g.DiscardedRounds {
					in = in || s.Round == r
				}
				if s.Discarded != in {
					t.Fatalf("slice %v discarded=%v, round discarded=%v", s.SliceSpec, s.Discarded, in)
				}
				if s.Discarded {
					marked++
				}
			}
			if marked != g.DiscardedSlices {
				t.Fatalf("DiscardedSlices %d, marked %d", g.DiscardedSlices, marked)
			}
		})
	}
}

func TestDiscardRuleFailedOrMissingReference(t *testing.T) {
	ss := rounds(satRound(0, 100, 50, 50, 100), satRound(1, 100, 50, 50, 100))
	ss[3].Err = "wrk: connection refused"
	ss = append(ss, Slice{SliceSpec: SliceSpec{Phase: Saturation, Round: 2, Proxy: HAProxy}, Measurement: Measurement{RPS: 1}})
	g := DiscardRounds(ss, HAProxy, 0.10)
	if len(g.DiscardedRounds) != 2 || g.DiscardedRounds[0] != 0 || g.DiscardedRounds[1] != 2 {
		t.Fatalf("discarded %v (%v), want [0 2]", g.DiscardedRounds, g.Reasons)
	}
	if g.Rounds != 3 || g.Kept() != 1 {
		t.Fatalf("rounds %d kept %d", g.Rounds, g.Kept())
	}
}

func TestLatencyRoundsCheckMedianLatency(t *testing.T) {
	mk := func(pos int, p string, p50 float64) Slice {
		return Slice{SliceSpec: SliceSpec{Phase: Latency, Round: 0, Pos: pos, Proxy: p},
			Measurement: Measurement{P50Ms: p50, RPS: 1000, OfferedRPS: 1000}}
	}
	ss := []Slice{mk(0, HAProxy, 0.10), mk(1, Nginx, 0.2), mk(2, Nginx, 0.2), mk(3, HAProxy, 0.20)}
	if g := DiscardRounds(ss, HAProxy, 0.10); len(g.DiscardedRounds) != 1 {
		t.Fatalf("p50 doubling not discarded: %+v", g)
	}
}

func TestRatioMath(t *testing.T) {
	rule := RefusalRule{MinKeptRounds: 2, MaxDiscardFraction: 0.5}
	ss := rounds(
		satRound(0, 100, 80, 84, 105), // kept: (82)/(102.5) = 0.8
		satRound(1, 100, 10, 10, 120), // discarded
		satRound(2, 100, 90, 90, 100), // kept: 0.9
	)
	g := DiscardRounds(ss, HAProxy, 0.10)
	r := ComputeRatio(ss, g, rule, MetricRPS, Rafter, HAProxy)
	if r.Refused {
		t.Fatalf("refused: %s", r.Reason)
	}
	if !near(r.Value, 0.85) || !near(r.Min, 0.8) || !near(r.Max, 0.9) || r.Rounds != 2 {
		t.Fatalf("ratio = %+v, want median 0.85 over [0.8, 0.9]", r)
	}
	// CPU per request is 1e6/rps here, so its ratio is the mean of inverses' ratio.
	c := ComputeRatio(ss, g, rule, MetricCPU, Rafter, HAProxy)
	want0 := ((1e6/80 + 1e6/84) / 2) / ((1e6/100 + 1e6/105) / 2)
	want2 := 1e6 / 90 / (1e6 / 100)
	if c.Refused || !near(c.Value, (want0+want2)/2) {
		t.Fatalf("cpu ratio = %+v, want %v", c, (want0+want2)/2)
	}
}

func TestRatioOddRoundsTakesMiddle(t *testing.T) {
	rule := RefusalRule{MinKeptRounds: 1, MaxDiscardFraction: 0.5}
	ss := rounds(satRound(0, 100, 50, 50, 100), satRound(1, 100, 200, 200, 100), satRound(2, 100, 70, 70, 100))
	g := DiscardRounds(ss, HAProxy, 0.10)
	r := ComputeRatio(ss, g, rule, MetricRPS, Rafter, HAProxy)
	if !near(r.Value, 0.7) || !near(r.Min, 0.5) || !near(r.Max, 2) {
		t.Fatalf("ratio = %+v, want 0.7 in [0.5, 2]", r)
	}
}

func TestRefusal(t *testing.T) {
	tests := []struct {
		name       string
		rule       RefusalRule
		slices     []Slice
		wantReason string
	}{
		{"too many rounds discarded", RefusalRule{MinKeptRounds: 1, MaxDiscardFraction: 0.5},
			rounds(satRound(0, 100, 50, 50, 200), satRound(1, 100, 50, 50, 200), satRound(2, 100, 50, 50, 100)),
			"2 of 3 rounds discarded (67% > 50% allowed)"},
		{"too few kept rounds", RefusalRule{MinKeptRounds: 2, MaxDiscardFraction: 0.5},
			rounds(satRound(0, 100, 50, 50, 200), satRound(1, 100, 50, 50, 100)),
			"only 1 of 2 rounds kept, 2 needed"},
		{"candidate failed everywhere", RefusalRule{MinKeptRounds: 1, MaxDiscardFraction: 0.5},
			func() []Slice {
				ss := rounds(satRound(0, 100, 50, 50, 100))
				ss[1].Err, ss[2].Err = "rafter exited", "rafter exited"
				return ss
			}(),
			"rafter has usable slices in only 0 kept rounds, 1 needed (rafter exited)"},
		{"nothing measured", RefusalRule{MinKeptRounds: 1}, nil, "no rounds were measured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := DiscardRounds(tt.slices, HAProxy, 0.10)
			r := ComputeRatio(tt.slices, g, tt.rule, MetricRPS, Rafter, HAProxy)
			if !r.Refused || r.Value != 0 {
				t.Fatalf("not refused: %+v", r)
			}
			if !strings.Contains(r.Reason, tt.wantReason) {
				t.Fatalf("reason %q lacks %q", r.Reason, tt.wantReason)
			}
		})
	}
}

func TestPercentileNearestRank(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 1000; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{50, 500 * time.Millisecond}, {99, 990 * time.Millisecond}, {99.9, 999 * time.Millisecond}, {100, time.Second}, {0, time.Millisecond}} {
		if got := Percentile(ds, tt.p); got != tt.want {
			t.Errorf("p%v = %v, want %v", tt.p, got, tt.want)
		}
	}
	if Percentile(nil, 50) != 0 {
		t.Error("empty percentile not 0")
	}
}

func TestPacedRate(t *testing.T) {
	ss := rounds(satRound(0, 10000, 3000, 3000, 10000))
	tests := []struct {
		name string
		frac float64
		cap  int
		want float64
	}{
		{"half the slowest", 0.5, 100000, 1500},
		{"capped", 0.5, 1000, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PacedRate(ss, []string{HAProxy, Rafter}, tt.frac, tt.cap); got != tt.want {
				t.Fatalf("rate %v, want %v", got, tt.want)
			}
		})
	}
	if got := PacedRate(nil, []string{HAProxy}, 0.5, 100); got != 1 {
		t.Fatalf("rate without data %v, want 1", got)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
