package vip_test

import (
	"sync"
	"time"

	"github.com/rafterlb/rafter/cluster"
)

// raftLiveness is the controller tests' Liveness: a member is alive while
// the leader's Raft status shows contact within detectAfter. The agent
// judges liveness from probes (cluster/probe) instead; these tests run the
// controller over in-memory Raft nodes without probes.
type raftLiveness struct {
	node        interface{ Status() cluster.Status }
	detectAfter time.Duration

	mu    sync.Mutex
	since map[string]time.Time // when each node was last seen change state
	alive map[string]bool
}

func newRaftLiveness(node interface{ Status() cluster.Status }) *raftLiveness {
	return &raftLiveness{node: node, detectAfter: 500 * time.Millisecond, since: map[string]time.Time{}, alive: map[string]bool{}}
}

func (l *raftLiveness) Alive(id string) (bool, time.Time) {
	st := l.node.Status()
	now := time.Now()
	alive := false
	if st.State != "Shutdown" {
		if id == st.NodeID {
			alive = true
		}
		for _, m := range st.Members {
			if m.ID == id && st.State == "Leader" {
				alive = !m.LastContact.IsZero() && now.Sub(m.LastContact) < l.detectAfter
			}
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev, seen := l.alive[id]; !seen || prev != alive {
		l.alive[id], l.since[id] = alive, now
	}
	return alive, l.since[id]
}

// allAlive is a Liveness for tests that never ask it.
type allAlive struct{}

func (allAlive) Alive(string) (bool, time.Time) { return true, time.Time{} }
