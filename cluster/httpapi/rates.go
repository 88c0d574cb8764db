package httpapi

import (
	"math"
	"slices"
	"sort"

	"github.com/rafterlb/rafter/api"
)

// sumStats adds up the rows pick returns of every node, by name. Latency
// histograms are added bucket by bucket when their bounds agree (every
// node runs the same data plane); a node with other bounds is left out
// of that route's latency.
func sumStats(nodes []*api.NodeStats, pick func(*api.NodeStats) []api.RequestStats) []api.RequestStats {
	byName := map[string]*api.RequestStats{}
	for _, n := range nodes {
		for _, row := range pick(n) {
			sum := byName[row.Name]
			if sum == nil {
				sum = &api.RequestStats{Name: row.Name, Requests: map[string]uint64{}}
				byName[row.Name] = sum
			}
			for class, v := range row.Requests {
				sum.Requests[class] += v
			}
			addHistogram(&sum.Latency, row.Latency)
		}
	}
	out := make([]api.RequestStats, 0, len(byName))
	for _, row := range byName {
		out = append(out, *row)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func addHistogram(sum **api.Histogram, h *api.Histogram) {
	if h == nil {
		return
	}
	if *sum == nil {
		*sum = &api.Histogram{Bounds: slices.Clone(h.Bounds), Counts: make([]uint64, len(h.Counts))}
	}
	s := *sum
	if !slices.Equal(s.Bounds, h.Bounds) || len(s.Counts) != len(h.Counts) {
		return
	}
	for i, c := range h.Counts {
		s.Counts[i] += c
	}
	s.Count += h.Count
	s.Sum += h.Sum
}

// statsDelta is what one node counted between two of its samples. A node
// whose counters went down restarted: everything it counted since is new.
func statsDelta(prev, cur *api.NodeStats, pick func(*api.NodeStats) []api.RequestStats) []api.RequestStats {
	before := map[string]api.RequestStats{}
	if prev != nil {
		for _, row := range pick(prev) {
			before[row.Name] = row
		}
	}
	out := make([]api.RequestStats, 0, len(pick(cur)))
	for _, row := range pick(cur) {
		old, ok := before[row.Name]
		d := api.RequestStats{Name: row.Name, Requests: map[string]uint64{}}
		restarted := !ok || total(row.Requests) < total(old.Requests)
		for class, v := range row.Requests {
			switch {
			case restarted:
				d.Requests[class] = v
			case v >= old.Requests[class]:
				d.Requests[class] = v - old.Requests[class]
			}
		}
		if h := row.Latency; h != nil {
			dh := &api.Histogram{Bounds: h.Bounds, Counts: slices.Clone(h.Counts), Count: h.Count, Sum: h.Sum}
			if o := old.Latency; !restarted && o != nil && slices.Equal(o.Bounds, h.Bounds) && o.Count <= h.Count {
				for i := range dh.Counts {
					if i < len(o.Counts) && o.Counts[i] <= dh.Counts[i] {
						dh.Counts[i] -= o.Counts[i]
					}
				}
				dh.Count -= o.Count
				dh.Sum -= o.Sum
			}
			d.Latency = dh
		}
		out = append(out, d)
	}
	return out
}

func total(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// rates turns what the cluster counted during window seconds into rates.
func rates(rows []api.RequestStats, window float64) []api.Rate {
	out := make([]api.Rate, 0, len(rows))
	for _, row := range rows {
		n := total(row.Requests)
		r := api.Rate{Name: row.Name, P99MS: -1}
		if window > 0 {
			r.RPS = float64(n) / window
		}
		if n > 0 {
			r.ErrorRate = float64(row.Requests["5xx"]+row.Requests["failed"]) / float64(n)
		}
		if q, ok := quantile(0.99, row.Latency); ok {
			r.P99MS = q * 1000
		}
		out = append(out, r)
	}
	return out
}

// quantile estimates the q-quantile of h as Prometheus's
// histogram_quantile does: linear interpolation inside the bucket that
// holds it; the highest finite bound when it falls in +Inf.
func quantile(q float64, h *api.Histogram) (float64, bool) {
	if h == nil || h.Count == 0 || len(h.Bounds) == 0 || len(h.Counts) != len(h.Bounds) {
		return 0, false
	}
	rank := q * float64(h.Count)
	lower, below := 0.0, uint64(0)
	for i, c := range h.Counts {
		if float64(c) >= rank {
			inBucket := c - below
			if inBucket == 0 {
				return h.Bounds[i], true
			}
			return lower + (h.Bounds[i]-lower)*(rank-float64(below))/float64(inBucket), true
		}
		lower, below = h.Bounds[i], c
	}
	return h.Bounds[len(h.Bounds)-1], true
}

// rateWindow keeps recent cluster samples of one event stream so that
// rates cover a few seconds rather than one tick's noise.
type rateWindow struct {
	samples []rateSample
	keep    float64 // seconds
}

type rateSample struct {
	at    float64 // seconds, monotonic within the stream
	nodes map[string]*api.NodeStats
}

// add records a sample taken at (seconds) and returns the rates between
// the oldest sample kept and this one.
func (w *rateWindow) add(at float64, cs api.ClusterStats) api.Rates {
	cur := rateSample{at: at, nodes: map[string]*api.NodeStats{}}
	for _, n := range cs.Nodes {
		if n.Stats != nil {
			cur.nodes[n.Node] = n.Stats
		}
	}
	w.samples = append(w.samples, cur)
	for len(w.samples) > 2 && at-w.samples[1].at >= w.keep {
		w.samples = w.samples[1:]
	}
	first := w.samples[0]
	out := api.Rates{WindowSeconds: at - first.at, Routes: []api.Rate{}, Pools: []api.Rate{}, Backends: []api.Rate{}}
	if len(w.samples) < 2 {
		return out
	}
	kinds := []func(*api.NodeStats) *[]api.RequestStats{
		func(n *api.NodeStats) *[]api.RequestStats { return &n.Routes },
		func(n *api.NodeStats) *[]api.RequestStats { return &n.Pools },
		func(n *api.NodeStats) *[]api.RequestStats { return &n.Backends },
	}
	results := []*[]api.Rate{&out.Routes, &out.Pools, &out.Backends}
	for k, field := range kinds {
		pick := func(n *api.NodeStats) []api.RequestStats { return *field(n) }
		var deltas []*api.NodeStats
		for name, st := range cur.nodes {
			prev := first.nodes[name]
			if prev == nil {
				// A node with no earlier sample (it did not answer then):
				// its counters cover more than the window, so it adds
				// nothing.
				continue
			}
			d := &api.NodeStats{}
			*field(d) = statsDelta(prev, st, pick)
			deltas = append(deltas, d)
		}
		rs := rates(sumStats(deltas, pick), out.WindowSeconds)
		for i := range rs {
			rs[i].RPS = round3(rs[i].RPS)
		}
		*results[k] = rs
	}
	return out
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
