package bench

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

func metricLabel(m Metric) string {
	switch m {
	case MetricRPS:
		return "requests/s (↑)"
	case MetricCPU:
		return "CPU µs/request (↓)"
	case MetricRSS:
		return "RSS under load (↓)"
	case MetricP50:
		return "p50 latency (↓)"
	case MetricP99:
		return "p99 latency (↓)"
	case MetricP999:
		return "p99.9 latency (↓)"
	case MetricSatP99:
		return "p99 at saturation (↓)"
	}
	return string(m)
}

// BodyLabel prints a body size the way the report names it.
func BodyLabel(n int) string {
	switch {
	case n >= 1024 && n%1024 == 0:
		return fmt.Sprintf("%d KiB", n/1024)
	default:
		return fmt.Sprintf("%d B", n)
	}
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// Summary renders r as Markdown: headline ratios first, then the absolute
// medians, the discard accounting, the cluster figures and what was left out.
func Summary(r *Result) string {
	var b strings.Builder
	ref := r.Config.Reference
	fmt.Fprintf(&b, "# rafter benchmark %s (%s)\n\n", r.StartedAt.Format("2006-01-02 15:04 UTC"), r.GitSHA)
	fmt.Fprintf(&b, "Machine: %s, %d CPUs, %s, kernel %s, %s.  \n", r.Machine.CPUModel, r.Machine.CPUs, r.Machine.OS, r.Machine.Kernel, r.Machine.GoVersion)
	for _, p := range r.Proxies {
		if !p.Skipped {
			fmt.Fprintf(&b, "%s: %s.  \n", p.Name, p.Version)
		}
	}
	fmt.Fprintf(&b, "\nEach proxy on core %d (one worker/thread, rafter with GOMAXPROCS=1); backend, wrk and the paced client on core %d. ",
		r.Config.ProxyCore, r.Config.LoadCore)
	fmt.Fprintf(&b, "Rounds interleave A-B-…-B-A; a round is discarded when %s's two slices in it differ by more than %.0f%%.\n\n",
		ref, 100*r.Config.DiscardTolerance)

	var cands []string
	for _, p := range r.activeProxies() {
		if p != ref {
			cands = append(cands, p)
		}
	}
	fmt.Fprintf(&b, "## Ratios against %s\n\n", ref)
	b.WriteString("Median over kept rounds of the per-round ratio candidate/" + ref + " (min–max). 1.00 = same as " + ref + ".\n\n")
	b.WriteString("| body | figure |")
	for _, c := range cands {
		fmt.Fprintf(&b, " %s/%s |", c, ref)
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---|", len(cands)) + "\n")
	var refusals []string
	for _, body := range r.Config.BodySizes {
		for _, m := range Metrics() {
			fmt.Fprintf(&b, "| %s | %s |", BodyLabel(body), metricLabel(m))
			for _, c := range cands {
				x, ok := r.Ratio(c, m, body)
				switch {
				case !ok:
					b.WriteString(" – |")
				case x.Refused:
					refusals = append(refusals, fmt.Sprintf("%s %s %s: %s", c, BodyLabel(body), m, x.Reason))
					fmt.Fprintf(&b, " refused [%d] |", len(refusals))
				default:
					fmt.Fprintf(&b, " **%.2f** (%.2f–%.2f) |", x.Value, x.Min, x.Max)
				}
			}
			b.WriteString("\n")
		}
	}
	if len(refusals) > 0 {
		b.WriteString("\nRatios not reported:\n\n")
		for i, s := range refusals {
			fmt.Fprintf(&b, "%d. %s\n", i+1, s)
		}
	}

	b.WriteString("\n## Absolute figures (medians of kept slices; on a shared machine only the ratios mean much)\n\n")
	b.WriteString("| proxy | body | req/s | CPU µs/req | p99 sat ms | paced at req/s | p50 ms | p99 ms | p99.9 ms | RSS idle | RSS load | errors |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	marked := false
	for _, f := range r.Figures {
		name := f.Proxy
		if f.FromDiscarded {
			name, marked = name+" *", true
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.2f | %.3f | %.0f | %.3f | %.3f | %.3f | %s | %s | %d |\n",
			name, BodyLabel(f.BodyBytes), f.RPS, f.CPUPerReqUs, f.SatP99Ms, f.PacedRPS, f.P50Ms, f.P99Ms, f.P999Ms,
			mib(f.RSSIdleBytes), mib(f.RSSLoadBytes), f.Errors)
	}

	if marked {
		b.WriteString("\n\\* some figures of this row come from discarded rounds only: an indication, not a result.\n")
	}
	b.WriteString("\n## Discarded rounds\n\n| phase | body | rounds | discarded rounds | discarded slices |\n|---|---|---|---|---|\n")
	var reasons []string
	for _, g := range r.Groups {
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d |\n", g.Phase, BodyLabel(g.BodyBytes), g.Rounds, len(g.DiscardedRounds), g.DiscardedSlices)
		for _, why := range g.Reasons {
			reasons = append(reasons, fmt.Sprintf("%s %s %s", g.Phase, BodyLabel(g.BodyBytes), why))
		}
	}
	if len(reasons) > 0 {
		b.WriteString("\n")
		for _, s := range reasons {
			fmt.Fprintf(&b, "- %s\n", s)
		}
	}

	b.WriteString("\n## Cluster (three rafter nodes on 127.0.0.1-3)\n\n")
	switch c := r.Cluster; {
	case c == nil:
		b.WriteString("- not run\n")
	default:
		if c.Propagation != nil {
			p := c.Propagation
			fmt.Fprintf(&b, "- Config propagation (write acknowledged → served by all 3 nodes): p50 %.2f ms, p99 %.2f ms, max %.2f ms over %d writes (%d timed out)\n",
				p.P50Ms, p.P99Ms, p.MaxMs, p.Count, p.Timeouts)
		}
		if c.Apply != nil {
			a := c.Apply
			fmt.Fprintf(&b, "- Raft apply throughput: %.0f writes/s with %d concurrent writers (ack p50 %.2f ms, p99 %.2f ms; %d writes, %d errors)\n",
				a.WritesPerSec, a.Workers, a.P50Ms, a.P99Ms, a.Writes, a.Errors)
		}
		if c.Err != "" {
			fmt.Fprintf(&b, "- error: %s\n", oneLine(c.Err, 400))
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}

	var skipped []string
	for _, p := range r.Proxies {
		if p.Skipped {
			skipped = append(skipped, fmt.Sprintf("- %s: %s", p.Name, oneLine(p.Reason, 400)))
		}
	}
	if len(skipped) > 0 {
		b.WriteString("\n## Left out\n\n" + strings.Join(skipped, "\n") + "\n")
	}
	b.WriteString(comparisonsSection(r))
	fmt.Fprintf(&b, "\n## Summary against %s (same run)\n\n", ref)
	b.WriteString(RenderHeadline(r.Headline))
	fmt.Fprintf(&b, "\nRun took %.0f s. Raw slices: the JSON file; chart: %s.\n", r.Elapsed, r.Chart)
	return b.String()
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// comparisonsSection lists the TLS and scaling comparisons: how they were
// arranged, every variant's medians and the discard accounting.
func comparisonsSection(r *Result) string {
	var b strings.Builder
	if len(r.IdleConns) > 0 {
		b.WriteString("\n## Idle keep-alive connections\n\n| proxy | connections | RSS before | RSS with them open | per connection |\n|---|---|---|---|---|\n")
		for _, c := range r.IdleConns {
			if c.Err != "" {
				fmt.Fprintf(&b, "| %s | %d | – | – | error: %s |\n", c.Proxy, c.Conns, oneLine(c.Err, 200))
				continue
			}
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %.1f KiB |\n", c.Proxy, c.Conns, mib(c.RSSBeforeBytes), mib(c.RSSAfterBytes), c.BytesPerConn/1024)
		}
	}
	for _, c := range r.Comparisons {
		fmt.Fprintf(&b, "\n## %s\n\n", c.Name)
		for _, n := range c.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		if c.Err != "" {
			fmt.Fprintf(&b, "- error: %s\n", oneLine(c.Err, 400))
			continue
		}
		unit := "req/s"
		if c.Phase == Handshake {
			unit = "handshakes/s"
		}
		fmt.Fprintf(&b, "\n| variant | %s | proxy CPU µs each | proxy cores busy |\n|---|---|---|---|\n", unit)
		for _, v := range c.Variants {
			fmt.Fprintf(&b, "| %s | %.0f | %.2f | %.2f |\n", v, c.Median(v, MetricRPS), c.Median(v, MetricCPU), coresBusy(c, v))
		}
		fmt.Fprintf(&b, "\nRounds %d, discarded %d.", c.Group.Rounds, len(c.Group.DiscardedRounds))
		for _, why := range c.Group.Reasons {
			fmt.Fprintf(&b, " %s.", why)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// coresBusy is the median share of a core the variant's process used in its slices.
// Discarded slices count when every round was discarded, as in Median.
func coresBusy(c Comparison, v string) float64 {
	for _, withDiscarded := range []bool{false, true} {
		var xs []float64
		for _, s := range c.Slices {
			if s.Proxy == v && s.ok() && (withDiscarded || !s.Discarded) && s.Seconds > 0 {
				xs = append(xs, s.CPUSeconds/s.Seconds)
			}
		}
		if len(xs) > 0 {
			slices.Sort(xs)
			return median(xs)
		}
	}
	return math.NaN()
}
