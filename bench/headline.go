package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Target is what a headline figure should reach: Op (">=" or "<=") Value,
// checked against the ratio, or against rafter's own figure when OnValue.
type Target struct {
	Op      string  `json:"op"`
	Value   float64 `json:"value"`
	OnValue bool    `json:"on_value,omitempty"`
}

// Met reports whether v reaches the target.
func (t Target) Met(v float64) bool {
	if math.IsNaN(v) {
		return false
	}
	if t.Op == "<=" {
		return v <= t.Value
	}
	return v >= t.Value
}

func (t Target) String() string {
	if t.Op == "" {
		return "–"
	}
	op := map[string]string{">=": "≥", "<=": "≤"}[t.Op]
	if t.OnValue {
		return fmt.Sprintf("rafter %s %g", op, t.Value)
	}
	return fmt.Sprintf("%s %.2f", op, t.Value)
}

// Row statuses.
const (
	StatusMet      = "yes"
	StatusNotMet   = "NO"
	StatusRefused  = "refused"
	StatusMissing  = "not measured"
	StatusNoTarget = "context"
	// StatusSuspect: a figure no real proxy can reach (more than 2x from
	// two cores), so the 1-core slices it divides by were disturbed.
	StatusSuspect = "suspect"
)

// Row is one line of the headline table. HAProxy and Rafter are absolute
// figures in Unit (NaN: none); Ratio is read as RatioOf says, with its
// spread over rounds.
type Row struct {
	Figure   string  `json:"figure"`
	Unit     string  `json:"unit"`
	HAProxy  float64 `json:"haproxy"`
	Rafter   float64 `json:"rafter"`
	Ratio    float64 `json:"ratio"`
	RatioMin float64 `json:"ratio_min"`
	RatioMax float64 `json:"ratio_max"`
	RatioOf  string  `json:"ratio_of"`
	Target   Target  `json:"target"`
	Status   string  `json:"status"`
	Reason   string  `json:"reason,omitempty"`
	// Indicative: the ratio was refused, and the one shown is over every
	// round, discarded ones included — an indication, not a result.
	Indicative bool `json:"indicative,omitempty"`
}

// withIndicative puts x, a ratio over all rounds, on a refused row.
func withIndicative(row Row, x Ratio, invert bool) Row {
	if row.Status != StatusRefused || x.Refused || !(x.Value > 0) {
		return row
	}
	row.Indicative = true
	row.Ratio, row.RatioMin, row.RatioMax = x.Value, x.Min, x.Max
	if invert {
		row.Ratio, row.RatioMin, row.RatioMax = 1/x.Value, 1/x.Max, 1/x.Min
	}
	return row
}

// allRounds is the ratio of candidate over base for m over every round of
// ss, the discard rule ignored.
func allRounds(ss []Slice, m Metric, candidate, base string) Ratio {
	ss = slices.Clone(ss)
	for i := range ss {
		ss[i].Discarded = false
	}
	g := Group{Rounds: len(roundsOf(ss))}
	if len(ss) > 0 {
		g.Phase, g.BodyBytes = ss[0].Phase, ss[0].BodyBytes
	}
	return ComputeRatio(ss, g, RefusalRule{MinKeptRounds: 1, MaxDiscardFraction: 0.99}, m, candidate, base)
}

// Targets are the goals the headline checks, by row key: the project's
// stated goals for the data plane against HAProxy (efficiency and
// requests/s at or near parity, the tail within 1.5x at saturation and
// at parity paced, 16 MiB idle, 8 KiB per idle connection, 1.8x on two
// cores; 10,000 routes applied unchanged within 300 ms and a change on
// every node within 100 ms, 50 ms for a normal configuration). TLS
// handshakes are held to parity.
type Targets map[string]Target

