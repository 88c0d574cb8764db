package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cluster/clustertest"
	"github.com/rafterlb/rafter/cluster/leading"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), clustertest.WaitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or the harness deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, clustertest.WaitTimeout, what, cond)
}

// currentLeader is the running node that leads with the highest term, or nil.
func currentLeader(c *clustertest.Cluster) *cluster.Node {
	var best *cluster.Node
	var term uint64
	for _, n := range c.Nodes() {
		if st := n.Status(); st.State == "Leader" && (best == nil || st.Term > term) {
			best, term = n, st.Term
		}
	}
	return best
}

func mustApply(t testing.TB, n *cluster.Node, cmd *fsm.Command) uint64 {
	t.Helper()
	idx, err := n.Apply(ctxT(t), cmd)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return idx
}

func TestElectsLeaderAndRecordsNodes(t *testing.T) {
	c := clustertest.NewCluster(t, 3)
	leader := c.Leader(t)
	st := leader.Status()
	if st.State != "Leader" || st.Leader != st.NodeID {
		t.Fatalf("leader status = %+v", st)
	}
	if len(st.Members) != 3 {
		t.Fatalf("members = %+v, want 3", st.Members)
	}
	eventually(t, "the leader to see every member healthy", func() bool {
		for _, m := range leader.Status().Members {
			if m.Health != "healthy" {
				return false
			}
		}
		return true
	})
	// A follower vouches for itself and the leader only; the other
	// follower's health is unknown to it, not "unhealthy".
	follower := c.Followers(leader)[0]
	eventually(t, "a follower's view of health", func() bool {
		for _, m := range follower.Status().Members {
			want := "unknown"
			if m.ID == follower.Status().NodeID || m.Leader {
				want = "healthy"
			}
			if m.Health != want {
				return false
			}
		}
		return true
	})
	// Every server gets its fsm Node record from the leader, with the zone
	// and admin address forming learned.
	eventually(t, "3 node records on every node", func() bool {
		for _, n := range c.Nodes() {
			if len(n.Config().Nodes) != 3 {
				return false
			}
		}
		return true
	})
	for i, id := range c.IDs() {
		node := leader.Config().Nodes[id]
		if node.Zone != fmt.Sprintf("zone-%d", i+1) || node.AdminAddr != id+".inmem:8400" {
			t.Errorf("node record %s = %+v", id, node)
		}
	}
	for _, f := range c.Followers(leader) {
		id, addr := f.Leader()
		if id != st.NodeID || addr != st.NodeID+".inmem:8400" {
			t.Errorf("%s: Leader() = %q, %q", c.ID(f), id, addr)
		}
	}
}

func TestWritesOnlyOnLeader(t *testing.T) {
	c := clustertest.NewCluster(t, 3)
	leader := c.Leader(t)
	for _, f := range c.Followers(leader) {
		_, err := f.Apply(ctxT(t), clustertest.ListenerCommand("web", 8080))
		if !errors.Is(err, cluster.ErrNotLeader) {
			t.Errorf("%s: Apply on follower: %v, want ErrNotLeader", c.ID(f), err)
		}
		if _, err := f.ConsistentConfig(ctxT(t)); !errors.Is(err, cluster.ErrNotLeader) {
			t.Errorf("%s: ConsistentConfig on follower: %v, want ErrNotLeader", c.ID(f), err)
		}
		if err := f.VerifyLeader(ctxT(t)); !errors.Is(err, cluster.ErrNotLeader) {
			t.Errorf("%s: VerifyLeader on follower: %v, want ErrNotLeader", c.ID(f), err)
		}
		if err := f.AddVoter(ctxT(t), cluster.PeerInfo{ID: "x", RaftAddr: "x.inmem:7000"}); !errors.Is(err, cluster.ErrNotLeader) {
			t.Errorf("%s: AddVoter on follower: %v, want ErrNotLeader", c.ID(f), err)
		}
	}
}

func TestWriteVisibleOnAllNodes(t *testing.T) {
	c := clustertest.NewCluster(t, 3)
	idx := c.Apply(t, clustertest.ListenerCommand("web", 8080))
	c.WaitForIndex(t, idx)
	for _, n := range c.Nodes() {
		l := n.Config().Listeners["web"]
		if l == nil || l.Spec.Port != 8080 || l.ModifyIndex != idx {
			t.Errorf("%s: listener web = %+v, want port 8080 at index %d", c.ID(n), l, idx)
		}
	}
	cfg, err := c.Leader(t).ConsistentConfig(ctxT(t))
	if err != nil {
		t.Fatalf("ConsistentConfig: %v", err)
	}
	if cfg.Index < idx || cfg.Listeners["web"] == nil {
		t.Fatalf("ConsistentConfig index %d, want >= %d with listener web", cfg.Index, idx)
	}
}

