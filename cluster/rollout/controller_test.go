package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rafterlb/rafter/cluster/leading"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

// fakeStore applies commands with fsm.Next, as the Raft node would.
type fakeStore struct {
	mu      sync.Mutex
	cfg     *fsm.Config
	notLead bool
	applied []*fsm.RolloutDecide
}

func (s *fakeStore) Config() *fsm.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

func (s *fakeStore) VerifyLeader(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.notLead {
		return errors.New("not the leader")
	}
	return nil
}

func (s *fakeStore) Apply(_ context.Context, cmd *fsm.Command) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next, err := fsm.Next(s.cfg, s.cfg.Index+1, cmd)
	if err != nil {
		return 0, err
	}
	s.cfg = next
	if d, ok := cmd.Payload.(*fsm.RolloutDecide); ok {
		s.applied = append(s.applied, d)
	}
	return next.Index, nil
}

func (s *fakeStore) status(name string) fsm.RolloutStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.cfg.RolloutStatus[name]
}

func obj(kind fsm.Kind, name, spec string) fsm.Object {
	return fsm.Object{Kind: kind, Name: name, Spec: json.RawMessage(spec)}
}

func newStore(t *testing.T, rollout string) *fakeStore {
	t.Helper()
	s := &fakeStore{cfg: fsm.Empty()}
	if _, err := s.Apply(context.Background(), fsm.ApplyCommand([]fsm.Object{
		obj(fsm.KindListener, "web", `{"port":8080}`),
		obj(fsm.KindPool, "v1", `{}`),
		obj(fsm.KindPool, "v2", `{}`),
		obj(fsm.KindRoute, "app", `{"listener":"web","action":{"split":[{"pool":"v1","weight":1}]}}`),
		obj(fsm.KindRollout, "r1", rollout),
	})); err != nil {
		t.Fatal(err)
	}
	return s
}

var bounds = []time.Duration{time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond}

// traffic adds n requests to a pool of node's cumulative counts.
type traffic struct {
	mu    sync.Mutex
	nodes map[string]map[string]PoolCount
}

func (tr *traffic) add(c *Collector, node, pool string, n, errs uint64, bucket int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.nodes == nil {
		tr.nodes = map[string]map[string]PoolCount{}
	}
	if tr.nodes[node] == nil {
		tr.nodes[node] = map[string]PoolCount{}
	}
	pc := tr.nodes[node][pool]
	pc.Route, pc.Pool = "app", pool
	pc.Requests += n
	pc.Errors += errs
	if pc.Latency == nil {
		pc.Latency = make([]uint64, len(bounds)+1)
	} else {
		pc.Latency = append([]uint64(nil), pc.Latency...)
	}
	pc.Latency[bucket] += n
	tr.nodes[node][pool] = pc
	rep := Report{Node: node}
	for _, p := range sortedNames(tr.nodes[node]) {
		rep.Pools = append(rep.Pools, tr.nodes[node][p])
	}
	c.Add(rep)
}