// DefaultTargets are the goals `make bench` reports against.
func DefaultTargets() Targets {
	return Targets{
		"cpu":             {Op: ">=", Value: 1.0},
		"rps":             {Op: ">=", Value: 0.95},
		"p99_sat":         {Op: "<=", Value: 1.5},
		"p99_paced":       {Op: "<=", Value: 1.0},
		"rss_idle":        {Op: "<=", Value: 16, OnValue: true},
		"mem_per_conn":    {Op: "<=", Value: 8, OnValue: true},
		"scaling":         {Op: ">=", Value: 1.8},
		"tls":             {Op: ">=", Value: 1.0},
		"apply_unchanged": {Op: "<=", Value: 0.3, OnValue: true},
		"prop_large":      {Op: "<=", Value: 100, OnValue: true},
		"prop_normal":     {Op: "<=", Value: 50, OnValue: true},
	}
}

// newRow fills Status from the ratio or rafter's value.
func newRow(figure, unit string, h, r float64, ratio Ratio, invert bool, ratioOf string, t Target) Row {
	row := Row{Figure: figure, Unit: unit, HAProxy: h, Rafter: r, Ratio: math.NaN(), RatioMin: math.NaN(), RatioMax: math.NaN(), RatioOf: ratioOf, Target: t}
	switch {
	case ratio.Refused:
		row.Status, row.Reason = StatusRefused, ratio.Reason
	case ratio.Value > 0:
		row.Ratio, row.RatioMin, row.RatioMax = ratio.Value, ratio.Min, ratio.Max
		if invert {
			row.Ratio, row.RatioMin, row.RatioMax = 1/ratio.Value, 1/ratio.Max, 1/ratio.Min
		}
	}
	if row.Status != "" {
		return row
	}
	v := row.Ratio
	if t.OnValue {
		v = r
	}
	switch {
	case t.Op == "" && !(math.IsNaN(row.Ratio) && math.IsNaN(r)):
		row.Status = StatusNoTarget
	case math.IsNaN(v):
		row.Status = StatusMissing
	case t.Met(v):
		row.Status = StatusMet
	default:
		row.Status = StatusNotMet
	}
	return row
}

// noRatio is a Ratio carrying nothing (figures compared by value only).
var noRatio = Ratio{}