func TestBadCommandNeverReachesLog(t *testing.T) {
	c := clustertest.NewCluster(t, 3)
	eventually(t, "node records", func() bool { return len(c.Leader(t).Config().Nodes) == 3 })
	idx := c.Apply(t, clustertest.ListenerCommand("web", 8080))
	wrongCAS := idx + 100
	zero := uint64(0)
	badSpec, _ := json.Marshal(map[string]any{"port": 0})
	tests := []struct {
		name string
		cmd  *fsm.Command
		want error
	}{
		{"invalid spec", fsm.PutCommand(fsm.Object{Kind: fsm.KindListener, Name: "bad", Spec: badSpec}, nil), fsm.ErrInvalid},
		{"delete missing", fsm.DeleteCommand(fsm.KindListener, "nope", nil), fsm.ErrNotFound},
		{"cas mismatch", fsm.PutCommand(fsm.Object{Kind: fsm.KindListener, Name: "web", Spec: json.RawMessage(`{"port":8081}`)}, &wrongCAS), fsm.ErrConflict},
		{"cas must not exist", fsm.PutCommand(fsm.Object{Kind: fsm.KindListener, Name: "web", Spec: json.RawMessage(`{"port":8081}`)}, &zero), fsm.ErrConflict},
		{"unknown version", &fsm.Command{Type: fsm.CmdPut, V: 99}, fsm.ErrUnsupportedVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A leader change appends the new leader's no-op; only a check
			// within one term says anything about this command.
			for attempt := 0; ; attempt++ {
				leader := c.Leader(t)
				before := leader.Status()
				_, err := leader.Apply(ctxT(t), tt.cmd)
				if !errors.Is(err, tt.want) {
					t.Fatalf("Apply: %v, want %v", err, tt.want)
				}
				after := leader.Status()
				if after.Term != before.Term && attempt < 3 {
					continue
				}
				if after.CommitIndex != before.CommitIndex {
					t.Fatalf("log moved: commit index %d -> %d", before.CommitIndex, after.CommitIndex)
				}
				return
			}
		})
	}
}

// TestLeaderKilledDuringWrites: every write acknowledged before, during and
// after a leader crash is on every node once the old leader is back.
func TestLeaderKilledDuringWrites(t *testing.T) {
	c := clustertest.NewCluster(t, 3)
	old := c.Leader(t)
	oldID := c.ID(old)

	var (
		mu    sync.Mutex
		acked = map[string]uint64{}
		kill  = make(chan time.Time, 1)
		gap   time.Duration
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		var killedAt time.Time
		for i := 0; i < 400 && ctx.Err() == nil; i++ {
			name := fmt.Sprintf("l%03d", i)
			deadline := time.Now().Add(clustertest.WaitTimeout)
			for {
				select {
				case killedAt = <-kill:
				default:
				}
				n := currentLeader(c)
				if n == nil {
					if time.Now().After(deadline) {
						done <- fmt.Errorf("write %s: no leader within %s", name, clustertest.WaitTimeout)
						return
					}
					time.Sleep(5 * time.Millisecond)
					continue
				}
				wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
				idx, err := n.Apply(wctx, clustertest.ListenerCommand(name, 1000+i))
				wcancel()
				if err == nil {
					mu.Lock()
					acked[name] = idx
					if !killedAt.IsZero() && gap == 0 {
						gap = time.Since(killedAt)
					}
					stop := gap != 0 && len(acked) >= 60
					mu.Unlock()
					if stop {
						done <- nil
						return
					}
					break
				}
				// A write cut off by the crash may or may not have committed:
				// it is retried under the same name (an idempotent put).
				if !errors.Is(err, cluster.ErrNotLeader) && !errors.Is(err, cluster.ErrNoLeader) &&
					!errors.Is(err, cluster.ErrTimeout) && !errors.Is(err, cluster.ErrShutdown) {
					done <- fmt.Errorf("write %s: %w", name, err)
					return
				}
				if time.Now().After(deadline) {
					done <- fmt.Errorf("write %s: no success within %s: %w", name, clustertest.WaitTimeout, err)
					return
				}
			}
		}
		done <- errors.New("writer ran out of writes before the failover finished")
	}()

	eventually(t, "20 writes before the crash", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 20
	})
	kill <- time.Now()
	c.Kill(oldID)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("leader %s killed: next write acknowledged after %s", oldID, gap)

	newLeader := c.Leader(t)
	if c.ID(newLeader) == oldID {
		t.Fatalf("killed node still leads")
	}
	c.Restart(oldID)
	var last uint64
	for _, idx := range acked {
		last = max(last, idx)
	}
	c.WaitForIndex(t, last)
	for _, n := range c.Nodes() {
		cfg := n.Config()
		for name := range acked {
			if cfg.Listeners[name] == nil {
				t.Errorf("%s: acknowledged listener %s missing", c.ID(n), name)
			}
		}
	}
}

