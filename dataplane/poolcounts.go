package dataplane

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// latencyBounds are the upper bounds of the buckets of PoolCount.Latency;
// the last bucket holds everything slower.
var latencyBounds = [...]time.Duration{
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
	20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second,
	30 * time.Second, time.Minute,
}

// LatencyBounds returns the upper bounds of PoolCount.Latency's buckets.
func LatencyBounds() []time.Duration { return append([]time.Duration(nil), latencyBounds[:]...) }

// PoolCount is what this node answered for one (route, pool) pair since
// it started: cumulative, so a reader subtracts two readings for a window.
type PoolCount struct {
	Route, Pool string
	Requests    uint64
	// Errors counts 5xx answers, which include the 502 and 504 of a
	// backend connection that failed.
	Errors uint64
	// Latency counts requests by time to response head, in the buckets of
	// LatencyBounds plus one for slower ones.
	Latency []uint64
}

// poolCounters keeps PoolCounts outside the Prometheus vectors so the
// rollout controller can read exact figures per route and pool.
type poolCounters struct {
	m sync.Map // obsKey -> *poolCounter
}

type poolCounter struct {
	requests, errors atomic.Uint64
	latency          [len(latencyBounds) + 1]atomic.Uint64
}

func (pc *poolCounters) record(route, pool string, code int, dur time.Duration) {
	if pool == "" {
		return
	}
	pc.counter(route, pool).add(code, dur)
}

// counter returns the counter of (route, pool), made on first use. It is
// never replaced, so a caller may keep it (requestObs does).
func (pc *poolCounters) counter(route, pool string) *poolCounter {
	k := obsKey{route, pool}
	v, ok := pc.m.Load(k)
	if !ok {
		v, _ = pc.m.LoadOrStore(k, new(poolCounter))
	}
	return v.(*poolCounter)
}

func (c *poolCounter) add(code int, dur time.Duration) {
	c.requests.Add(1)
	if code >= 500 || code < 100 {
		c.errors.Add(1)
	}
	i := sort.Search(len(latencyBounds), func(i int) bool { return dur <= latencyBounds[i] })
	c.latency[i].Add(1)
}

// PoolCounts returns this node's cumulative counts of route's pools
// (every route's when route is ""), sorted by route then pool.
func (d *Dataplane) PoolCounts(route string) []PoolCount {
	var out []PoolCount
	d.counts.m.Range(func(k, v any) bool {
		key, c := k.(obsKey), v.(*poolCounter)
		if route != "" && key.route != route {
			return true
		}
		pc := PoolCount{Route: key.route, Pool: key.pool, Requests: c.requests.Load(), Errors: c.errors.Load(),
			Latency: make([]uint64, len(c.latency))}
		for i := range c.latency {
			pc.Latency[i] = c.latency[i].Load()
		}
		out = append(out, pc)
		return true
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Route != out[j].Route {
			return out[i].Route < out[j].Route
		}
		return out[i].Pool < out[j].Pool
	})
	return out
}
