package bench

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"
)

// Measurement is what one slice produced.
type Measurement struct {
	Requests   int64   `json:"requests"`
	Errors     int64   `json:"errors"`
	Seconds    float64 `json:"seconds"`
	RPS        float64 `json:"rps"`
	OfferedRPS float64 `json:"offered_rps,omitempty"`
	// Latency percentiles of the paced client, from intended send time.
	P50Ms  float64 `json:"p50_ms,omitempty"`
	P99Ms  float64 `json:"p99_ms,omitempty"`
	P999Ms float64 `json:"p999_ms,omitempty"`
	// SatP99Ms is wrk's p99 in a saturation slice (closed loop).
	SatP99Ms float64 `json:"sat_p99_ms,omitempty"`
	// CPU of the proxy's process tree over the slice (utime+stime).
	CPUSeconds  float64 `json:"cpu_seconds"`
	CPUPerReqUs float64 `json:"cpu_us_per_request"`
	// RSSBytes is the largest resident set sampled during the slice.
	RSSBytes int64 `json:"rss_bytes"`
}

// Slice is one measured slice, kept raw in the results.
type Slice struct {
	SliceSpec
	Measurement
	StartedAt time.Time `json:"started_at"`
	Err       string    `json:"error,omitempty"`
	Discarded bool      `json:"discarded"`
}

func (s Slice) ok() bool { return s.Err == "" }

// Metric is one figure compared between proxies.
type Metric string

const (
	MetricRPS   Metric = "rps"
	MetricCPU   Metric = "cpu_us_per_request"
	MetricRSS   Metric = "rss_load_bytes"
	MetricP50   Metric = "p50_ms"
	MetricP99   Metric = "p99_ms"
	MetricP999  Metric = "p999_ms"
	MetricOffer Metric = "offered_rps"
	// MetricSatP99 is the p99 wrk saw at saturation.
	MetricSatP99 Metric = "sat_p99_ms"
)

// Metrics lists the compared figures in report order.
func Metrics() []Metric {
	return []Metric{MetricRPS, MetricCPU, MetricRSS, MetricSatP99, MetricP50, MetricP99, MetricP999}
}

// Phase is the slice kind that measures m.
func (m Metric) Phase() Phase {
	switch m {
	case MetricP50, MetricP99, MetricP999, MetricOffer:
		return Latency
	}
	return Saturation
}

// HigherIsBetter says which way a ratio above 1 points.
func (m Metric) HigherIsBetter() bool { return m == MetricRPS }

// Value extracts m from a measurement.
func (m Metric) Value(x Measurement) float64 {
	switch m {
	case MetricRPS:
		return x.RPS
	case MetricCPU:
		return x.CPUPerReqUs
	case MetricRSS:
		return float64(x.RSSBytes)
	case MetricP50:
		return x.P50Ms
	case MetricP99:
		return x.P99Ms
	case MetricP999:
		return x.P999Ms
	case MetricOffer:
		return x.OfferedRPS
	case MetricSatP99:
		return x.SatP99Ms
	}
	return math.NaN()
}

// checkMetric is the reference figure the discard rule compares within a
// round: throughput for saturation slices, the median latency for paced ones
// (their throughput is fixed by the pacing and says nothing).
// For handshakes it is the CPU per handshake: their rate is set as much by
// the client's own crypto as by the proxy.
func checkMetric(p Phase) Metric {
	switch p {
	case Latency:
		return MetricP50
	case Handshake:
		return MetricCPU
	}
	return MetricRPS
}

// Group is every slice of one phase and body size.
type Group struct {
	Phase     Phase `json:"phase"`
	BodyBytes int   `json:"body_bytes"`
	// PacedRPS is the rate of the latency slices (0 for saturation).
	PacedRPS        float64  `json:"paced_rps,omitempty"`
	Rounds          int      `json:"rounds"`
	DiscardedRounds []int    `json:"discarded_rounds"`
	DiscardedSlices int      `json:"discarded_slices"`
	Reasons         []string `json:"reasons,omitempty"`
}

// Kept is how many rounds survived the discard rule.
func (g Group) Kept() int { return g.Rounds - len(g.DiscardedRounds) }

