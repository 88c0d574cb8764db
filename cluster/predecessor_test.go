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
