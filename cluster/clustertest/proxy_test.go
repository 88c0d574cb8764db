package clustertest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cluster/clustertest"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

// withProxies starts 3 voters and adds 4 proxies (proxy1..proxy4).
func withProxies(t *testing.T, opts ...clustertest.Option) (*clustertest.Cluster, []string) {
	t.Helper()
	c := clustertest.NewCluster(t, 3, opts...)
	c.Leader(t)
	var proxies []string
	for i := 1; i <= 4; i++ {
		id := fmt.Sprintf("proxy%d", i)
		c.AddProxy(t, id)
		proxies = append(proxies, id)
	}
	return c, proxies
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// suffrages is the leader's view: member id -> Voter or Nonvoter.
func suffrages(n *cluster.Node) map[string]string {
	out := map[string]string{}
	for _, m := range n.Status().Members {
		out[m.ID] = m.Suffrage
	}
	return out
}

// wantRoles waits until the leader's Raft configuration and its node
// records both show exactly voters as voters and the rest as proxies.
func wantRoles(t *testing.T, c *clustertest.Cluster, voters []string) {
	t.Helper()
	testutil.Eventually(t, clustertest.WaitTimeout, "roles "+strings.Join(voters, ","), func() error {
		leader := c.Leader(t)
		for id, s := range suffrages(leader) {
			wantS, wantRole := "Nonvoter", fsm.RoleProxy
			if slices.Contains(voters, id) {
				wantS, wantRole = "Voter", fsm.RoleVoter
			}
			if s != wantS {
				return fmt.Errorf("%s is %s in status, want %s", id, s, wantS)
			}
			rec, ok := leader.Config().Nodes[id]
			if !ok || rec.Role != wantRole {
				return fmt.Errorf("%s's node record %+v, want role %s", id, rec, wantRole)
			}
		}
		return nil
	})
}

// TestProxiesFollowTheLog: with 3 voters and 4 proxies, every write
// reaches every proxy, killing every proxy changes nothing for writes, and
// restarted proxies catch up, also from a snapshot taken while they were
// down.
func TestProxiesFollowTheLog(t *testing.T) {
	// Few trailing logs: the snapshot taken below drops the entries the
	// killed proxies miss, so they must catch up from the snapshot.
	c, proxies := withProxies(t, clustertest.WithConfig(func(cfg *cluster.Config) { cfg.TrailingLogs = 8 }))
	leader := c.Leader(t)
	wantRoles(t, c, []string{"node1", "node2", "node3"})

	var nodes []*cluster.Node
	for _, id := range proxies {
		n := c.Node(id)
		if n.IsLeader() {
			t.Fatalf("proxy %s leads", id)
		}
		nodes = append(nodes, n)
	}

	// Every write reaches every proxy. (The propagation bound, p99 at most
	// 100 ms, is measured on real processes: internal/systemtest
	// TestProxyProcesses; seven nodes in one race-instrumented process on a
	// shared machine measure the scheduler more than Raft.)
	samples := propagation(t, c, nodes, 50, 0)
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	t.Logf("in-process propagation to %d proxies over 50 writes: p50 %v, max %v", len(nodes), samples[len(samples)/2], samples[len(samples)-1])
	leader = c.Leader(t)

	// Kill every proxy: the leader and its term stay, and writes go on.
	term := leader.Status().Term
	for _, id := range proxies {
		c.Kill(id)
	}
	var last uint64
	for i := range 30 {
		start := time.Now()
		idx, err := leader.Apply(ctxFor(t, 5*time.Second), clustertest.ListenerCommand(fmt.Sprintf("d%d", i), 20000+i))
		if err != nil {
			t.Fatalf("write %d with every proxy down: %v", i, err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("write %d with every proxy down took %v", i, took)
		}
		last = idx
	}
	if st := leader.Status(); st.Term != term || !leader.IsLeader() {
		t.Fatalf("leadership changed with the proxies down: term %d -> %d, leads %v", term, st.Term, leader.IsLeader())
	}
	if err := leader.TakeSnapshot(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	last = c.Apply(t, clustertest.ListenerCommand("after-snapshot", 30000))

	// Restarted proxies catch up to the same state.
	for _, id := range proxies {
		c.Restart(id)
	}
	c.WaitForIndex(t, last)
	want := leader.Config()
	for _, id := range proxies {
		got := c.Node(id).Config()
		if got.Index < want.Index || len(got.Listeners) != len(want.Listeners) {
			t.Errorf("%s after restart: index %d, %d listeners; leader index %d, %d listeners",
				id, got.Index, len(got.Listeners), want.Index, len(want.Listeners))
		}
		if _, ok := got.Listeners["after-snapshot"]; !ok {
			t.Errorf("%s after restart misses the write made after the snapshot", id)
		}
	}
	wantRoles(t, c, []string{"node1", "node2", "node3"})
}

// propagation writes n listeners through the leader, one at a time, and
// returns for each write and proxy how long after the write applied on
// the leader the proxy applied it.
func propagation(t *testing.T, c *clustertest.Cluster, nodes []*cluster.Node, n, round int) []time.Duration {
	t.Helper()
	var samples []time.Duration
	for i := range n {
		idx := c.Apply(t, clustertest.ListenerCommand(fmt.Sprintf("w%d", i%10), 10000+i+round*n))
		committed := time.Now()
		lat := make([]time.Duration, len(nodes))
		var wg sync.WaitGroup
		for j, node := range nodes {
			wg.Go(func() {
				if _, err := node.WaitForIndex(ctxFor(t, 10*time.Second), idx); err != nil {
					t.Errorf("proxy %d: index %d: %v", j, idx, err)
				}
				lat[j] = time.Since(committed)
			})
		}
		wg.Wait()
		samples = append(samples, lat...)
	}
	return samples
}

// settled calls change until the leader has been in office long enough to
// judge which members answer it (cluster.ErrTooSoon before that).
func settled(t *testing.T, change func() ([]string, error)) ([]string, error) {
	t.Helper()
	var (
		got []string
		err error
	)
	testutil.Eventually(t, clustertest.WaitTimeout, "a leader settled in office", func() error {
		got, err = change()
		if errors.Is(err, cluster.ErrTooSoon) {
			return err
		}
		return nil
	})
	return got, err
}

// notHere: err sends the caller to the leader (known or not yet).
func notHere(err error) bool {
	return errors.Is(err, cluster.ErrNotLeader) || errors.Is(err, cluster.ErrNoLeader)
}

// TestProxiesNeverMakeQuorum: with two of three voters down, four live
// proxies elect nobody, take no write and answer no consistent read; the
// voters back, writes resume under a voter.
func TestProxiesNeverMakeQuorum(t *testing.T) {
	c, proxies := withProxies(t)
	leader := c.Leader(t)
	if _, err := c.Node(proxies[0]).ConsistentConfig(ctxFor(t, 5*time.Second)); !notHere(err) {
		t.Fatalf("consistent read on a proxy: %v, want ErrNotLeader or ErrNoLeader (the API forwards it to the leader)", err)
	}
	var down []string
	for _, id := range []string{"node1", "node2", "node3"} {
		if id != c.ID(leader) && len(down) < 2 {
			down = append(down, id)
		}
	}
	down[1] = c.ID(leader) // the leader and one follower
	for _, id := range down {
		c.Kill(id)
	}
	testutil.Eventually(t, clustertest.WaitTimeout, "no leader without a voter quorum", func() error {
		for _, n := range c.Nodes() {
			if n.IsLeader() {
				return fmt.Errorf("%s leads", c.ID(n))
			}
		}
		return nil
	})
	// Well past an election timeout, still nobody leads.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range c.Nodes() {
			if n.IsLeader() {
				t.Fatalf("%s leads with %d of 3 voters down and the proxies up", c.ID(n), len(down))
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, id := range proxies {
		n := c.Node(id)
		if _, err := n.Apply(ctxFor(t, time.Second), clustertest.ListenerCommand("x", 9000)); err == nil {
			t.Fatalf("proxy %s took a write", id)
		}
		if _, err := n.ConsistentConfig(ctxFor(t, time.Second)); err == nil {
			t.Fatalf("proxy %s answered a consistent read without a quorum", id)
		}
	}
	for _, id := range down {
		c.Restart(id)
	}
	idx := c.Apply(t, clustertest.ListenerCommand("back", 9001))
	if l := c.Leader(t); strings.HasPrefix(c.ID(l), "proxy") {
		t.Fatalf("proxy %s leads", c.ID(l))
	}
	c.WaitForIndex(t, idx)
}

// TestPromoteDemoteKeepsVotersOdd walks 3 -> 5 -> 7 -> 5 -> 3 voters and
// checks every refusal on the way.
func TestPromoteDemoteKeepsVotersOdd(t *testing.T) {
	c, proxies := withProxies(t)
	voters := []string{"node1", "node2", "node3"}
	wantRoles(t, c, voters)

	refused := func(name string, err error, sentinel error, says string) {
		t.Helper()
		var fe *fsm.FieldError
		if !errors.Is(err, sentinel) || !errors.As(err, &fe) || !strings.Contains(err.Error(), says) {
			t.Fatalf("%s: %v, want %v naming a field and saying %q", name, err, sentinel, says)
		}
		wantRoles(t, c, voters)
	}
	promote := func(ids ...string) ([]string, error) {
		return settled(t, func() ([]string, error) { return c.Leader(t).Promote(ctxFor(t, 10*time.Second), ids) })
	}
	demote := func(ids ...string) ([]string, error) {
		return settled(t, func() ([]string, error) { return c.Leader(t).Demote(ctxFor(t, 10*time.Second), ids) })
	}

	_, err := promote(proxies[0])
	refused("one of 3 -> 4", err, fsm.ErrConflict, "even count")
	_, err = demote("node3")
	refused("one of 3 -> 2", err, fsm.ErrConflict, "even count")
	_, err = promote("node1", proxies[0])
	refused("a voter", err, fsm.ErrConflict, "already a voter")
	_, err = promote("nobody", proxies[0])
	refused("unknown", err, fsm.ErrNotFound, "not a member")
	_, err = promote(proxies[0], proxies[0])
	refused("twice", err, fsm.ErrInvalid, "named twice")
	_, err = promote()
	refused("none", err, fsm.ErrInvalid, "at least one")
	_, err = c.Node(proxies[0]).Promote(ctxFor(t, time.Second), []string{proxies[0], proxies[1]})
	if !notHere(err) {
		t.Fatalf("promote on a proxy: %v, want ErrNotLeader or ErrNoLeader", err)
	}

	got, err := promote(proxies[0], proxies[1])
	if err != nil {
		t.Fatalf("3 -> 5: %v", err)
	}
	voters = append(voters, proxies[0], proxies[1])
	slices.Sort(voters)
	if !slices.Equal(got, voters) {
		t.Fatalf("3 -> 5 answered voters %v, want %v", got, voters)
	}
	wantRoles(t, c, voters)

	// A proxy the leader cannot reach is not promoted.
	c.Kill(proxies[3])
	testutil.Eventually(t, clustertest.WaitTimeout, proxies[3]+" unhealthy on the leader", func() error {
		for _, m := range c.Leader(t).Status().Members {
			if m.ID == proxies[3] && !m.Healthy {
				return nil
			}
		}
		return errors.New("still healthy")
	})
	_, err = promote(proxies[2], proxies[3])
	refused("unreachable", err, fsm.ErrConflict, "has not answered the leader")
	c.Restart(proxies[3])
	testutil.Eventually(t, clustertest.WaitTimeout, proxies[3]+" healthy again", func() error {
		for _, m := range c.Leader(t).Status().Members {
			if m.ID == proxies[3] && m.Healthy {
				return nil
			}
		}
		return errors.New("not yet")
	})

	if _, err := promote(proxies[2], proxies[3]); err != nil {
		t.Fatalf("5 -> 7: %v", err)
	}
	voters = append(voters, proxies[2], proxies[3])
	wantRoles(t, c, voters)
	_, err = promote("node1")
	refused("a voter at 7", err, fsm.ErrConflict, "already a voter")

	// Demote the leader itself and one other: it steps down once the
	// change commits, a voter leads after it, and the count is 5.
	old := c.Leader(t)
	oldID := c.ID(old)
	other := "node1"
	if oldID == other {
		other = "node2"
	}
	if _, err := settled(t, func() ([]string, error) { return old.Demote(ctxFor(t, 10*time.Second), []string{oldID, other}) }); err != nil {
		t.Fatalf("7 -> 5 with the leader: %v", err)
	}
	voters = slices.DeleteFunc(voters, func(id string) bool { return id == oldID || id == other })
	wantRoles(t, c, voters)
	// The old leader answers the change before it steps down.
	testutil.Eventually(t, clustertest.WaitTimeout, "a voter to lead", func() error {
		if l := c.Leader(t); !slices.Contains(voters, c.ID(l)) {
			return fmt.Errorf("%s leads but is not a voter", c.ID(l))
		}
		return nil
	})
	// Demoted, the old leader is a proxy: it follows the log.
	idx := c.Apply(t, clustertest.ListenerCommand("after-demote", 9101))
	testutil.Eventually(t, clustertest.WaitTimeout, "the demoted leader to follow the log", func() error {
		if got := old.Config().Index; got < idx {
			return fmt.Errorf("%s, demoted from leader, is at index %d, want %d", oldID, got, idx)
		}
		return nil
	})
	if _, err := demote(voters[0], voters[1]); err != nil {
		t.Fatalf("5 -> 3: %v", err)
	}
	voters = voters[2:]
	wantRoles(t, c, voters)
	c.Apply(t, clustertest.ListenerCommand("after", 9100))
}
