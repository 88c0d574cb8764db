package clustertest_test

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cluster/clustertest"
	"github.com/rafterlb/rafter/cluster/leading"
	"github.com/rafterlb/rafter/cluster/lease"
	"github.com/rafterlb/rafter/cluster/probe"
	"github.com/rafterlb/rafter/cluster/vip"
)

// slowReader passes leadership reports from in to the returned channel,
// except while held: then it reads nothing, so the node keeps only its
// latest report, as it does for a subscriber busy with other work. A send
// on hold returns once the reader holds; closing release ends the hold.
func slowReader(t *testing.T, in <-chan leading.Leadership, hold <-chan struct{}, release <-chan struct{}) <-chan leading.Leadership {
	out := make(chan leading.Leadership)
	done := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(done)
		defer close(out)
		for {
			select {
			case <-hold:
				select {
				case <-release:
				case <-stop:
					return
				}
			case l, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- l:
				case <-stop:
					return
				}
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return out
}

// termRecorder is a leading.Follow subscriber that records the terms it
// started and stopped.
type termRecorder struct {
	mu      sync.Mutex
	started []uint64
	stopped []uint64
}

func (r *termRecorder) start(_ context.Context, term uint64) func() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started = append(r.started, term)
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.stopped = append(r.stopped, term)
	}
}

func (r *termRecorder) Term() (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.started) == len(r.stopped) {
		return 0, false
	}
	return r.started[len(r.started)-1], true
}

