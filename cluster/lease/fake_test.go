package lease

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cluster/leading"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

// fakeStore is a one-node "cluster": an fsm.FSM written through Apply,
// with leadership the test switches.
type fakeStore struct {
	mu      sync.Mutex // serializes Apply, as Raft does
	f       *fsm.FSM
	leader  atomic.Bool
	applies atomic.Int64

	subMu sync.Mutex
	term  uint64 // the term of the latest gain of leadership
	subs  []chan leading.Leadership
}

func newFakeStore(t testing.TB) *fakeStore {
	s := &fakeStore{f: fsm.New()}
	s.leader.Store(true)
	spec, _ := json.Marshal(fsm.PoolSpec{})
	if _, err := s.Apply(context.Background(), fsm.ApplyCommand([]fsm.Object{
		{Kind: fsm.KindPool, Name: "app", Spec: spec},
		{Kind: fsm.KindPool, Name: "other", Spec: spec},
	})); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *fakeStore) Apply(_ context.Context, cmd *fsm.Command) (uint64, error) {
	if !s.leader.Load() {
		return 0, fmt.Errorf("%w: leader is elsewhere", cluster.ErrNotLeader)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.f.Config()
	if _, err := fsm.Next(cur, cur.Index+1, cmd); err != nil {
		return 0, err
	}
	b, err := fsm.EncodeCommand(cmd)
	if err != nil {
		return 0, err
	}
	s.applies.Add(1)
	return cur.Index + 1, s.f.Apply(cur.Index+1, b)
}

func (s *fakeStore) Config() *fsm.Config { return s.f.Config() }
func (s *fakeStore) IsLeader() bool      { return s.leader.Load() }

func (s *fakeStore) ConsistentConfig(context.Context) (*fsm.Config, error) {
	if !s.leader.Load() {
		return nil, cluster.ErrNotLeader
	}
	return s.f.Config(), nil
}

func (s *fakeStore) WatchLeadership() (<-chan leading.Leadership, func()) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	c := make(chan leading.Leadership, 1)
	c <- s.leadership()
	s.subs = append(s.subs, c)
	return c, func() {}
}

// leadership is the current report; s.subMu is held.
func (s *fakeStore) leadership() leading.Leadership {
	if !s.leader.Load() {
		return leading.Leadership{}
	}
	return leading.Leadership{Leader: true, Term: max(s.term, 1)}
}

// setLeader reports leadership as cluster.Node does, keeping only the
// latest report for a subscriber; each true starts a new term, so setting
// true twice is a loss and regain that the subscriber may never see.
func (s *fakeStore) setLeader(v bool) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	s.leader.Store(v)
	if v {
		s.term = max(s.term, 1) + 1
	}
	l := s.leadership()
	for _, c := range s.subs {
		select {
		case <-c:
		default:
		}
		c <- l
	}
}

func (m *Manager) isLeading() bool {
	_, ok := m.Term()
	return ok
}

// rig is a Manager on a fakeStore with a fake clock, running until the
// test ends. Rounds run on a fast real ticker; time in them is the fake
// clock's.
type rig struct {
	t     *testing.T
	store *fakeStore
	clock *testutil.FakeClock
	reg   *prometheus.Registry
	m     *Manager
}

const rigInterval = 20 * time.Millisecond

func newRig(t *testing.T, adjust func(*Config)) *rig {
	t.Helper()
	r := &rig{
		t:     t,
		store: newFakeStore(t),
		clock: testutil.NewFakeClock(),
		reg:   prometheus.NewRegistry(),
	}
	cfg := DefaultConfig()
	cfg.Store = r.store
	cfg.Now = r.clock.Now
	cfg.Registerer = r.reg
	cfg.CheckInterval = rigInterval
	if adjust != nil {
		adjust(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.m = m
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	r.waitFor("taking office", m.isLeading)
	return r
}

// waitRounds waits until two more rounds completed, so at least one of
// them started after the call (and saw the clock as it is now).
func (r *rig) waitRounds() {
	r.t.Helper()
	start := r.m.rounds.Load()
	r.waitFor("two check rounds", func() bool { return r.m.rounds.Load() >= start+2 })
}

func (r *rig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	testutil.WaitFor(r.t, 15*time.Second, what, cond)
}

func (r *rig) grant(ttl time.Duration) uint64 {
	r.t.Helper()
	l, err := r.m.Grant(context.Background(), ttl)
	if err != nil {
		r.t.Fatal(err)
	}
	return l.ID
}

func (r *rig) register(pool, addr string, id uint64) {
	r.t.Helper()
	if _, err := r.store.Apply(context.Background(), fsm.BackendRegisterCommand(pool, fsm.Backend{Addr: addr, Lease: id})); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) keepAlive(ids ...uint64) {
	r.t.Helper()
	for _, id := range ids {
		if _, err := r.m.KeepAlive(context.Background(), id); err != nil {
			r.t.Fatalf("keepalive %d: %v", id, err)
		}
	}
}

func (r *rig) has(id uint64) bool {
	_, ok := r.store.Config().Leases[id]
	return ok
}

// metric reads a gauge or counter from the rig's registry.
func (r *rig) metric(name string) float64 {
	r.t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if g := m.GetGauge(); g != nil {
			return g.GetValue()
		}
		return m.GetCounter().GetValue()
	}
	r.t.Fatalf("metric %s not registered", name)
	return 0
}