// BuildHeadline derives the summary table from an analyzed result.
func BuildHeadline(r *Result, t Targets) []Row {
	var rows []Row
	nan := math.NaN()
	fig := func(proxy string, body int) (Figure, bool) {
		for _, f := range r.Figures {
			if f.Proxy == proxy && f.BodyBytes == body {
				return f, true
			}
		}
		return Figure{}, false
	}
	ratio := func(m Metric, body int) Ratio {
		x, ok := r.Ratio(Rafter, m, body)
		if !ok {
			return Ratio{Refused: true, Reason: "rafter or haproxy did not run"}
		}
		return x
	}
	indicative := func(m Metric, body int) Ratio {
		var ss []Slice
		for _, s := range r.Slices {
			if s.Phase == m.Phase() && s.BodyBytes == body {
				ss = append(ss, s)
			}
		}
		return allRounds(ss, m, Rafter, HAProxy)
	}
	pick := func(f Figure, ok bool, v func(Figure) float64) float64 {
		if !ok {
			return nan
		}
		return v(f)
	}
	for _, body := range r.Config.BodySizes {
		h, hok := fig(HAProxy, body)
		f, rok := fig(Rafter, body)
		b := BodyLabel(body)
		cpu := func(f Figure) float64 { return f.CPUPerReqUs }
		rows = append(rows,
			withIndicative(newRow("CPU efficiency, "+b, "µs/req", pick(h, hok, cpu), pick(f, rok, cpu), ratio(MetricCPU, body), true, "haproxy/rafter µs", t["cpu"]),
				indicative(MetricCPU, body), true),
			withIndicative(newRow("requests/s at saturation, "+b, "req/s", pick(h, hok, func(f Figure) float64 { return f.RPS }), pick(f, rok, func(f Figure) float64 { return f.RPS }),
				ratio(MetricRPS, body), false, "rafter/haproxy", t["rps"]), indicative(MetricRPS, body), false),
			withIndicative(newRow("p99 at saturation, "+b, "ms", pick(h, hok, func(f Figure) float64 { return f.SatP99Ms }), pick(f, rok, func(f Figure) float64 { return f.SatP99Ms }),
				ratio(MetricSatP99, body), false, "rafter/haproxy", t["p99_sat"]), indicative(MetricSatP99, body), false),
			withIndicative(newRow(fmt.Sprintf("p99 paced, %s", b), "ms", pick(h, hok, func(f Figure) float64 { return f.P99Ms }), pick(f, rok, func(f Figure) float64 { return f.P99Ms }),
				ratio(MetricP99, body), false, "rafter/haproxy", t["p99_paced"]), indicative(MetricP99, body), false))
	}

	idle := func(proxy string) float64 {
		for _, p := range r.Proxies {
			if p.Name == proxy && !p.Skipped && p.RSSIdleBytes > 0 {
				return float64(p.RSSIdleBytes) / (1 << 20)
			}
		}
		return nan
	}
	hi, ri := idle(HAProxy), idle(Rafter)
	rows = append(rows, newRow("idle RSS, whole process", "MiB", hi, ri, valueRatio(ri, hi), false, "rafter/haproxy", t["rss_idle"]))
	perConn := func(proxy string) (float64, string) {
		for _, c := range r.IdleConns {
			if c.Proxy == proxy {
				if c.Err != "" {
					return nan, c.Err
				}
				return c.BytesPerConn / 1024, ""
			}
		}
		return nan, ""
	}
	hc, herr := perConn(HAProxy)
	rc, rerr := perConn(Rafter)
	n := r.Config.IdleConns
	row := newRow(fmt.Sprintf("memory per idle keep-alive conn (RSS Δ / %d)", n), "KiB", hc, rc, valueRatio(rc, hc), false, "rafter/haproxy", t["mem_per_conn"])
	if herr+rerr != "" {
		row.Reason = strings.TrimSpace(herr + " " + rerr)
	}
	rows = append(rows, row)

	rows = append(rows, ScalingRows(r, t)...)

	for _, kind := range []string{CertECDSA, CertRSA} {
		figure := "TLS full handshakes per CPU-second, " + kind
		c, ok := r.comparison(TLSComparisonName(kind))
		if !ok {
			rows = append(rows, newRow(figure, "hs/CPU-s", nan, nan, noRatio, false, "", t["tls"]))
			continue
		}
		perCPU := func(v string) float64 { return 1e6 / c.Median(v, MetricCPU) }
		x, _ := c.Ratio(Rafter1, HAProxy1)
		row := withIndicative(newRow(figure, "hs/CPU-s", perCPU(HAProxy1), perCPU(Rafter1), x, true, "rafter/haproxy hs per CPU", t["tls"]),
			allRounds(c.Slices, MetricCPU, Rafter1, HAProxy1), true)
		if c.Err != "" {
			row.Status, row.Reason = StatusMissing, c.Err
		}
		rows = append(rows, row)
	}

	if cl := r.Cluster; cl != nil {
		if cl.Propagation != nil {
			rows = append(rows, newRow("propagation p99, normal config (ack → served by 3 nodes)", "ms", nan, cl.Propagation.P99Ms, noRatio, false, "", t["prop_normal"]))
		}
		if rs := cl.Routes; rs != nil {
			reason := rs.Err
			unchanged := nan
			if len(rs.UnchangedRawSeconds) > 0 {
				unchanged = rs.UnchangedSeconds
			}
			start := nan
			if rs.HAProxyStartSeconds > 0 {
				start = rs.HAProxyStartSeconds
			}
			row := newRow(fmt.Sprintf("unchanged `rafter apply -f`, %d routes (HAProxy: start with %d rules)", rs.Routes, rs.Routes), "s", start, unchanged, noRatio, false, "", t["apply_unchanged"])
			row.Reason = reason
			rows = append(rows, row)
			if p := rs.Propagation; p != nil && p.Count > 0 {
				rows = append(rows,
					newRow(fmt.Sprintf("one-route change with %d routes → 3 nodes, p50", rs.Routes), "ms", nan, p.P50Ms, noRatio, false, "", Target{}),
					newRow(fmt.Sprintf("one-route change with %d routes → 3 nodes, p99", rs.Routes), "ms", nan, p.P99Ms, noRatio, false, "", t["prop_large"]))
			} else {
				rows = append(rows, Row{Figure: fmt.Sprintf("one-route change with %d routes → 3 nodes", rs.Routes), HAProxy: nan, Rafter: nan,
					Ratio: nan, RatioMin: nan, RatioMax: nan, Target: t["prop_large"], Status: StatusMissing, Reason: reason})
			}
		}
	}
	return rows
}