func (r *termRecorder) history() (started, stopped []uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.started), slices.Clone(r.stopped)
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(clustertest.WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", clustertest.WaitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestEverySubscriberSeesRegainedLeadership: node1 loses leadership and
// regains it while every subscriber of its leadership is too busy to read,
// so each one reads only the report of leadership in the new term, never
// the loss. Every subscriber must still end the old term's work and start
// the new term's: the probe tracker, the VIP controller, the lease manager,
// a plain leading.Follow loop and the node's own leader duties.
func TestEverySubscriberSeesRegainedLeadership(t *testing.T) {
	// node1 times out fast and the others slowly, so node1 wins every
	// election it can take part in.
	c := clustertest.NewCluster(t, 3, clustertest.WithConfig(func(cfg *cluster.Config) {
		if cfg.NodeID == "node1" {
			cfg.HeartbeatTimeout = 150 * time.Millisecond
			cfg.ElectionTimeout = 150 * time.Millisecond
			cfg.LeaderLeaseTimeout = 100 * time.Millisecond
			return
		}
		cfg.HeartbeatTimeout = 3 * time.Second
		cfg.ElectionTimeout = 3 * time.Second
	}))
	node := c.Leader(t)
	if id := c.ID(node); id != "node1" {
		t.Fatalf("%s leads, want node1 (the fast one)", id)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	release := make(chan struct{})
	var holds []chan struct{}
	watch := func() <-chan leading.Leadership {
		ch, unwatch := node.WatchLeadership()
		t.Cleanup(unwatch)
		hold := make(chan struct{})
		holds = append(holds, hold)
		return slowReader(t, ch, hold, release)
	}

	tracker, err := probe.NewTracker(probe.TrackerConfig{NodeID: "node1", VerifyLeader: node.VerifyLeader})
	if err != nil {
		t.Fatal(err)
	}
	trackerLeads := watch()
	wg.Go(func() { _ = tracker.Run(ctx, trackerLeads) })

	live, err := probe.NewLiveness(tracker, 0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := vip.New(vip.Config{Store: node, Liveness: live, Tick: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctrlLeads := watch()
	wg.Go(func() { _ = ctrl.Run(ctx, ctrlLeads) })

	lcfg := lease.DefaultConfig()
	lcfg.Store = leaseStore{node, watch()}
	lcfg.CheckInterval = 20 * time.Millisecond
	leases, err := lease.New(lcfg)
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { leases.Run(ctx) })

	rec := &termRecorder{}
	recLeads := watch()
	wg.Go(func() { _ = leading.Follow(ctx, recLeads, rec.start, nil) })

	subscribers := []struct {
		name string
		term func() (uint64, bool)
	}{
		{"probe tracker", tracker.Term},
		{"vip controller", ctrl.Term},
		{"lease manager", leases.Term},
		{"leading.Follow", rec.Term},
	}
	servedAll := func(term uint64) func() bool {
		return func() bool {
			for _, s := range subscribers {
				if got, ok := s.term(); !ok || got != term {
					return false
				}
			}
			return true
		}
	}
	first := node.Status().Term
	poll(t, "every subscriber to serve the first term", servedAll(first))

	for _, h := range holds {
		h <- struct{}{}
	}
	c.Partition("node1")
	poll(t, "node1 to lose leadership", func() bool { return !node.IsLeader() })
	c.Heal()
	poll(t, "node1 to lead again", func() bool { return node.IsLeader() && node.Status().Term > first })
	close(release)

	var second uint64
	poll(t, "every subscriber to serve node1's new term", func() bool {
		second = node.Status().Term
		return node.IsLeader() && servedAll(second)()
	})
	for _, s := range subscribers {
		if got, _ := s.term(); got != second {
			t.Errorf("%s serves term %d, want %d", s.name, got, second)
		}
	}
	started, stopped := rec.history()
	if len(started) < 2 || started[0] != first || !slices.Contains(stopped, first) {
		t.Errorf("leading.Follow started terms %v and stopped %v; want term %d started and stopped, then a later one", started, stopped, first)
	}
	if _, err := node.ConsistentConfig(ctx); err != nil {
		t.Errorf("the node's own leader duties did not complete in the new term: %v", err)
	}
}

// leaseStore is the node as the lease manager's Store, with its leadership
// read through a slow reader.
type leaseStore struct {
	*cluster.Node
	leads <-chan leading.Leadership
}

func (s leaseStore) WatchLeadership() (<-chan leading.Leadership, func()) {
	return s.leads, func() {}
}

// stallHandler discards log records, but records the terms of each
// "became leader" that node logs, and the first one blocks until release:
// the leadership loop is busy while Raft goes on.
type stallHandler struct{ s *stall }

type stall struct {
	node    string
	once    sync.Once
	held    chan struct{} // closed when the loop is stalled
	release chan struct{}

	mu    sync.Mutex
	terms []uint64 // of every "became leader"
}

func (s *stall) leaderTerms() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.terms)
}

func (h stallHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h stallHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h stallHandler) WithGroup(string) slog.Handler            { return h }

func (h stallHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "became leader" {
		return nil
	}
	mine, term := false, uint64(0)
	r.Attrs(func(a slog.Attr) bool {
		mine = mine || a.Key == "node" && a.Value.String() == h.s.node
		if a.Key == "term" {
			term = a.Value.Uint64()
		}
		return true
	})
	if !mine {
		return nil
	}
	h.s.mu.Lock()
	h.s.terms = append(h.s.terms, term)
	h.s.mu.Unlock()
	h.s.once.Do(func() {
		close(h.s.held)
		<-h.s.release
	})
	return nil
}

// TestLeadershipLoopSeesRegainWhileBusy: node1's leadership loop is busy
// just after node1 becomes leader while node1 loses leadership and
// regains it; Raft must not wait for the loop meanwhile. When the loop
// goes on it must end the first term and run the node's leader duties in
// the new one, and subscribers must hear of the new term. Raft's LeaderCh would show true, true there
// and the new term would be lost.
func TestLeadershipLoopSeesRegainWhileBusy(t *testing.T) {
	s := &stall{node: "node1", held: make(chan struct{}), release: make(chan struct{})}
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(s.release) }) }
	c := clustertest.NewCluster(t, 3, clustertest.WithLogger(slog.New(stallHandler{s})),
		clustertest.WithConfig(func(cfg *cluster.Config) {
			if cfg.NodeID == "node1" {
				cfg.HeartbeatTimeout = 150 * time.Millisecond
				cfg.ElectionTimeout = 150 * time.Millisecond
				cfg.LeaderLeaseTimeout = 100 * time.Millisecond
				return
			}
			cfg.HeartbeatTimeout = 3 * time.Second
			cfg.ElectionTimeout = 3 * time.Second
		}))
	t.Cleanup(release) // before the cluster closes
	select {
	case <-s.held:
	case <-time.After(clustertest.WaitTimeout):
		t.Fatal("node1 never became leader")
	}
	node := c.Node("node1")
	first := node.Status().Term

	ch, unwatch := node.WatchLeadership()
	t.Cleanup(unwatch)
	var mu sync.Mutex
	var latest leading.Leadership
	done := make(chan struct{})
	go func() {
		defer close(done)
		for l := range ch {
			mu.Lock()
			latest = l
			mu.Unlock()
		}
	}()
	t.Cleanup(func() { unwatch(); <-done })

	c.Partition("node1")
	poll(t, "node1 to step down", func() bool { return !node.IsLeader() })
	c.Heal()
	poll(t, "node1 to lead again", func() bool { return node.IsLeader() && node.Status().Term > first })
	release()

	poll(t, "node1 to lead in a later term, its loop to take office and subscribers to be told", func() bool {
		term := node.Status().Term
		if !node.IsLeader() || term <= first {
			return false
		}
		mu.Lock()
		l := latest
		mu.Unlock()
		if l != (leading.Leadership{Leader: true, Term: term}) {
			return false
		}
		// The loop started the term's leader duties: it logs that as it does.
		return slices.Contains(s.leaderTerms(), term)
	})
	if terms := s.leaderTerms(); len(terms) < 2 || terms[0] != first {
		t.Errorf("node1's loop took office in terms %v; want %d, then a later one", terms, first)
	}
}
