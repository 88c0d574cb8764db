package cluster_test

import (
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cluster/clustertest"
)

// peerSeries maps each per-peer replication metric of reg to the peers it
// has a series for.
func peerSeries(t *testing.T, reg *prometheus.Registry) map[string]map[string]bool {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "peer" {
					if out[mf.GetName()] == nil {
						out[mf.GetName()] = map[string]bool{}
					}
					out[mf.GetName()][l.GetValue()] = true
				}
			}
		}
	}
	return out
}

// clusterWithRegistries starts n nodes, each with a registry of its own.
func clusterWithRegistries(t *testing.T, n int) (*clustertest.Cluster, map[string]*prometheus.Registry) {
	var mu sync.Mutex
	regs := map[string]*prometheus.Registry{}
	c := clustertest.NewCluster(t, n, clustertest.WithConfig(func(cfg *cluster.Config) {
		mu.Lock()
		defer mu.Unlock()
		reg := prometheus.NewRegistry()
		regs[cfg.NodeID] = reg
		cfg.Registerer = reg
	}))
	c.Leader(t)
	mu.Lock()
	defer mu.Unlock()
	return c, regs
}

const (
	heartbeatSeries = "rafter_raft_replication_heartbeat_seconds"
	appendSeries    = "rafter_raft_replication_append_seconds"
)

// A removed member's replication series leave the leader's metrics and do
// not come back with the round trips raft reports after the removal; the
// remaining follower's stay.
func TestRemovedPeerLeavesNoSeries(t *testing.T) {
	c, regs := clusterWithRegistries(t, 3)
	leader := c.Leader(t)
	reg := regs[c.ID(leader)]
	followers := c.Followers(leader)
	victim, stays := c.ID(followers[0]), c.ID(followers[1])
	c.Apply(t, clustertest.ListenerCommand("one", 8001))
	eventually(t, "series for both followers", func() bool {
		s := peerSeries(t, reg)
		return s[heartbeatSeries][victim] && s[heartbeatSeries][stays] && s[appendSeries][victim] && s[appendSeries][stays]
	})

	if err := leader.RemoveServer(ctxT(t), victim); err != nil {
		t.Fatalf("RemoveServer: %v", err)
	}
	eventually(t, "the removed member's series gone", func() bool {
		s := peerSeries(t, reg)
		return !s[heartbeatSeries][victim] && !s[appendSeries][victim]
	})
	c.Apply(t, clustertest.ListenerCommand("two", 8002))
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		s := peerSeries(t, reg)
		if s[heartbeatSeries][victim] || s[appendSeries][victim] {
			t.Fatalf("the removed member %s's series came back: %v", victim, s)
		}
		if !s[heartbeatSeries][stays] || !s[appendSeries][stays] {
			t.Fatalf("the remaining follower %s's series went: %v", stays, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A node that stops leading drops its per-peer series: they describe a
// leader's followers.
func TestFormerLeaderDropsPeerSeries(t *testing.T) {
	c, regs := clusterWithRegistries(t, 3)
	old := c.Leader(t)
	oldID := c.ID(old)
	reg := regs[oldID]
	eventually(t, "the leader's heartbeat series", func() bool { return len(peerSeries(t, reg)[heartbeatSeries]) == 2 })

	c.Partition(oldID)
	eventually(t, "a new leader", func() bool {
		n := currentLeader(c)
		return n != nil && c.ID(n) != oldID && !old.IsLeader()
	})
	eventually(t, "the former leader's per-peer series gone", func() bool { return len(peerSeries(t, reg)) == 0 })
	// The healed node may force one more election: look at whichever
	// node leads.
	c.Heal()
	eventually(t, "the leader's series for its two followers", func() bool {
		n := currentLeader(c)
		return n != nil && len(peerSeries(t, regs[c.ID(n)])[heartbeatSeries]) == 2
	})
}

// The per-peer observations must not hide a new leader's bound on its
// predecessor's last contact (PriorContact), which VIP failover uses:
// that bound is published only when no leader observation waits behind
// the new leader's, and a new leader's peer observations always follow
// its own. Both nodes left see the gap and the bound.
func TestPriorContactAfterFailoverWithPeerSeries(t *testing.T) {
	for i := 0; i < 3; i++ {
		c, _ := clusterWithRegistries(t, 3)
		old := c.ID(c.Leader(t))
		c.Kill(old)
		eventually(t, "a new leader", func() bool {
			n := currentLeader(c)
			return n != nil && c.ID(n) != old
		})
		for _, id := range c.IDs() {
			if id == old {
				continue
			}
			n := c.Node(id)
			eventually(t, id+"'s bound on "+old+"'s last contact", func() bool {
				pc, ok := n.PriorContact()
				return ok && pc.At.Before(time.Now()) && !pc.At.IsZero()
			})
		}
		c.Close()
	}
}