func TestPartitionedFollowerCatchesUp(t *testing.T) {
	c := clustertest.NewCluster(t, 3)
	leader := c.Leader(t)
	lagger := c.ID(c.Followers(leader)[0])
	c.Partition(lagger)

	var last uint64
	for i := range 30 {
		last = c.Apply(t, clustertest.ListenerCommand(fmt.Sprintf("p%02d", i), 2000+i))
	}
	if got := c.Node(lagger).Config().Index; got >= last {
		t.Fatalf("partitioned follower at %d, leader wrote %d", got, last)
	}
	eventually(t, "leader sees the partitioned follower unhealthy", func() bool {
		for _, m := range c.Leader(t).Status().Members {
			if m.ID == lagger {
				return !m.Healthy
			}
		}
		return false
	})
	c.Heal()
	c.WaitForIndex(t, last)
	if c.Node(lagger).Config().Listeners["p29"] == nil {
		t.Fatal("follower caught up without the last write")
	}
	eventually(t, "every member healthy again", func() bool {
		for _, m := range c.Leader(t).Status().Members {
			if !m.Healthy {
				return false
			}
		}
		return true
	})
}

func TestLeaderElectedAfterPartitionOfLeader(t *testing.T) {
	c := clustertest.NewCluster(t, 3)
	old := c.Leader(t)
	c.Partition(c.ID(old))
	eventually(t, "a new leader on the majority side", func() bool {
		for _, f := range c.Followers(old) {
			if f.IsLeader() {
				return true
			}
		}
		return false
	})
	// The isolated leader cannot commit; its write fails rather than hangs.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := old.Apply(ctx, clustertest.ListenerCommand("lost", 9999)); err == nil {
		t.Fatal("write on the isolated leader succeeded")
	}
	c.Heal()
	eventually(t, "old leader steps down", func() bool { return !old.IsLeader() })
	leader := c.Leader(t)
	idx := mustApply(t, leader, clustertest.ListenerCommand("after", 9998))
	c.WaitForIndex(t, idx)
	for _, n := range c.Nodes() {
		if n.Config().Listeners["lost"] != nil {
			t.Errorf("%s: uncommitted write from the isolated leader is visible", c.ID(n))
		}
	}
}

func TestWatchLeadership(t *testing.T) {
	c := clustertest.NewCluster(t, 3)
	leader := c.Leader(t)
	term := leader.Status().Term
	type sub struct {
		ch     <-chan leading.Leadership
		cancel func()
	}
	subs := map[string]sub{}
	for _, n := range c.Nodes() {
		ch, cancel := n.WatchLeadership()
		subs[c.ID(n)] = sub{ch, cancel}
		want := leading.Leadership{}
		if n == leader {
			want = leading.Leadership{Leader: true, Term: term}
		}
		if got := <-ch; got != want {
			t.Errorf("%s: first value %+v, want %+v", c.ID(n), got, want)
		}
	}
	// A second subscriber on the same node gets its own copy.
	extra, cancelExtra := leader.WatchLeadership()
	if !(<-extra).Leader {
		t.Fatal("second subscriber on the leader: not leading")
	}
	cancelExtra()
	cancelExtra()
	if _, ok := <-extra; ok {
		t.Fatal("channel open after cancel")
	}

	oldID := c.ID(leader)
	c.Kill(oldID)
	if v, ok := <-subs[oldID].ch; ok && v.Leader {
		t.Fatalf("killed leader's subscriber saw %+v", v)
	}
	next := c.Leader(t)
	select {
	case v := <-subs[c.ID(next)].ch:
		if !v.Leader || v.Term <= term {
			t.Fatalf("new leader's subscriber saw %+v, want leadership in a term after %d", v, term)
		}
	case <-time.After(clustertest.WaitTimeout):
		t.Fatal("new leader's subscriber not told")
	}
	for _, s := range subs {
		s.cancel()
	}
}

func TestRemoveServer(t *testing.T) {
	c := clustertest.NewCluster(t, 3)
	leader := c.Leader(t)
	victim := c.ID(c.Followers(leader)[0])
	eventually(t, "node records", func() bool { return len(leader.Config().Nodes) == 3 })
	if err := leader.RemoveServer(ctxT(t), victim); err != nil {
		t.Fatalf("RemoveServer: %v", err)
	}
	st := leader.Status()
	if len(st.Members) != 2 {
		t.Fatalf("members after remove = %+v", st.Members)
	}
	if _, ok := leader.Config().Nodes[victim]; ok {
		t.Fatalf("node record %s kept", victim)
	}
	if err := leader.RemoveServer(ctxT(t), victim); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("second RemoveServer: %v, want ErrNotFound", err)
	}
	// Two voters left: writes still commit.
	mustApply(t, leader, clustertest.ListenerCommand("two", 8001))
}

func TestApplyHonoursContext(t *testing.T) {
	c := clustertest.NewCluster(t, 3)
	leader := c.Leader(t)
	for _, f := range c.Followers(leader) {
		c.Kill(c.ID(f))
	}
	// No quorum: the write cannot commit and the caller gets control back.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := leader.Apply(ctx, clustertest.ListenerCommand("stuck", 8002))
	if err == nil {
		t.Fatal("write without quorum succeeded")
	}
	if !errors.Is(err, cluster.ErrTimeout) && !errors.Is(err, cluster.ErrNotLeader) && !errors.Is(err, cluster.ErrNoLeader) {
		t.Fatalf("Apply without quorum: %v", err)
	}
}
