package rollout

import (
	"fmt"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// window is one step's measurement on the leader: the counts of every node
// at its start, subtracted from the latest ones.
type window struct {
	token   uint64    // the status token of the step measured
	started time.Time // when this leader began the step's window
	based   bool      // base is taken (settle has passed)
	base    counts
}

// sum is one pool's counts summed over nodes.
type sum struct {
	requests, errors uint64
	latency          []uint64
}

func (s *sum) add(cur, base PoolCount) {
	d := PoolCount{Requests: cur.Requests - base.Requests, Errors: cur.Errors - base.Errors}
	if cur.Requests < base.Requests || cur.Errors < base.Errors {
		return // the node restarted; its counts from before are gone
	}
	s.requests += d.Requests
	s.errors += d.Errors
	if len(s.latency) < len(cur.Latency) {
		s.latency = append(s.latency, make([]uint64, len(cur.Latency)-len(s.latency))...)
	}
	for i, n := range cur.Latency {
		var b uint64
		if i < len(base.Latency) {
			b = base.Latency[i]
		}
		if n >= b {
			s.latency[i] += n - b
		}
	}
}

// figures sums the window of the stable and canary pools over every node
// in now. A node first heard of after the window's start counts from its
// first report.
func (w *window) figures(now counts, s *fsm.RolloutSpec, bounds []time.Duration, elapsed time.Duration) *fsm.RolloutFigures {
	var stable, canary sum
	nodes := 0
	for node, pools := range now {
		base, ok := w.base[node]
		if !ok {
			w.base[node] = pools
			continue
		}
		nodes++
		canary.add(pools[s.Canary], base[s.Canary])
		stable.add(pools[s.Stable], base[s.Stable])
	}
	f := &fsm.RolloutFigures{
		Requests: canary.requests, Errors: canary.errors,
		StableRequests: stable.requests, StableErrors: stable.errors,
		P99: fsm.Duration(quantile(canary.latency, bounds, 0.99)), StableP99: fsm.Duration(quantile(stable.latency, bounds, 0.99)),
		Window: fsm.Duration(elapsed), Nodes: nodes,
	}
	if f.Requests > 0 {
		f.ErrorRate = float64(f.Errors) / float64(f.Requests)
	}
	if all := f.Requests + f.StableRequests; all > 0 {
		f.Share = 100 * float64(f.Requests) / float64(all)
	}
	return f
}

// quantile is the upper bound of the bucket holding the q quantile of the
// histogram (the largest bound for the overflow bucket), 0 when empty.
func quantile(hist []uint64, bounds []time.Duration, q float64) time.Duration {
	var total uint64
	for _, n := range hist {
		total += n
	}
	if total == 0 || len(bounds) == 0 {
		return 0
	}
	need := uint64(q*float64(total) + 0.999999)
	var seen uint64
	for i, n := range hist {
		seen += n
		if seen >= need {
			return bounds[min(i, len(bounds)-1)]
		}
	}
	return bounds[len(bounds)-1]
}

// judge decides a step from its window: fail as soon as the window holds
// min_requests canary requests and a criterion fails; advance once the
// interval has passed with min_requests and every criterion met; else
// wait ("").
func judge(s *fsm.RolloutSpec, f *fsm.RolloutFigures, sinceStep time.Duration) (verdict, reason string) {
	minReq := uint64(s.MinRequestsOrDefault())
	if f.Requests < minReq {
		return "", ""
	}
	if max := s.MaxErrorRateOrDefault(); f.ErrorRate > max {
		return fsm.VerdictFail, fmt.Sprintf("error rate %.4f above %.4f (%d of %d canary requests)", f.ErrorRate, max, f.Errors, f.Requests)
	}
	if s.MaxP99 > 0 && f.P99 > s.MaxP99 {
		return fsm.VerdictFail, fmt.Sprintf("p99 %v above %v", f.P99.D(), s.MaxP99.D())
	}
	if r := s.MaxP99Ratio; r > 0 && f.StableRequests >= minReq && float64(f.P99) > r*float64(f.StableP99) {
		return fsm.VerdictFail, fmt.Sprintf("p99 %v above %.2f times the stable pool's %v", f.P99.D(), r, f.StableP99.D())
	}
	if sinceStep < s.Interval.D() {
		return "", ""
	}
	return fsm.VerdictAdvance, fmt.Sprintf("%d canary requests, error rate %.4f, p99 %v", f.Requests, f.ErrorRate, f.P99.D())
}
