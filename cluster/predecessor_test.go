package cluster_test

import (
	"testing"
	"time"

	"github.com/rafterlb/rafter/cluster/clustertest"
)

// A new leader knows who led before it and when it last heard from that
// node: no later than the old leader's death, and not long before it.
func TestPredecessorAfterLeaderLoss(t *testing.T) {
	c := clustertest.NewCluster(t, 3)
	old := c.Leader(t)
	oldID := c.ID(old)
	if _, ok := old.Predecessor(); ok {
		t.Fatal("the first leader reports a predecessor")
	}
	for _, f := range c.Followers(old) {
		if _, ok := f.Predecessor(); ok {
			t.Fatalf("follower %s reports a predecessor", c.ID(f))
		}
	}
	for _, f := range c.Followers(old) {
		eventually(t, "follower "+c.ID(f)+" to hear from leader "+oldID, func() bool {
			st := f.Status()
			return st.Leader == oldID && !st.LastContact.IsZero()
		})
	}
	killed := time.Now()
	c.Kill(oldID)
	var next = c.Leader(t)
	eventually(t, "a new leader", func() bool {
		next = c.Leader(t)
		return c.ID(next) != oldID
	})
	// Its leadership loop records the predecessor a little after Raft's
	// state says it leads.
	eventually(t, "the new leader to report a predecessor", func() bool {
		_, ok := next.Predecessor()
		return ok || !next.IsLeader()
	})
	p, ok := next.Predecessor()
	if !ok {
		t.Fatalf("new leader %s reports no predecessor", c.ID(next))
	}
	if p.ID != oldID {
		t.Fatalf("predecessor = %q, want %q", p.ID, oldID)
	}
	if p.LastContact.After(time.Now()) || p.LastContact.Before(killed.Add(-5*time.Second)) {
		t.Fatalf("predecessor last contact %v is not shortly before the kill at %v", p.LastContact, killed)
	}
}

// A leader that loses its quorum and wins again, with no other leader in
// between, has no predecessor: the node that led before it led two terms
// ago, and its last contact says nothing about it now (a VIP controller
// would move its VIPs at once on that stale word).
func TestNoPredecessorAfterLeadingAgain(t *testing.T) {
	c := clustertest.NewCluster(t, 3)
	first := c.ID(c.Leader(t))
	for _, f := range c.Followers(c.Node(first)) {
		eventually(t, "follower "+c.ID(f)+" to hear from leader "+first, func() bool {
			return f.Status().Leader == first
		})
	}
	c.Kill(first)
	var second string
	eventually(t, "a second leader", func() bool {
		second = c.ID(c.Leader(t))
		return second != first
	})
	// The node's own leadership loop takes the term up (and records the
	// predecessor) a little after Raft's state says it leads.
	eventually(t, "the second leader "+second+" to report a predecessor", func() bool {
		_, ok := c.Node(second).Predecessor()
		return ok || !c.Node(second).IsLeader()
	})
	if p, ok := c.Node(second).Predecessor(); !ok || p.ID != first {
		t.Fatalf("second leader %s: predecessor %+v %v, want %s", second, p, ok, first)
	}
	// Cut the leader off until it steps down, then heal: with the first
	// leader dead only the two others can win. Repeat until the second
	// leader has won again at least once.
	wonAgain := 0
	for round := 0; round < 20 && wonAgain < 2; round++ {
		leader := c.ID(c.Leader(t))
		c.Partition(leader)
		eventually(t, leader+" to step down", func() bool { return !c.Node(leader).IsLeader() })
		c.Heal()
		var next string
		eventually(t, "a leader after healing", func() bool {
			n := c.Leader(t)
			next = c.ID(n)
			return n.IsLeader()
		})
		p, ok := c.Node(next).Predecessor()
		if ok && p.ID == first {
			t.Fatalf("round %d: %s leads (after %s) with predecessor %s, dead since two leaders ago", round, next, leader, first)
		}
		if next == leader {
			wonAgain++
			if ok {
				t.Fatalf("round %d: %s won again, yet reports predecessor %+v", round, next, p)
			}
		}
	}
	if wonAgain == 0 {
		t.Fatal("no leader won again in 20 rounds")
	}
}
