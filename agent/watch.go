package agent

import (
	"context"
	"reflect"
	"sync"

	"github.com/rafterlb/rafter/fsm"
)

// poolUpdater is the health monitor as the watch loop feeds it.
type poolUpdater interface {
	Update(pools map[string]fsm.PoolSpec)
}

// watcher is the node's one loop over configuration changes. For each new
// configuration it feeds, in order, the health monitor (so a new backend
// has a health state before it can be routed to) and then the data plane,
// which it serves as a dataplane.ConfigSource that signals only when
// something the data plane reads has changed: VIP settles, lease grants
// and node records are Raft writes that leave the routing table as it is.
type watcher struct {
	src    fsm.Source
	health poolUpdater

	mu      sync.Mutex
	cur     *fsm.Config   // the configuration the data plane compiles
	changed chan struct{} // closed when cur is replaced
	seen    *fsm.Config   // the last configuration read from src (written by step only)
}

// newWatcher reads src's current configuration and feeds it at once, so
// the data plane starts from it.
func newWatcher(src fsm.Source, health poolUpdater) *watcher {
	w := &watcher{src: src, health: health, changed: make(chan struct{})}
	w.step(src.Config())
	return w
}

// Snapshot is the configuration the data plane should serve.
func (w *watcher) Snapshot() *fsm.Config {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur
}

// Changed is closed when Snapshot changes after the call.
func (w *watcher) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

// indexes reports the index of the newest configuration the watcher has
// seen and of the newest one it handed to the data plane (entries in
// between changed nothing the data plane reads).
func (w *watcher) indexes() (seen, handed uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen != nil {
		seen = w.seen.Index
	}
	if w.cur != nil {
		handed = w.cur.Index
	}
	return seen, handed
}

// Run follows src until ctx is done.
func (w *watcher) Run(ctx context.Context) {
	for {
		ch := w.src.Changed()
		w.step(w.src.Config())
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

// step hands c to the health monitor and, when it changes what the data
// plane reads, to the data plane. seen moves to c only once both are done,
// and under the same lock as cur: a reader of indexes (the config-lag
// metric) must never see c as seen while the data plane has not been
// given it, or it would count the data plane as current with c.
func (w *watcher) step(c *fsm.Config) {
	if c == nil {
		return
	}
	// Only step writes seen, and step runs on one goroutine at a time
	// (newWatcher, then Run).
	w.mu.Lock()
	prev := w.seen
	w.mu.Unlock()
	if prev != nil && prev.Index == c.Index {
		return
	}
	if prev == nil || !sameMap(prev.Pools, c.Pools) {
		pools := make(map[string]fsm.PoolSpec, len(c.Pools))
		for name, p := range c.Pools {
			pools[name] = p.Spec
		}
		w.health.Update(pools)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = c
	if prev != nil && !dataplaneChanged(prev, c) {
		return
	}
	w.cur = c
	close(w.changed)
	w.changed = make(chan struct{})
}

// dataplaneChanged reports whether b differs from a in what the data plane
// reads. fsm copies a map only when a command changes it and shares the
// rest, so an untouched map is the same map in both.
func dataplaneChanged(a, b *fsm.Config) bool {
	return !sameMap(a.Listeners, b.Listeners) || !sameMap(a.Routes, b.Routes) ||
		!sameMap(a.Pools, b.Pools) || !sameMap(a.VIPs, b.VIPs) || !sameMap(a.Zones, b.Zones) ||
		!sameMap(a.ACMEChallenges, b.ACMEChallenges) || tlsChanged(a, b)
}

// tlsChanged: the certificates, their issued material or the session
// ticket keys, which the data plane's TLS reads, differ.
func tlsChanged(a, b *fsm.Config) bool {
	return !sameMap(a.Certificates, b.Certificates) || !sameMap(a.CertificateStatus, b.CertificateStatus) ||
		a.TicketKeys != b.TicketKeys
}

func sameMap[K comparable, V any](a, b map[K]V) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}