func newTerm(t *testing.T, s *fakeStore, col *Collector, clock *testutil.FakeClock, term uint64) *termState {
	t.Helper()
	c, err := New(Config{Store: s, Collector: col, LatencyBounds: bounds, Settle: 100 * time.Millisecond, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &termState{c: c, term: term, windows: map[string]*window{}}
}

// drive advances the clock in steps of d, feeding traffic and judging
// after each, until cond holds or 400 steps passed.
func drive(t *testing.T, ts *termState, clock *testutil.FakeClock, d time.Duration, feed func(), cond func() bool) {
	t.Helper()
	for range 400 {
		if cond() {
			return
		}
		feed()
		clock.Advance(d)
		ts.step(context.Background())
	}
	if !cond() {
		t.Fatal("condition never held")
	}
}

const spec = `{"route":"app","stable":"v1","canary":"v2","steps":[10,50,100],"interval":"1s","min_requests":20,"max_error_rate":0.05}`

func TestControllerAdvancesThroughEveryStep(t *testing.T) {
	s := newStore(t, spec)
	col, clock, tr := NewCollector(), testutil.NewFakeClock(), &traffic{}
	ts := newTerm(t, s, col, clock, 2)
	drive(t, ts, clock, 100*time.Millisecond, func() {
		w := uint64(s.status("r1").Weight)
		for _, n := range []string{"n1", "n2", "n3"} {
			tr.add(col, n, "v2", w/10, 0, 0)
			tr.add(col, n, "v1", 10-w/10, 0, 1)
		}
	}, func() bool { st := s.status("r1"); return st.Terminal() })
	st := s.status("r1")
	if st.State != fsm.RolloutSucceeded || len(st.History) != 3 {
		t.Fatalf("status %+v", st)
	}
	for i, h := range st.History {
		if h.Step != i || h.Result != "passed" || h.Term != 2 || h.Figures.Requests < 20 || h.Figures.Nodes != 3 {
			t.Fatalf("history[%d] = %+v (figures %+v)", i, h, h.Figures)
		}
		if want := float64([]int{10, 50, 100}[i]); h.Figures.Share < want-2 || h.Figures.Share > want+2 {
			t.Fatalf("step %d share %.1f, want %v", i, h.Figures.Share, want)
		}
	}
}

func TestControllerFailsOnErrors(t *testing.T) {
	s := newStore(t, spec)
	col, clock, tr := NewCollector(), testutil.NewFakeClock(), &traffic{}
	ts := newTerm(t, s, col, clock, 2)
	drive(t, ts, clock, 100*time.Millisecond, func() {
		tr.add(col, "n1", "v2", 5, 5, 0)
		tr.add(col, "n1", "v1", 45, 0, 0)
	}, func() bool { st := s.status("r1"); return st.Terminal() })
	st := s.status("r1")
	if st.State != fsm.RolloutFailed || st.Weight != 0 || len(st.History) != 1 || st.History[0].Figures.ErrorRate != 1 {
		t.Fatalf("status %+v", st)
	}
	// It failed once min_requests was reached, before the interval.
	if w := st.History[0].Figures.Window.D(); w >= time.Second {
		t.Fatalf("failed after a window of %v", w)
	}
}

func TestControllerWaitsWithoutTraffic(t *testing.T) {
	s := newStore(t, spec)
	col, clock := NewCollector(), testutil.NewFakeClock()
	ts := newTerm(t, s, col, clock, 2)
	n := 0
	drive(t, ts, clock, 100*time.Millisecond, func() { n++ }, func() bool { return n >= 100 })
	if st := s.status("r1"); st.State != fsm.RolloutProgressing || st.Step != 0 || len(s.applied) != 0 {
		t.Fatalf("a quiet rollout moved: %+v", st)
	}
}

func TestControllerDeposedLeaderDoesNotDecide(t *testing.T) {
	s := newStore(t, spec)
	s.notLead = true
	col, clock, tr := NewCollector(), testutil.NewFakeClock(), &traffic{}
	ts := newTerm(t, s, col, clock, 2)
	n := 0
	drive(t, ts, clock, 100*time.Millisecond, func() {
		n++
		tr.add(col, "n1", "v2", 10, 0, 0)
	}, func() bool { return n >= 40 })
	if len(s.applied) != 0 {
		t.Fatalf("decided without leadership: %+v", s.applied)
	}
}

func TestQuantileAndJudge(t *testing.T) {
	if q := quantile([]uint64{98, 1, 1, 0}, bounds, 0.99); q != 10*time.Millisecond {
		t.Fatalf("p99 = %v", q)
	}
	if q := quantile([]uint64{0, 0, 0, 5}, bounds, 0.99); q != 100*time.Millisecond {
		t.Fatalf("overflow p99 = %v", q)
	}
	if q := quantile(nil, bounds, 0.99); q != 0 {
		t.Fatalf("empty p99 = %v", q)
	}
	var rs fsm.RolloutSpec
	if err := json.Unmarshal([]byte(`{"steps":[100],"interval":"1s","min_requests":10,"max_p99_ratio":2}`), &rs); err != nil {
		t.Fatal(err)
	}
	f := &fsm.RolloutFigures{Requests: 10, StableRequests: 10, P99: fsm.Duration(50 * time.Millisecond), StableP99: fsm.Duration(10 * time.Millisecond)}
	if v, _ := judge(&rs, f, 0); v != fsm.VerdictFail {
		t.Fatalf("slow canary: %q", v)
	}
	f.StableP99 = fsm.Duration(30 * time.Millisecond)
	if v, _ := judge(&rs, f, 0); v != "" {
		t.Fatalf("before the interval: %q", v)
	}
	if v, _ := judge(&rs, f, time.Second); v != fsm.VerdictAdvance {
		t.Fatalf("after the interval: %q", v)
	}
}

// TestControllerRunFollowsLeadership: the controller judges only during a
// term, and a new term continues from the committed step.
func TestControllerRunFollowsLeadership(t *testing.T) {
	s := newStore(t, spec)
	col, tr := NewCollector(), &traffic{}
	c, err := New(Config{Store: s, Collector: col, LatencyBounds: bounds, Tick: 10 * time.Millisecond, Settle: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	leads := make(chan leading.Leadership, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(ctx, leads)
	}()
	defer func() {
		cancel()
		<-done
	}()
	leads <- leading.Leadership{Leader: true, Term: 3}
	feed := func() bool {
		w := uint64(s.status("r1").Weight)
		tr.add(col, "n1", "v2", w, 0, 0)
		tr.add(col, "n1", "v1", 100-w, 0, 0)
		return true
	}
	testutil.WaitFor(t, 20*time.Second, "step 2 of r1", func() bool { return feed() && s.status("r1").Step >= 1 })
	leads <- leading.Leadership{}
	leads <- leading.Leadership{Leader: true, Term: 5}
	testutil.WaitFor(t, 20*time.Second, "r1 to succeed", func() bool {
		feed()
		st := s.status("r1")
		return st.Terminal()
	})
	st := s.status("r1")
	if st.State != fsm.RolloutSucceeded || len(st.History) != 3 {
		t.Fatalf("status %+v", st)
	}
	for i, h := range st.History {
		if h.Step != i {
			t.Fatalf("history %+v: a step skipped or repeated", st.History)
		}
	}
	if last := st.History[2]; last.Term != 5 {
		t.Fatalf("last step decided in term %d, want 5", last.Term)
	}
}