// DiscardRounds applies the discard rule to the slices of one group (same
// phase and body size), marking Discarded in place: a round is discarded
// when the reference's two slices in it differ by more than tol of their
// mean, or when either of them failed. The whole round goes, because the
// other proxies' slices in it ran under the same disturbance.
func DiscardRounds(ss []Slice, reference string, tol float64) Group {
	var g Group
	if len(ss) == 0 {
		return g
	}
	g.Phase, g.BodyBytes = ss[0].Phase, ss[0].BodyBytes
	check := checkMetric(g.Phase)
	rounds := roundsOf(ss)
	g.Rounds = len(rounds)
	for _, r := range rounds {
		var refs []Slice
		for _, s := range ss {
			if s.Round == r && s.Proxy == reference {
				refs = append(refs, s)
			}
		}
		reason := ""
		switch {
		case len(refs) < 2:
			reason = fmt.Sprintf("round %d: %d reference slices, need 2", r, len(refs))
		case !refs[0].ok() || !refs[len(refs)-1].ok():
			reason = fmt.Sprintf("round %d: reference slice failed", r)
		default:
			a, b := check.Value(refs[0].Measurement), check.Value(refs[len(refs)-1].Measurement)
			if d := relDiff(a, b); !(d <= tol) {
				reason = fmt.Sprintf("round %d: %s %s %.4g vs %.4g differs by %.1f%% (> %.0f%%)",
					r, reference, check, a, b, 100*d, 100*tol)
			}
		}
		if reason == "" {
			continue
		}
		g.DiscardedRounds = append(g.DiscardedRounds, r)
		g.Reasons = append(g.Reasons, reason)
		for i := range ss {
			if ss[i].Round == r {
				ss[i].Discarded = true
				g.DiscardedSlices++
			}
		}
	}
	return g
}

// relDiff is |a-b| over their mean; NaN when both are zero or either is not finite.
func relDiff(a, b float64) float64 {
	m := (a + b) / 2
	if m == 0 || math.IsNaN(m) || math.IsInf(m, 0) {
		return math.NaN()
	}
	return math.Abs(a-b) / math.Abs(m)
}

func roundsOf(ss []Slice) []int {
	var rs []int
	for _, s := range ss {
		if !slices.Contains(rs, s.Round) {
			rs = append(rs, s.Round)
		}
	}
	sort.Ints(rs)
	return rs
}

// Ratio is a candidate's figure over the reference's for one metric and body size.
type Ratio struct {
	Proxy     string `json:"proxy"`
	Reference string `json:"reference"`
	Metric    Metric `json:"metric"`
	BodyBytes int    `json:"body_bytes"`
	// Value is the median of the per-round ratios of kept rounds; Min and
	// Max are their spread.
	Value  float64 `json:"value,omitempty"`
	Min    float64 `json:"min,omitempty"`
	Max    float64 `json:"max,omitempty"`
	Rounds int     `json:"rounds"`
	// Refused ratios carry no value, only the reason.
	Refused bool   `json:"refused"`
	Reason  string `json:"reason,omitempty"`
}

// RefusalRule decides when a ratio may not be reported.
type RefusalRule struct {
	MinKeptRounds      int
	MaxDiscardFraction float64
}

// Refusal returns why ratios of group g may not be reported, or "".
func (r RefusalRule) Refusal(g Group) string {
	if g.Rounds == 0 {
		return "no rounds were measured"
	}
	frac := float64(len(g.DiscardedRounds)) / float64(g.Rounds)
	if frac > r.MaxDiscardFraction {
		return fmt.Sprintf("%d of %d rounds discarded (%.0f%% > %.0f%% allowed): the reference disagreed with itself, the machine was too noisy",
			len(g.DiscardedRounds), g.Rounds, 100*frac, 100*r.MaxDiscardFraction)
	}
	if g.Kept() < r.MinKeptRounds {
		return fmt.Sprintf("only %d of %d rounds kept, %d needed", g.Kept(), g.Rounds, r.MinKeptRounds)
	}
	return ""
}

// ComputeRatio derives the ratio of candidate over reference for metric m
// from the slices of one group whose discard rule has been applied: per kept
// round, the mean of the candidate's slices over the mean of the
// reference's, then the median over rounds. Per-round ratios keep each
// comparison inside the same few seconds of machine state.
func ComputeRatio(ss []Slice, g Group, rule RefusalRule, m Metric, candidate, reference string) Ratio {
	out := Ratio{Proxy: candidate, Reference: reference, Metric: m, BodyBytes: g.BodyBytes}
	refuse := func(why string) Ratio {
		out.Refused, out.Reason, out.Value, out.Min, out.Max = true, why, 0, 0, 0
		return out
	}
	if why := rule.Refusal(g); why != "" {
		return refuse(why)
	}
	var per []float64
	for _, r := range roundsOf(ss) {
		if slices.Contains(g.DiscardedRounds, r) {
			continue
		}
		ref, okRef := meanOf(ss, r, reference, m)
		cand, okCand := meanOf(ss, r, candidate, m)
		if !okRef || !okCand {
			continue
		}
		if ref == 0 {
			return refuse(fmt.Sprintf("round %d: reference %s is zero", r, m))
		}
		per = append(per, cand/ref)
	}
	out.Rounds = len(per)
	if len(per) < rule.MinKeptRounds {
		return refuse(fmt.Sprintf("%s has usable slices in only %d kept rounds, %d needed%s",
			candidate, len(per), rule.MinKeptRounds, firstError(ss, candidate)))
	}
	sort.Float64s(per)
	out.Value, out.Min, out.Max = median(per), per[0], per[len(per)-1]
	return out
}

