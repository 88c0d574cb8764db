package bench

import (
	"context"
	"log/slog"
	"math"
	"slices"
	"sort"
)

// More slice kinds, measured outside the body-size matrix.
const (
	// Handshake: new TLS connections, each a full handshake, nothing else.
	Handshake Phase = "handshake"
	// Scaling: saturation of a fixed answer (no backend) at 1 and 2 cores.
	Scaling Phase = "scaling"
)

// Comparison is one side-by-side measurement outside the body-size matrix
// (TLS handshakes per certificate kind, 2-core scaling): its own
// interleaved rounds, discard rule and ratios, computed like the main ones.
type Comparison struct {
	Name      string   `json:"name"`
	Phase     Phase    `json:"phase"`
	Reference string   `json:"reference"`
	Variants  []string `json:"variants"`
	// Pairs are the ratios computed, each candidate over its base.
	Pairs  [][2]string `json:"pairs"`
	Slices []Slice     `json:"slices"`
	Group  Group       `json:"group"`
	Ratios []Ratio     `json:"ratios"`
	// Notes say how the comparison was arranged.
	Notes []string `json:"notes,omitempty"`
	Err   string   `json:"error,omitempty"`
}

// RunComparison measures variants in rounds of A-B-…-B-A with reference
// first and last, then analyzes them (see Comparison.Analyze).
func RunComparison(ctx context.Context, c Comparison, rounds int, measure func(context.Context, SliceSpec) (Measurement, error), now Clock, log *slog.Logger) Comparison {
	specs := Schedule(c.Phase, 0, c.Variants, c.Reference, rounds)
	c.Slices = runSpecs(ctx, specs, measure, now, log)
	return c
}

// Analyze applies the discard rule with tol and fills Group and Ratios:
// for every pair, the metric of the phase (requests/s for scaling, CPU per
// handshake for handshakes) of the candidate over its base.
func (c *Comparison) Analyze(tol float64, rule RefusalRule) {
	for i := range c.Slices {
		c.Slices[i].Discarded = false
	}
	c.Group = DiscardRounds(c.Slices, c.Reference, tol)
	c.Ratios = nil
	m := checkMetric(c.Phase)
	for _, p := range c.Pairs {
		c.Ratios = append(c.Ratios, ComputeRatio(c.Slices, c.Group, rule, m, p[0], p[1]))
	}
}

// Ratio is the computed ratio of candidate over base, if any.
func (c *Comparison) Ratio(candidate, base string) (Ratio, bool) {
	for _, x := range c.Ratios {
		if x.Proxy == candidate && x.Reference == base {
			return x, true
		}
	}
	return Ratio{}, false
}

// Median is the median of m over variant's kept, successful slices; when
// every round was discarded, over the discarded ones (NaN if none at all).
func (c *Comparison) Median(variant string, m Metric) float64 {
	for _, withDiscarded := range []bool{false, true} {
		var vs []float64
		for _, s := range c.Slices {
			if s.Proxy == variant && s.ok() && (withDiscarded || !s.Discarded) {
				if v := m.Value(s.Measurement); !math.IsNaN(v) {
					vs = append(vs, v)
				}
			}
		}
		if len(vs) > 0 {
			sort.Float64s(vs)
			return median(vs)
		}
	}
	return math.NaN()
}

// comparison finds a comparison of r by name.
func (r *Result) comparison(name string) (*Comparison, bool) {
	i := slices.IndexFunc(r.Comparisons, func(c Comparison) bool { return c.Name == name })
	if i < 0 {
		return nil, false
	}
	return &r.Comparisons[i], true
}
