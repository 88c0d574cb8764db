package vip_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafterlb/rafter/cluster/clustertest"
	"github.com/rafterlb/rafter/cluster/vip"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

// recMover records moves; the first failN calls fail. Its InPlace answers
// from what it moved.
type recMover struct {
	mu    sync.Mutex
	failN int
	calls int
	on    map[string]string // vip -> node
	// refuse: nodes that never take an address, as a Linux VIP's holder
	// that does not claim (vip.ErrNotClaimed); refused counts the moves
	// to them.
	refuse  map[string]bool
	refused int
}

func (m *recMover) Move(_ context.Context, v fsm.VIP, target fsm.Node, _ uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.failN > 0 {
		m.failN--
		return errors.New("injected failure")
	}
	if m.refuse[target.ID] {
		m.refused++
		return fmt.Errorf("injected: %w", vip.ErrNotClaimed)
	}
	m.on[v.Name] = target.ID
	return nil
}

func (m *recMover) InPlace(_ context.Context, v fsm.VIP, holder fsm.Node) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.on[v.Name] == holder.ID, nil
}

func (m *recMover) state() (calls int, on map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]string{}
	for k, v := range m.on {
		out[k] = v
	}
	return m.calls, out
}

type ctrlRig struct {
	c     *clustertest.Cluster
	mover *recMover
	tune  func(*vip.Config) // nil: the rig's settings
	mu    sync.Mutex
	ctrls map[string]*vip.Controller
	stops map[string]func()
}

func newCtrlRig(t *testing.T, failN int, tune ...func(*vip.Config)) *ctrlRig {
	r := &ctrlRig{c: clustertest.NewCluster(t, 3), mover: &recMover{failN: failN, on: map[string]string{}},
		ctrls: map[string]*vip.Controller{}, stops: map[string]func(){}}
	if len(tune) > 0 {
		r.tune = tune[0]
	}
	t.Cleanup(func() {
		for _, id := range r.c.IDs() {
			r.stop(id)
		}
	})
	pollT(t, "nodes recorded", func() bool { return len(r.c.Leader(t).Config().Nodes) == 3 })
	for _, id := range r.c.IDs() {
		r.start(t, id)
	}
	return r
}

func (r *ctrlRig) start(t *testing.T, id string) {
	node := r.c.Node(id)
	live := newRaftLiveness(node)
	cfg := vip.Config{Store: node, Liveness: live, Movers: map[string]vip.Mover{fsm.ProviderAWSEIP: r.mover},
		Tick: 20 * time.Millisecond, ReconcileInterval: time.Hour, RetryBase: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond}
	if r.tune != nil {
		r.tune(&cfg)
	}
	ctrl, err := vip.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch, unwatch := node.WatchLeadership()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = ctrl.Run(ctx, ch)
	}()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ctrls[id] = ctrl
	r.stops[id] = func() { cancel(); unwatch(); <-done }
}

func (r *ctrlRig) stop(id string) {
	r.mu.Lock()
	stop := r.stops[id]
	delete(r.stops, id)
	delete(r.ctrls, id)
	r.mu.Unlock()
	if stop != nil {
		stop()
	}
}

func (r *ctrlRig) status(t *testing.T) []vip.VIPStatus {
	id := r.c.ID(r.c.Leader(t))
	r.mu.Lock()
	ctrl := r.ctrls[id]
	r.mu.Unlock()
	if ctrl == nil {
		return nil
	}
	return ctrl.Status()
}

func (r *ctrlRig) put(t *testing.T, name string, spec fsm.VIPSpec) {
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	r.c.Apply(t, fsm.PutCommand(fsm.Object{Kind: fsm.KindVIP, Name: name, Spec: b}, nil))
}

func pollT(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, clustertest.WaitTimeout, what, cond)
}

// TestControllerRetriesAndAssignsNone: failed moves are retried; a VIP of
// provider none is assigned without a move; Status shows both.
func TestControllerRetriesAndAssignsNone(t *testing.T) {
	r := newCtrlRig(t, 2)
	r.put(t, "eip", fsm.VIPSpec{Provider: fsm.ProviderAWSEIP, AllocationID: "eipalloc-1", HomeNode: "node2"})
	r.put(t, "dns-only", fsm.VIPSpec{Provider: fsm.ProviderNone, HomeNode: "node3"})
	pollT(t, "both vips in place", func() bool {
		st := r.status(t)
		return len(st) == 2 && st[0].InPlace && st[1].InPlace
	})
	calls, on := r.mover.state()
	if calls != 3 || on["eip"] != "node2" {
		t.Fatalf("mover: %d calls, placement %v; want 3 calls (2 failed) and eip on node2", calls, on)
	}
	if _, moved := on["dns-only"]; moved {
		t.Fatal("provider none was moved")
	}
	// Completed moves are recorded as settled, for every provider.
	pollT(t, "both assignments settled", func() bool {
		cfg := r.c.Leader(t).Config()
		return cfg.Assignments["eip"].Settled && cfg.Assignments["dns-only"].Settled
	})
	cfg := r.c.Leader(t).Config()
	if a := cfg.Assignments["dns-only"]; a == nil || a.Holder != "node3" || a.Reason != vip.ReasonInitial {
		t.Fatalf("dns-only assignment %+v", a)
	}
}

