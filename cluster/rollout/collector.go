package rollout

import (
	"maps"
	"slices"
	"sync"
)

// Collector keeps the latest report of every node, on the leader.
type Collector struct {
	mu    sync.Mutex
	nodes map[string]Report
}

// NewCollector returns an empty Collector.
func NewCollector() *Collector { return &Collector{nodes: map[string]Report{}} }

// Add keeps r as its node's latest report.
func (c *Collector) Add(r Report) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[r.Node] = r
}

// counts is a reading of every node's counts of one route: node -> pool.
type counts map[string]map[string]PoolCount

// read returns every node's latest counts of route.
func (c *Collector) read(route string) counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(counts, len(c.nodes))
	for node, r := range c.nodes {
		m := map[string]PoolCount{}
		for _, p := range r.Pools {
			if p.Route == route {
				m[p.Pool] = p
			}
		}
		out[node] = m
	}
	return out
}

func sortedNames[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