// valueRatio is a single-measurement ratio a/b (no rounds, so no spread).
func valueRatio(a, b float64) Ratio {
	if math.IsNaN(a) || math.IsNaN(b) || b <= 0 || a <= 0 {
		return Ratio{}
	}
	return Ratio{Value: a / b, Min: a / b, Max: a / b, Rounds: 1}
}

func ratioValue(x Ratio) float64 {
	if x.Refused || x.Value <= 0 {
		return math.NaN()
	}
	return x.Value
}

// projectedScaling is how much of its 1-core throughput per core a proxy
// keeps at 2 cores, times 2: what the 2-core variant would serve had it
// both cores to itself and scaled as it did on the share it got.
func projectedScaling(c *Comparison, one, two string) float64 {
	perCore := func(v string) float64 { return c.Median(v, MetricRPS) / coresBusy(*c, v) }
	return 2 * perCore(two) / perCore(one)
}

// ScalingRows are the rows of the 2-core scaling comparison: the whole
// summary of a --scaling-only run.
func ScalingRows(r *Result, t Targets) []Row {
	var rows []Row
	nan := math.NaN()
	if c, ok := r.comparison(CompareScaling); ok {
		rs, _ := c.Ratio(Rafter2, Rafter1)
		hs, _ := c.Ratio(HAProxy2, HAProxy1)
		if hs.Refused {
			hs = allRounds(c.Slices, MetricRPS, HAProxy2, HAProxy1)
		}
		row := newRow("2-core scaling, req/s 2 cores ÷ 1 core (lower bound: wrk shares the 2 cores)", "×", ratioValue(hs), nan, rs, false, "rafter-2/rafter-1", t["scaling"])
		row = withIndicative(row, allRounds(c.Slices, MetricRPS, Rafter2, Rafter1), false)
		row.Rafter = row.Ratio
		if row.Ratio > 2.05 {
			starved := fmt.Sprintf("%.2f× from two cores is more than a proxy can scale: the 1-core slices were starved (other load on core %d)", row.Ratio, r.Config.ProxyCore)
			if row.Indicative {
				row.Reason += "; " + starved
			} else {
				row.Status, row.Reason = StatusSuspect, starved
			}
		}
		if c.Err != "" {
			row.Status, row.Reason = StatusMissing, c.Err
		}
		rows = append(rows, row)
		hp, rp := projectedScaling(c, HAProxy1, HAProxy2), projectedScaling(c, Rafter1, Rafter2)
		rows = append(rows, newRow("2-core scaling per proxy CPU (req/s per core used, 2 ÷ 1, × 2)", "×", hp, rp, valueRatio(rp, 1), false, "rafter", Target{}))
		// Not bounded by wrk's share of the cores: a figure near 1 means the
		// proxy pays no more per request for running on two cores, so its
		// requests/s would grow with the cores it gets.
		hc, rc := cpuGrowth(c, HAProxy1, HAProxy2), cpuGrowth(c, Rafter1, Rafter2)
		rows = append(rows, newRow("proxy CPU µs per request, 2 cores ÷ 1 core (1.00: no cost of parallelism)", "×", hc, rc, valueRatio(rc, 1), false, "rafter", Target{}))
		r2, _ := c.Ratio(Rafter2, HAProxy2)
		rows = append(rows, withIndicative(newRow("req/s at 2 cores, fixed answer", "req/s", c.Median(HAProxy2, MetricRPS), c.Median(Rafter2, MetricRPS), r2, false, "rafter/haproxy", t["rps"]),
			allRounds(c.Slices, MetricRPS, Rafter2, HAProxy2), false))
	} else {
		rows = append(rows, newRow("2-core scaling", "×", nan, nan, noRatio, false, "", t["scaling"]))
	}
	return rows
}

// cpuGrowth is the proxy's CPU per request at 2 cores over that at 1: how
// much each request costs more (locks, shared cache lines, scheduling) once
// the proxy runs in parallel.
func cpuGrowth(c *Comparison, one, two string) float64 {
	return c.Median(two, MetricCPU) / c.Median(one, MetricCPU)
}