// TestNewLeaderChecksBeforeMoving: after a leader change, assignments made
// by the previous leader are checked, not moved again.
func TestNewLeaderChecksBeforeMoving(t *testing.T) {
	r := newCtrlRig(t, 0)
	leader := r.c.ID(r.c.Leader(t))
	var home string
	for _, id := range r.c.IDs() {
		if id != leader {
			home = id
			break
		}
	}
	r.put(t, "eip", fsm.VIPSpec{Provider: fsm.ProviderAWSEIP, AllocationID: "eipalloc-1", HomeNode: home})
	pollT(t, "vip in place", func() bool { st := r.status(t); return len(st) == 1 && st[0].InPlace })
	r.stop(leader)
	r.c.Kill(leader)
	pollT(t, "new leader sees the vip in place", func() bool {
		if r.c.ID(r.c.Leader(t)) == leader {
			return false
		}
		st := r.status(t)
		return len(st) == 1 && st[0].InPlace
	})
	if calls, on := r.mover.state(); calls != 1 || on["eip"] != home {
		t.Fatalf("mover: %d calls, placement %v; want one move to %s", calls, on, home)
	}
}

// TestControllerMovesAVIPItsHolderDoesNotClaim: a holder that does not
// take the address in time (vip.ErrNotClaimed) loses the VIP to another
// node, and does not get it back by failback while it is kept away.
func TestControllerMovesAVIPItsHolderDoesNotClaim(t *testing.T) {
	// A short hold-down: the home node would get the VIP back at once
	// by failback, but for being kept from it (at least 30s).
	r := newCtrlRig(t, 0, func(c *vip.Config) { c.HoldDown = time.Millisecond })
	r.mover.mu.Lock()
	r.mover.refuse = map[string]bool{"node2": true}
	r.mover.mu.Unlock()
	r.put(t, "eip", fsm.VIPSpec{Provider: fsm.ProviderAWSEIP, AllocationID: "eipalloc-1", HomeNode: "node2"})
	pollT(t, "the vip in place on another node", func() bool {
		st := r.status(t)
		return len(st) == 1 && st[0].InPlace && st[0].Holder != "node2"
	})
	a := r.c.Leader(t).Config().Assignments["eip"]
	if a.Reason != vip.ReasonNotClaiming {
		t.Fatalf("assignment %+v, want reason %s", a, vip.ReasonNotClaiming)
	}
	// node2, the home node, is live and past the hold-down: without the
	// keep-away a failback would follow at once.
	time.Sleep(500 * time.Millisecond)
	if a := r.c.Leader(t).Config().Assignments["eip"]; a.Holder == "node2" {
		t.Fatalf("failed back to the node that did not claim: %+v", a)
	}
	r.mover.mu.Lock()
	refused := r.mover.refused
	r.mover.mu.Unlock()
	if refused != 1 {
		t.Fatalf("%d moves to the node that did not claim; want 1 (no failback while it is kept away)", refused)
	}
}

// countingStore counts the controller's reads of the replicated state: one
// pass of its loop reads it several times.
type countingStore struct {
	vip.Store
	reads *atomic.Int64
}

func (s *countingStore) Config() *fsm.Config {
	s.reads.Add(1)
	return s.Store.Config()
}

// A leader with no VIP does not wake every tick: its loop waits for the
// state to change. Once a VIP exists it ticks again.
func TestControllerWithoutVIPsDoesNotTick(t *testing.T) {
	var reads atomic.Int64
	r := newCtrlRig(t, 0, func(c *vip.Config) { c.Store = &countingStore{Store: c.Store, reads: &reads} })
	r.c.Leader(t)
	pollT(t, "a spell of 300ms with no pass of the loop", func() bool {
		before := reads.Load()
		time.Sleep(300 * time.Millisecond)
		return reads.Load() == before
	})

	r.put(t, "dns-only", fsm.VIPSpec{Provider: fsm.ProviderNone, HomeNode: "node3"})
	pollT(t, "the vip in place", func() bool {
		st := r.status(t)
		return len(st) == 1 && st[0].InPlace
	})
	before := reads.Load()
	time.Sleep(500 * time.Millisecond) // 25 ticks of 20ms
	if n := reads.Load() - before; n < 3 {
		t.Fatalf("with a vip, %d reads of the state in 500ms; want the loop to tick", n)
	}
}
