//go:build linux

package netns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

func poolSpec(name string) []byte {
	return []byte(fmt.Sprintf(`{"backends":[{"addr":"%s.invalid:80"}]}`, name))
}

// put writes pool name through node n and reports whether the write was
// acknowledged (200 with an index).
func put(r *Rig, n *Node, name string, within time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	resp, err := r.API(ctx, n, http.MethodPut, "/v1/pools/"+name, poolSpec(name))
	if err != nil {
		return false, err
	}
	if resp.Status != http.StatusOK {
		return false, fmt.Errorf("PUT pool %s on %s: %d %s", name, n.Name, resp.Status, resp.Body)
	}
	return true, nil
}

// putAny retries pool name on each of nodes until one acknowledges it or
// within passes; it returns when the acknowledgement came.
func putAny(t *testing.T, r *Rig, nodes []*Node, name string, within time.Duration) time.Time {
	t.Helper()
	return putAnyEach(t, r, nodes, name, within, 3*time.Second)
}

// putAnyEach is putAny with each attempt bounded by each, so a request that
// hangs on a lost peer does not hide how soon another attempt succeeds.
func putAnyEach(t *testing.T, r *Rig, nodes []*Node, name string, within, each time.Duration) time.Time {
	t.Helper()
	var at time.Time
	testutil.Eventually(t, within, "write "+name+" to be acknowledged", func() error {
		var errs []error
		for _, n := range nodes {
			ok, err := put(r, n, name, each)
			if ok {
				at = time.Now()
				return nil
			}
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
	return at
}

// pools reads the pool names in node n's local copy of the document.
func pools(r *Rig, n *Node) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := r.API(ctx, n, http.MethodGet, "/v1/config?format=json", nil)
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/config on %s: %d %s", n.Name, resp.Status, resp.Body)
	}
	var objs []struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(resp.Body, &objs); err != nil {
		return nil, fmt.Errorf("decoding config of %s: %w", n.Name, err)
	}
	got := map[string]bool{}
	for _, o := range objs {
		if o.Kind == "pool" {
			got[o.Name] = true
		}
	}
	return got, nil
}

// requireAcked waits until every node in nodes holds every acknowledged write.
func requireAcked(t *testing.T, r *Rig, nodes []*Node, acked []string) {
	t.Helper()
	for _, n := range nodes {
		testutil.Eventually(t, 60*time.Second, "node "+n.Name+" to hold every acknowledged write", func() error {
			got, err := pools(r, n)
			if err != nil {
				return err
			}
			var missing []string
			for _, name := range acked {
				if !got[name] {
					missing = append(missing, name)
				}
			}
			if len(missing) > 0 {
				sort.Strings(missing)
				return fmt.Errorf("%d of %d acknowledged writes missing, e.g. %s", len(missing), len(acked), missing[0])
			}
			return nil
		})
	}
}

func others(r *Rig, not *Node) []*Node {
	var out []*Node
	for _, n := range r.Nodes {
		if n != not {
			out = append(out, n)
		}
	}
	return out
}

// TestClusterFormsAcrossNamespaces checks the rig itself (addresses, bridge,
// partition rules, address sampling) and that three agents in three
// namespaces form one cluster every node of which answers the client.
func TestClusterFormsAcrossNamespaces(t *testing.T) {
	r := newCluster(t, 3)
	leader := r.Leader(60 * time.Second)

	for _, n := range r.Nodes {
		testutil.Eventually(t, 30*time.Second, n.Name+" to report leader "+leader.Name, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			resp, err := r.API(ctx, n, http.MethodGet, "/v1/status", nil)
			if err != nil {
				return err
			}
			if resp.Status != http.StatusOK {
				return fmt.Errorf("status %d: %s", resp.Status, resp.Body)
			}
			var st testutil.Status
			if err := json.Unmarshal(resp.Body, &st); err != nil {
				return err
			}
			if st.NodeID != n.Name {
				return fmt.Errorf("answered as %q", st.NodeID)
			}
			if resp.Leader == "" {
				return errors.New("no X-Rafter-Leader yet")
			}
			return nil
		})
	}

	// The node addresses exist only in their own namespaces.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	samples := r.SampleAddresses(ctx, 100*time.Millisecond, r.Nodes[0].IP)
	cancel()
	if len(samples) == 0 {
		t.Fatal("no address samples")
	}
	for _, s := range samples {
		if s.Err != nil || len(s.Holders) != 1 || s.Holders[0] != "n1" {
			t.Fatalf("sample of %s: holders %v, err %v; want only n1", r.Nodes[0].IP, s.Holders, s.Err)
		}
	}

	// A partition drops traffic between groups and nothing else.
	dial := func(from string, to *Node) error {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		c, err := r.DialFrom(ctx, from, "tcp", to.AdminAddr())
		if err == nil {
			c.Close()
		}
		return err
	}
	r.Partition([]string{"n1"}, []string{"n2", "n3"})
	if err := dial("n2", r.Node("n1")); err == nil {
		t.Fatal("n2 reached n1 across the partition")
	}
	for _, tc := range []struct {
		from string
		to   *Node
	}{{"n2", r.Node("n3")}, {Client, r.Node("n1")}, {Client, r.Node("n2")}} {
		if err := dial(tc.from, tc.to); err != nil {
			t.Fatalf("%s to %s within its side of the partition: %v", tc.from, tc.to.Name, err)
		}
	}
	r.Heal()
	testutil.Eventually(t, 10*time.Second, "n2 to reach n1 after heal", func() error { return dial("n2", r.Node("n1")) })
}