func firstError(ss []Slice, proxy string) string {
	for _, s := range ss {
		if s.Proxy == proxy && s.Err != "" {
			return " (" + s.Err + ")"
		}
	}
	return ""
}

// meanOf is the mean of proxy's successful values of m in round r.
func meanOf(ss []Slice, r int, proxy string, m Metric) (float64, bool) {
	var sum float64
	n := 0
	for _, s := range ss {
		if s.Round != r || s.Proxy != proxy || !s.ok() || s.Discarded {
			continue
		}
		v := m.Value(s.Measurement)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		sum += v
		n++
	}
	if n == 0 {
		return 0, false
	}
	return sum / float64(n), true
}

// Figure is one proxy's absolute figures for one body size: medians over
// kept slices (absolute numbers on a shared machine are noise; the ratios
// are the result).
type Figure struct {
	Proxy        string  `json:"proxy"`
	BodyBytes    int     `json:"body_bytes"`
	RPS          float64 `json:"rps"`
	CPUPerReqUs  float64 `json:"cpu_us_per_request"`
	RSSLoadBytes int64   `json:"rss_load_bytes"`
	RSSIdleBytes int64   `json:"rss_idle_bytes"`
	PacedRPS     float64 `json:"paced_rps,omitempty"`
	P50Ms        float64 `json:"p50_ms,omitempty"`
	P99Ms        float64 `json:"p99_ms,omitempty"`
	P999Ms       float64 `json:"p999_ms,omitempty"`
	SatP99Ms     float64 `json:"sat_p99_ms,omitempty"`
	Errors       int64   `json:"errors"`
	// FromDiscarded is set when every round was discarded and the medians
	// come from discarded slices: an indication, not a result.
	FromDiscarded bool `json:"from_discarded,omitempty"`
}

// MedianFigure is the median of m over proxy's kept, successful slices.
func MedianFigure(ss []Slice, proxy string, m Metric) (float64, bool) {
	return medianOver(ss, proxy, m, false)
}

// medianOver is MedianFigure, counting discarded slices too when withDiscarded.
func medianOver(ss []Slice, proxy string, m Metric, withDiscarded bool) (float64, bool) {
	var vs []float64
	for _, s := range ss {
		if s.Proxy == proxy && s.ok() && (withDiscarded || !s.Discarded) && m.Phase() == s.Phase {
			if v := m.Value(s.Measurement); !math.IsNaN(v) {
				vs = append(vs, v)
			}
		}
	}
	if len(vs) == 0 {
		return 0, false
	}
	sort.Float64s(vs)
	return median(vs), true
}

// median of sorted xs.
func median(xs []float64) float64 {
	n := len(xs)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// Percentile of sorted durations by the nearest-rank method.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// The epsilon keeps 99.9% of 1000 at rank 999 despite binary rounding.
	rank := int(math.Ceil(p/100*float64(len(sorted)) - 1e-9))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// PacedRate picks the latency slices' rate: frac of the slowest proxy's
// median saturation throughput, capped, and never below 1.
func PacedRate(sat []Slice, proxies []string, frac float64, capRPS int) float64 {
	slowest := math.Inf(1)
	for _, p := range proxies {
		v, ok := MedianFigure(sat, p, MetricRPS)
		if !ok {
			// Discarded rounds still say roughly how fast a proxy is.
			var vs []float64
			for _, s := range sat {
				if s.Proxy == p && s.ok() && s.RPS > 0 {
					vs = append(vs, s.RPS)
				}
			}
			if len(vs) == 0 {
				continue
			}
			sort.Float64s(vs)
			v = median(vs)
		}
		slowest = min(slowest, v)
	}
	if math.IsInf(slowest, 1) {
		return 1
	}
	return max(1, min(float64(capRPS), math.Floor(frac*slowest)))
}
