package bench

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"
)

func proxiesOf(ss []SliceSpec) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Proxy)
	}
	return out
}

func TestScheduleInterleaving(t *testing.T) {
	tests := []struct {
		name      string
		proxies   []string
		reference string
		rounds    int
		want      []string
	}{
		{"two proxies ABBA", []string{"a", "b"}, "a", 1, []string{"a", "b", "b", "a"}},
		{"two proxies repeated", []string{"a", "b"}, "a", 2, []string{"a", "b", "b", "a", "a", "b", "b", "a"}},
		{"three proxies mirrored", []string{HAProxy, Nginx, Rafter}, HAProxy, 1,
			[]string{HAProxy, Nginx, Rafter, Rafter, Nginx, HAProxy}},
		{"reference listed last still opens the round", []string{Nginx, Rafter, HAProxy}, HAProxy, 1,
			[]string{HAProxy, Nginx, Rafter, Rafter, Nginx, HAProxy}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Schedule(Saturation, 1024, tt.proxies, tt.reference, tt.rounds)
			if !slices.Equal(proxiesOf(got), tt.want) {
				t.Fatalf("order = %v, want %v", proxiesOf(got), tt.want)
			}
			per := len(got) / tt.rounds
			for i, s := range got {
				if s.Round != i/per || s.Pos != i%per || s.Phase != Saturation || s.BodyBytes != 1024 {
					t.Fatalf("slice %d = %+v", i, s)
				}
			}
			// Every proxy twice per round; the reference opens and closes it.
			for r := 0; r < tt.rounds; r++ {
				round := got[r*per : (r+1)*per]
				if round[0].Proxy != tt.reference || round[per-1].Proxy != tt.reference {
					t.Fatalf("round %d does not start and end with the reference: %v", r, proxiesOf(round))
				}
				for _, p := range tt.proxies {
					if n := countOf(proxiesOf(round), p); n != 2 {
						t.Fatalf("round %d: %s runs %d times", r, p, n)
					}
				}
			}
		})
	}
}

func countOf(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

// fakeMeasurer returns figures from a table and records the calls.
type fakeMeasurer struct {
	calls []string
	rates []float64
	rps   map[string]float64
	fail  map[string]bool
}

func (f *fakeMeasurer) Saturation(_ context.Context, proxy string, body int) (Measurement, error) {
	f.calls = append(f.calls, "sat:"+proxy)
	if f.fail[proxy] {
		return Measurement{}, errors.New("boom")
	}
	return Measurement{RPS: f.rps[proxy], Requests: int64(f.rps[proxy]), CPUPerReqUs: 1e6 / f.rps[proxy]}, nil
}

func (f *fakeMeasurer) Latency(_ context.Context, proxy string, body int, rate float64) (Measurement, error) {
	f.calls = append(f.calls, "lat:"+proxy)
	f.rates = append(f.rates, rate)
	return Measurement{P50Ms: 1, P99Ms: 2, P999Ms: 3, OfferedRPS: rate}, nil
}

func TestRunSuiteFollowsScheduleAndPacesBelowSlowest(t *testing.T) {
	cfg := DefaultConfig()
	cfg.BodySizes = []int{0, 1024}
	cfg.SaturationRounds, cfg.LatencyRounds = 2, 1
	proxies := []string{HAProxy, Nginx}
	f := &fakeMeasurer{rps: map[string]float64{HAProxy: 10000, Nginx: 8000}}
	fixed := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ss, groups := RunSuite(context.Background(), cfg, proxies, f, func() time.Time { return fixed },
		slog.New(slog.NewTextHandler(io.Discard, nil)))

	var want []string
	for range cfg.BodySizes {
		for _, s := range Schedule(Saturation, 0, proxies, HAProxy, 2) {
			want = append(want, "sat:"+s.Proxy)
		}
		for _, s := range Schedule(Latency, 0, proxies, HAProxy, 1) {
			want = append(want, "lat:"+s.Proxy)
		}
	}
	if !slices.Equal(f.calls, want) {
		t.Fatalf("calls = %v\nwant    %v", f.calls, want)
	}
	if len(ss) != len(want) {
		t.Fatalf("%d slices, want %d", len(ss), len(want))
	}
	// A quarter of the slower proxy's 8000.
	for _, r := range f.rates {
		if r != 2000 {
			t.Fatalf("paced rate %v, want 2000", r)
		}
	}
	if len(groups) != 2 || groups[0].PacedRPS != 2000 || groups[0].Phase != Latency {
		t.Fatalf("groups = %+v", groups)
	}
	if !ss[0].StartedAt.Equal(fixed) {
		t.Fatalf("clock not used: %v", ss[0].StartedAt)
	}
}

func TestRunSuiteRecordsFailedSlices(t *testing.T) {
	cfg := DefaultConfig()
	cfg.BodySizes = []int{0}
	cfg.SaturationRounds, cfg.LatencyRounds = 1, 1
	f := &fakeMeasurer{rps: map[string]float64{HAProxy: 10000, Rafter: 5000}, fail: map[string]bool{Rafter: true}}
	ss, _ := RunSuite(context.Background(), cfg, []string{HAProxy, Rafter}, f, time.Now,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	failed := 0
	for _, s := range ss {
		if s.Err != "" {
			failed++
			if s.Proxy != Rafter {
				t.Fatalf("failure recorded on %s", s.Proxy)
			}
		}
	}
	if failed != 2 {
		t.Fatalf("%d failed slices, want 2", failed)
	}
	// The rate comes from the proxies that did measure.
	if f.rates[0] != 2500 {
		t.Fatalf("rate %v, want 2500", f.rates[0])
	}
}

func TestRunSuiteStopsWhenCancelled(t *testing.T) {
	cfg := DefaultConfig()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f := &fakeMeasurer{rps: map[string]float64{HAProxy: 1, Nginx: 1}}
	ss, _ := RunSuite(ctx, cfg, []string{HAProxy, Nginx}, f, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if len(ss) != 0 || len(f.calls) != 0 {
		t.Fatalf("ran %d slices after cancel", len(ss))
	}
}