// TestKillLeaderKeepsAcknowledgedWrites kills -9 the leader: the others
// elect a new one, and every write acknowledged before the kill is on every
// node, the restarted one included.
func TestKillLeaderKeepsAcknowledgedWrites(t *testing.T) {
	r := newCluster(t, 3)
	leader := r.Leader(60 * time.Second)

	var acked []string
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("before-%d", i)
		putAny(t, r, []*Node{leader}, name, 20*time.Second)
		acked = append(acked, name)
	}

	killedAt := time.Now()
	st := leader.Kill()
	if ws, ok := st.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("leader %s exit: %v, want killed by SIGKILL", leader.Name, st)
	}
	rest := others(r, leader)
	next := r.Leader(30*time.Second, rest...)
	t.Logf("kill -9 of leader %s to new leader %s reported: %s", leader.Name, next.Name, time.Since(killedAt))

	for i := 0; i < 10; i++ {
		name := fmt.Sprintf("after-%d", i)
		putAny(t, r, rest, name, 30*time.Second)
		acked = append(acked, name)
	}
	requireAcked(t, r, rest, acked)

	leader.Start()
	requireAcked(t, r, r.Nodes, acked)
}

// TestPartitionedLeaderCannotCommit isolates the leader from the two other
// nodes: the majority elects a new leader and takes writes, the old leader
// acknowledges none, and after the heal it holds every acknowledged write.
func TestPartitionedLeaderCannotCommit(t *testing.T) {
	r := newCluster(t, 3)
	old := r.Leader(60 * time.Second)
	majority := others(r, old)

	var acked []string
	for i := 0; i < 10; i++ {
		name := fmt.Sprintf("before-%d", i)
		putAny(t, r, []*Node{old}, name, 20*time.Second)
		acked = append(acked, name)
	}
	requireAcked(t, r, r.Nodes, acked)

	var majorityGroup []string
	for _, n := range majority {
		majorityGroup = append(majorityGroup, n.Name)
	}
	partitionedAt := time.Now()
	r.Partition([]string{old.Name}, majorityGroup)

	// The write to the isolated leader starts at once, while it may still
	// believe it leads; it must not be acknowledged however it ends.
	type result struct {
		ok  bool
		err error
	}
	isolated := make(chan result, 1)
	go func() {
		ok, err := put(r, old, "isolated", 10*time.Second)
		isolated <- result{ok, err}
	}()

	first := putAnyEach(t, r, majority, "during-0", 60*time.Second, time.Second)
	acked = append(acked, "during-0")
	t.Logf("partition of leader %s to the majority's first acknowledged write: %s", old.Name, first.Sub(partitionedAt))
	next := r.Leader(30*time.Second, majority...)
	if next == old {
		t.Fatalf("isolated node %s still reported as the majority's leader", old.Name)
	}
	for i := 1; i < 10; i++ {
		name := fmt.Sprintf("during-%d", i)
		putAny(t, r, majority, name, 30*time.Second)
		acked = append(acked, name)
	}

	res := <-isolated
	if res.ok {
		t.Fatalf("isolated old leader %s acknowledged a write during the partition", old.Name)
	}
	t.Logf("write to the isolated old leader %s: %v", old.Name, res.err)
	if got, err := pools(r, old); err == nil {
		for _, name := range acked[10:] {
			if got[name] {
				t.Fatalf("isolated node %s applied %s, written on the majority side", old.Name, name)
			}
		}
	}

	r.Heal()
	requireAcked(t, r, r.Nodes, acked)
	if got, err := pools(r, next); err == nil && got["isolated"] {
		t.Logf("the unacknowledged write to the isolated node was applied after the heal (allowed)")
	}
}
