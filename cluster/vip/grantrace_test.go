package vip_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafterlb/rafter/cluster/leading"
	"github.com/rafterlb/rafter/cluster/probe"
	"github.com/rafterlb/rafter/cluster/vip"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

// raceStore is a settable replicated state for the hand-over.
type raceStore struct {
	mu  sync.Mutex
	cfg *fsm.Config
}

func (s *raceStore) Config() *fsm.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

func (s *raceStore) assign(holder string, token uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := *s.cfg
	cfg.Assignments = map[string]*fsm.Assignment{"a": {VIP: "a", Holder: holder, Token: token}}
	s.cfg = &cfg
}

// grantRig is a leading probe.Tracker whose answers carry the Handover's
// grants, on a clock that stands still: no node is ever silent long
// enough to count as gone, so every grant rests on what nodes reported.
func grantRig(t *testing.T) (*raceStore, func(node string, seq uint64, holding map[string]uint64) (map[string]uint64, error)) {
	t.Helper()
	store, probeOf, _ := grantRigLife(t, 0)
	return store, probeOf
}

// grantRigLife is grantRig with TrackerConfig.GrantLife set, and a way to
// move its clock on. Node "n1*" is n1's next process (another
// incarnation).
func grantRigLife(t *testing.T, life time.Duration) (*raceStore, func(node string, seq uint64, holding map[string]uint64) (map[string]uint64, error), func(time.Duration)) {
	t.Helper()
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	cfg := linuxConfig()
	delete(cfg.Assignments, "e")
	store := &raceStore{cfg: cfg}
	tr, err := probe.NewTracker(probe.TrackerConfig{
		NodeID:       "n3",
		VerifyLeader: func(context.Context) error { return nil },
		GrantLife:    life,
		Now:          clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	tr.SetGranter(vip.NewHandover(store, tr, 2*time.Second, clock))
	ch := make(chan leading.Leadership)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tr.Run(ctx, ch)
	}()
	t.Cleanup(func() { cancel(); <-done })
	ch <- leading.Leadership{Leader: true, Term: 1}
	testutil.WaitFor(t, 10*time.Second, "the term to start", func() bool { _, ok := tr.TermStart(); return ok })
	incarnations := map[string]uint64{"n1": 11, "n2": 22, "n3": 33, "n1*": 111}
	probeOf := func(node string, seq uint64, holding map[string]uint64) (map[string]uint64, error) {
		resp, err := tr.Handle(context.Background(), probe.Request{
			Node: strings.TrimSuffix(node, "*"), Incarnation: incarnations[node], Seq: seq, Holding: holding,
		})
		return resp.Grants, err
	}
	return store, probeOf, advance
}

func mustProbe(t *testing.T, probeOf func(string, uint64, map[string]uint64) (map[string]uint64, error), node string, seq uint64, holding map[string]uint64) map[string]uint64 {
	t.Helper()
	g, err := probeOf(node, seq, holding)
	if err != nil {
		t.Fatalf("probe %d of %s: %v", seq, node, err)
	}
	return g
}

// The answer to a probe that says "holds nothing" may grant the VIP; the
// node may claim it after it sent that report, and even after its next
// probe has gone out when that probe was written before the claim. So a
// report of not holding counts as clearance only when its probe was sent
// after the node last received a grant it can act on.
func TestHandoverReportAnsweredWithAGrantIsNoClearance(t *testing.T) {
	store, probeOf := grantRig(t)
	store.assign("n1", 10)
	mustProbe(t, probeOf, "n2", 1, nil)
	mustProbe(t, probeOf, "n3", 1, nil)
	if g := mustProbe(t, probeOf, "n1", 1, nil); g["a"] != 10 {
		t.Fatalf("n1 got %v, want the grant of a:10 (the others hold nothing)", g)
	}
	// n1 has not claimed yet (its keeper is slow) when the VIP moves on.
	store.assign("n2", 20)
	if g := mustProbe(t, probeOf, "n2", 2, nil); len(g) != 0 {
		t.Fatalf("n2 granted %v while n1 may still claim on the answer to its probe 1", g)
	}
	// n1's probe 2 goes out; from then on its keeper no longer acts on the
	// answer to probe 1, and this report says it holds nothing.
	if g := mustProbe(t, probeOf, "n1", 2, nil); len(g) != 0 {
		t.Fatalf("n1 granted %v after the move", g)
	}
	if g := mustProbe(t, probeOf, "n2", 3, nil); g["a"] != 20 {
		t.Fatalf("n2 got %v once n1 reported after its last grant, want a:20", g)
	}
}

// A report written before the claim, sent after the grant's probe, still
// counts: the keeper acts on a grant only while the probe it answered is
// its newest, so by the time probe 2 is written it has claimed (and says
// so) or never will.
func TestHandoverReportOfNewerProbeIsClearance(t *testing.T) {
	store, probeOf := grantRig(t)
	store.assign("n1", 10)
	mustProbe(t, probeOf, "n2", 1, nil)
	mustProbe(t, probeOf, "n3", 1, nil)
	mustProbe(t, probeOf, "n1", 1, nil)                        // granted a:10
	mustProbe(t, probeOf, "n1", 2, map[string]uint64{"a": 10}) // claimed, granted again (settling)
	store.assign("n2", 20)
	if g := mustProbe(t, probeOf, "n2", 2, nil); len(g) != 0 {
		t.Fatalf("n2 granted %v while n1 reports holding a", g)
	}
	mustProbe(t, probeOf, "n1", 3, nil) // released
	if g := mustProbe(t, probeOf, "n2", 3, nil); g["a"] != 20 {
		t.Fatalf("n2 got %v after n1 released, want a:20", g)
	}
}

// A probe that timed out at the node can arrive after a newer one: it
// must neither replace the newer report (here: holding the VIP) nor
// count as clearance.
func TestHandoverIgnoresLateProbe(t *testing.T) {
	store, probeOf := grantRig(t)
	store.assign("n1", 10)
	mustProbe(t, probeOf, "n2", 1, nil)
	mustProbe(t, probeOf, "n3", 1, nil)
	// n1's probe 1 (holding nothing) is delayed in the network; probe 2
	// is granted, n1 claims, and probe 3 says so.
	if g := mustProbe(t, probeOf, "n1", 2, nil); g["a"] != 10 {
		t.Fatalf("n1 got %v, want a:10", g)
	}
	mustProbe(t, probeOf, "n1", 3, map[string]uint64{"a": 10})
	if _, err := probeOf("n1", 1, nil); !errors.Is(err, probe.ErrStale) {
		t.Fatalf("late probe 1 of n1: err %v, want ErrStale", err)
	}
	store.assign("n2", 20)
	if g := mustProbe(t, probeOf, "n2", 2, nil); len(g) != 0 {
		t.Fatalf("n2 granted %v: the late probe counted as n1 letting go", g)
	}
}

// A grant the node can no longer act on (its lease from that probe has
// run out, as when the process that got it exited) stops blocking the
// node's reports of not holding the VIP.
func TestHandoverGrantExpires(t *testing.T) {
	store, probeOf, advance := grantRigLife(t, 300*time.Millisecond)
	store.assign("n1", 10)
	mustProbe(t, probeOf, "n2", 1, nil)
	mustProbe(t, probeOf, "n3", 1, nil)
	mustProbe(t, probeOf, "n1", 1, nil) // granted a:10; the process then exits
	store.assign("n2", 20)
	if g := mustProbe(t, probeOf, "n2", 2, nil); len(g) != 0 {
		t.Fatalf("n2 granted %v within the grant's life", g)
	}
	advance(301 * time.Millisecond)
	// n1's new process (another incarnation) reports holding nothing.
	if _, err := probeOf("n1*", 1, nil); err != nil {
		t.Fatal(err)
	}
	if g := mustProbe(t, probeOf, "n2", 3, nil); g["a"] != 20 {
		t.Fatalf("n2 got %v after n1's grant ran out, want a:20", g)
	}
}