// RenderHeadline renders rows as a Markdown table with the reasons of
// refused or missing rows beneath.
func RenderHeadline(rows []Row) string {
	var b strings.Builder
	b.WriteString("| figure | HAProxy | rafter | ratio | target | met? |\n|---|---|---|---|---|---|\n")
	var notes []string
	for _, r := range rows {
		ratio := "–"
		if !math.IsNaN(r.Ratio) {
			ratio = fmt.Sprintf("**%.2f**", r.Ratio)
			if r.Indicative {
				ratio = fmt.Sprintf("≈%.2f", r.Ratio)
			}
			if r.RatioMax-r.RatioMin > 0.005 {
				ratio += fmt.Sprintf(" (%.2f–%.2f)", r.RatioMin, r.RatioMax)
			}
			if r.RatioOf != "" {
				ratio += " " + r.RatioOf
			}
		}
		status := r.Status
		if r.Reason != "" {
			notes = append(notes, fmt.Sprintf("%s: %s", r.Figure, oneLine(r.Reason, 300)))
			status += fmt.Sprintf(" [%d]", len(notes))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.Figure, formatValue(r.HAProxy, r.Unit), formatValue(r.Rafter, r.Unit), ratio, r.Target, status)
	}
	for i, n := range notes {
		fmt.Fprintf(&b, "\n%d. %s", i+1, n)
	}
	if slices.ContainsFunc(rows, func(r Row) bool { return r.Indicative }) {
		b.WriteString("\n\n≈: the ratio was refused; the one shown is over every round, discarded ones included — an indication, not a result.")
	}
	if len(notes) > 0 {
		b.WriteString("\n")
	}
	return b.String()
}

// formatValue prints v in unit with as many digits as the unit deserves.
func formatValue(v float64, unit string) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	switch {
	case unit == "req/s" || unit == "hs/CPU-s":
		return fmt.Sprintf("%.0f %s", v, unit)
	case unit == "×":
		return fmt.Sprintf("%.2f×", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f %s", v, unit)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f %s", v, unit)
	}
	return fmt.Sprintf("%.2f %s", v, unit)
}

// rowJSON is Row with its figures as pointers, since JSON has no NaN:
// a figure not measured is null.
type rowJSON struct {
	Figure   string   `json:"figure"`
	Unit     string   `json:"unit"`
	HAProxy  *float64 `json:"haproxy"`
	Rafter   *float64 `json:"rafter"`
	Ratio    *float64 `json:"ratio"`
	RatioMin *float64 `json:"ratio_min"`
	RatioMax *float64 `json:"ratio_max"`
	RatioOf  string   `json:"ratio_of"`
	Target   Target   `json:"target"`
	Status   string   `json:"status"`
	Reason   string   `json:"reason,omitempty"`
	// Indicative is Row.Indicative.
	Indicative bool `json:"indicative,omitempty"`
}

func toPtr(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func fromPtr(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

// MarshalJSON writes figures not measured as null.
func (r Row) MarshalJSON() ([]byte, error) {
	return json.Marshal(rowJSON{Figure: r.Figure, Unit: r.Unit, HAProxy: toPtr(r.HAProxy), Rafter: toPtr(r.Rafter),
		Ratio: toPtr(r.Ratio), RatioMin: toPtr(r.RatioMin), RatioMax: toPtr(r.RatioMax), RatioOf: r.RatioOf,
		Target: r.Target, Status: r.Status, Reason: r.Reason, Indicative: r.Indicative})
}

// UnmarshalJSON reads null figures back as NaN.
func (r *Row) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var j rowJSON
	if err := dec.Decode(&j); err != nil {
		return err
	}
	*r = Row{Figure: j.Figure, Unit: j.Unit, HAProxy: fromPtr(j.HAProxy), Rafter: fromPtr(j.Rafter),
		Ratio: fromPtr(j.Ratio), RatioMin: fromPtr(j.RatioMin), RatioMax: fromPtr(j.RatioMax), RatioOf: j.RatioOf,
		Target: j.Target, Status: j.Status, Reason: j.Reason, Indicative: j.Indicative}
	return nil
}
