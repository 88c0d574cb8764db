package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafterlb/rafter/cluster/leading"
	"github.com/rafterlb/rafter/internal/testutil"
)

// runTracker runs tr and returns a function that reports leadership to it
// as cluster.Node.WatchLeadership does, each gain in a new term.
func runTracker(t *testing.T, tr *Tracker) (lead func(bool)) {
	t.Helper()
	ch := make(chan leading.Leadership)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tr.Run(ctx, ch)
	}()
	t.Cleanup(func() { cancel(); <-done })
	var term uint64
	return func(v bool) {
		l := leading.Leadership{}
		if v {
			term++
			l = leading.Leadership{Leader: true, Term: term}
		}
		ch <- l
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, what, cond)
}

// gatedVerify is a VerifyLeader whose rounds each report on started as
// they begin, then succeed when release is sent to.
func gatedVerify() (verify func(context.Context) error, started, release chan struct{}) {
	started, release = make(chan struct{}, 10), make(chan struct{})
	return func(ctx context.Context) error {
		started <- struct{}{}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, started, release
}

type grants map[string]uint64

func (g grants) Grants(string) map[string]uint64 { return maps.Clone(g) }

// A probe is answered only by a confirmation round that started after it
// arrived: one already running when it arrives does not count.
func TestTrackerAnswersAfterARoundStartedLater(t *testing.T) {
	var rounds atomic.Int32
	verify, started, release := gatedVerify()
	tr, err := NewTracker(TrackerConfig{NodeID: "n1", VerifyLeader: func(ctx context.Context) error {
		rounds.Add(1)
		return verify(ctx)
	}, Granter: grants{"v": 7}, ConfirmTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	lead := runTracker(t, tr)
	lead(true)
	waitUntil(t, "the term to start", func() bool { _, ok := tr.TermStart(); return ok })

	first := make(chan error, 1)
	go func() {
		_, err := tr.Handle(context.Background(), Request{Node: "n2"})
		first <- err
	}()
	<-started // round 1 runs, for the first probe
	second := make(chan Response, 1)
	go func() {
		resp, err := tr.Handle(context.Background(), Request{Node: "n3", Holding: map[string]uint64{"v": 3}})
		if err != nil {
			t.Errorf("second probe: %v", err)
		}
		second <- resp
	}()
	waitUntil(t, "the second probe to be recorded", func() bool { r, _ := tr.Report("n3"); return r.Reported })
	release <- struct{}{} // round 1 succeeds
	if err := <-first; err != nil {
		t.Fatalf("first probe: %v", err)
	}
	select {
	case <-second:
		t.Fatal("the second probe was answered by a round that began before it arrived")
	case <-started: // round 2 begins for it
	}
	release <- struct{}{}
	resp := <-second
	if resp.Leader != "n1" || resp.Grants["v"] != 7 {
		t.Fatalf("answer = %+v, want leader n1 with the grants", resp)
	}
	r, ok := tr.Report("n3")
	if !ok || !r.Reported || r.Holding["v"] != 3 || r.Leaving {
		t.Fatalf("Report(n3) = %+v, %v", r, ok)
	}
}

func TestTrackerRefusesWithoutConfirmation(t *testing.T) {
	var fail atomic.Bool
	tr, err := NewTracker(TrackerConfig{NodeID: "n1", VerifyLeader: func(context.Context) error {
		if fail.Load() {
			return errors.New("lost quorum")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Handle(context.Background(), Request{Node: "n2"}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Handle before leading: %v, want ErrNotLeader", err)
	}
	if _, ok := tr.Report("n2"); ok {
		t.Fatal("Report answers while not leading")
	}
	lead := runTracker(t, tr)
	lead(true)
	waitUntil(t, "the term to start", func() bool { _, ok := tr.TermStart(); return ok })
	if _, err := tr.Handle(context.Background(), Request{}); err == nil {
		t.Fatal("a probe without a node was accepted")
	}
	if _, err := tr.Handle(context.Background(), Request{Node: "n2"}); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	fail.Store(true)
	if _, err := tr.Handle(context.Background(), Request{Node: "n2", Leaving: true}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Handle with a failing round: %v, want ErrNotLeader", err)
	}
	// The arrival is still recorded: it bounds what the node may believe.
	if r, _ := tr.Report("n2"); !r.Leaving {
		t.Fatalf("the refused probe was not recorded: %+v", r)
	}

	// A new term forgets the previous one's reports.
	start1, _ := tr.TermStart()
	lead(false)
	waitUntil(t, "the term to end", func() bool { _, ok := tr.TermStart(); return !ok })
	time.Sleep(2 * time.Millisecond)
	lead(true)
	waitUntil(t, "a new term", func() bool { s, ok := tr.TermStart(); return ok && s.After(start1) })
	r, ok := tr.Report("n2")
	start2, _ := tr.TermStart()
	if !ok || r.Reported || !r.Arrived.Equal(start2) {
		t.Fatalf("Report after a new term = %+v, want unreported, arrived at the term start %v", r, start2)
	}
}

// Many waiting probes share rounds.
func TestTrackerBatchesRounds(t *testing.T) {
	var rounds atomic.Int32
	tr, _ := NewTracker(TrackerConfig{NodeID: "n1", VerifyLeader: func(context.Context) error {
		rounds.Add(1)
		time.Sleep(5 * time.Millisecond)
		return nil
	}})
	lead := runTracker(t, tr)
	lead(true)
	waitUntil(t, "the term to start", func() bool { _, ok := tr.TermStart(); return ok })
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			if _, err := tr.Handle(context.Background(), Request{Node: "n" + string(rune('a'+i%26))}); err != nil {
				t.Errorf("Handle: %v", err)
			}
		})
	}
	wg.Wait()
	if n := rounds.Load(); n >= 50 {
		t.Fatalf("%d rounds for 50 concurrent probes; want them batched", n)
	}
}

func TestLiveness(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	tr, _ := NewTracker(TrackerConfig{NodeID: "n1", VerifyLeader: func(context.Context) error { return nil }, Now: func() time.Time { return now }, PriorQuiet: 500 * time.Millisecond})
	hintAt := now.Add(-400 * time.Millisecond)
	l, err := NewLiveness(tr, 500*time.Millisecond, clock, func() (string, time.Time, bool) { return "n0", hintAt, true })
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := l.Alive("n2"); ok {
		t.Fatal("alive while not leading")
	}
	lead := runTracker(t, tr)
	lead(true)
	waitUntil(t, "the term to start", func() bool { _, ok := tr.TermStart(); return ok })
	termStart := now

	if ok, _ := l.Alive("n2"); !ok {
		t.Fatal("a node not yet heard in a new term is dead at once")
	}
	if r, _ := tr.Report("n2"); !r.Arrived.Equal(termStart.Add(-500 * time.Millisecond)) {
		t.Fatalf("Report of a node not heard: arrived %v, want PriorQuiet before the term start", r.Arrived)
	}
	if ok, _ := l.Alive("n0"); !ok {
		t.Fatal("the predecessor heard 400ms ago is dead already")
	}
	now = now.Add(150 * time.Millisecond)
	if ok, since := l.Alive("n0"); ok || !since.Equal(hintAt) {
		t.Fatalf("predecessor: alive=%v since %v; want dead since the hint %v", ok, since, hintAt)
	}
	if _, err := tr.Handle(context.Background(), Request{Node: "n3"}); err != nil {
		t.Fatal(err)
	}
	heard := now
	now = now.Add(400 * time.Millisecond)
	if ok, _ := l.Alive("n3"); !ok {
		t.Fatal("n3 heard 400ms ago is dead")
	}
	if ok, since := l.Alive("n2"); ok || !since.Equal(termStart) {
		t.Fatalf("n2 never heard: alive=%v since %v; want dead since the term start", ok, since)
	}
	now = now.Add(200 * time.Millisecond)
	if ok, since := l.Alive("n3"); ok || !since.Equal(heard) {
		t.Fatalf("n3 silent 600ms: alive=%v since %v; want dead since %v", ok, since, heard)
	}
	if ok, _ := l.Alive("n1"); !ok {
		t.Fatal("the leader itself is dead")
	}
	if _, err := tr.Handle(context.Background(), Request{Node: "n3", Leaving: true}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := l.Alive("n3"); ok || !l.Leaving("n3") {
		t.Fatal("a leaving node counts as alive")
	}
	if _, err := tr.Handle(context.Background(), Request{Node: "n3"}); err != nil {
		t.Fatal(err)
	}
	if ok, since := l.Alive("n3"); !ok || !since.Equal(now) {
		t.Fatalf("n3 back: alive=%v since %v; want alive since now", ok, since)
	}
}

type fakeSender struct {
	mu     sync.Mutex
	inFly  int
	max    int
	answer string // leader id in answers
	fail   bool
	reqs   []Request
}

func (s *fakeSender) Send(_ context.Context, leaderID, _ string, req Request) (Response, error) {
	s.mu.Lock()
	s.inFly++
	s.max = max(s.max, s.inFly)
	s.reqs = append(s.reqs, req)
	answer, fail := s.answer, s.fail
	s.mu.Unlock()
	time.Sleep(3 * time.Millisecond)
	s.mu.Lock()
	s.inFly--
	s.mu.Unlock()
	if fail {
		return Response{}, errors.New("unreachable")
	}
	if answer == "" {
		answer = leaderID
	}
	return Response{Leader: answer, Grants: map[string]uint64{"v": 1}}, nil
}

// waitSent waits until n more probes than now have been sent.
func (s *fakeSender) waitSent(t *testing.T, n int) {
	t.Helper()
	s.mu.Lock()
	want := len(s.reqs) + n
	s.mu.Unlock()
	waitUntil(t, fmt.Sprintf("%d more probes", n), func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.reqs) >= want
	})
}

func TestProber(t *testing.T) {
	var clock atomic.Int64
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return base.Add(time.Duration(clock.Add(1))) } // every reading is later
	s := &fakeSender{}
	var got atomic.Int32
	p, err := NewProber(ProberConfig{
		NodeID:     "n2",
		Interval:   time.Millisecond,
		Leader:     func() (string, string) { return "n1", "10.0.0.1:7700" },
		Local:      func(context.Context, Request) (Response, error) { return Response{}, errors.New("not local") },
		Sender:     s,
		Holding:    func(uint64) map[string]uint64 { return map[string]uint64{"h": 2} },
		OnResponse: func(uint64, Response) { got.Add(1) },
		Now:        now,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	waitUntil(t, "answered probes", func() bool { return got.Load() >= 5 })
	c := p.QuorumContact()
	if c.IsZero() {
		t.Fatal("no quorum contact after answered probes")
	}
	// A leader id that differs from the one asked is no contact.
	s.mu.Lock()
	s.answer = "n9"
	s.mu.Unlock()
	s.waitSent(t, 2) // the probe in flight at the change has been answered
	stale := p.QuorumContact()
	s.waitSent(t, 5)
	if !p.QuorumContact().Equal(stale) {
		t.Fatal("answers from another leader advanced the quorum contact")
	}
	p.SetLeaving(true)
	s.mu.Lock()
	s.answer = ""
	s.mu.Unlock()
	waitUntil(t, "a leaving probe", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		last := s.reqs[len(s.reqs)-1]
		return last.Leaving && last.Holding["h"] == 2 && last.Node == "n2"
	})
	cancel()
	<-done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.max != 1 {
		t.Fatalf("%d probes in flight at once; want 1", s.max)
	}
}

// QuorumContact is the send time, taken before the probe goes out.
func TestProberContactIsSendTime(t *testing.T) {
	var calls atomic.Int32
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var answered time.Time
	var mu sync.Mutex
	clockNow := t0
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clockNow }
	p, _ := NewProber(ProberConfig{
		NodeID:   "n1",
		Interval: time.Hour,
		Leader:   func() (string, string) { return "n1", "" },
		Local: func(context.Context, Request) (Response, error) {
			calls.Add(1)
			mu.Lock()
			clockNow = clockNow.Add(time.Second) // the answer takes a second
			answered = clockNow
			mu.Unlock()
			return Response{Leader: "n1"}, nil
		},
		Sender: &fakeSender{},
		Now:    now,
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	waitUntil(t, "one probe", func() bool { return !p.QuorumContact().IsZero() })
	if c := p.QuorumContact(); !c.Equal(t0) || !answered.After(c) {
		t.Fatalf("QuorumContact = %v, want the send time %v (answered %v)", c, t0, answered)
	}
}

// A node not heard from in this term counts as last heard when a majority
// of voters had last heard from an earlier leader, once that majority has
// said so and when that is before the term's start less PriorQuiet.
func TestTrackerPriorContactBound(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	tr, err := NewTracker(TrackerConfig{
		NodeID:       "n2",
		VerifyLeader: func(context.Context) error { return nil },
		PriorQuiet:   500 * time.Millisecond,
		Voters:       func() []string { return []string{"n1", "n2", "n3"} },
		Now:          clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	lead := runTracker(t, tr)
	lead(true)
	waitUntil(t, "the term to start", func() bool { _, ok := tr.TermStart(); return ok })
	start, _ := tr.TermStart()
	fallback := start.Add(-500 * time.Millisecond)
	arrived := func() time.Time {
		r, ok := tr.Report("n1")
		if !ok || r.Reported {
			t.Fatalf("report of n1: %+v, %v", r, ok)
		}
		return r.Arrived
	}
	var seq uint64
	probe := func(node string, p *Prior) {
		t.Helper()
		seq++
		if _, err := tr.Handle(context.Background(), Request{Node: node, Incarnation: 1, Seq: seq, Prior: p}); err != nil {
			t.Fatalf("probe of %s: %v", node, err)
		}
	}
	advance(time.Second) // the election took a second
	if got := arrived(); !got.Equal(fallback) {
		t.Fatalf("no priors: Arrived %s, want term start less PriorQuiet %s", got, fallback)
	}
	// Priors for another leader or another term say nothing here.
	probe("n3", &Prior{Leader: "n9", Term: 1, Ago: 1500 * time.Millisecond})
	probe("n2", &Prior{Leader: "n2", Term: 7, Ago: 1500 * time.Millisecond})
	if got := arrived(); !got.Equal(fallback) {
		t.Fatalf("foreign priors counted: Arrived %s", got)
	}
	// One voter alone is no majority.
	probe("n2", &Prior{Leader: "n2", Term: 1, Ago: 1900 * time.Millisecond})
	if got := arrived(); !got.Equal(fallback) {
		t.Fatalf("one prior counted: Arrived %s", got)
	}
	// n3 heard from the old leader later than n2: the later of the two
	// bounds when the old leader's last answer was confirmed.
	probe("n3", &Prior{Leader: "n2", Term: 1, Ago: 1700 * time.Millisecond})
	bound := clock().Add(-1700 * time.Millisecond)
	if got := arrived(); !got.Equal(bound) {
		t.Fatalf("two priors: Arrived %s, want %s", got, bound)
	}
	// A node's later, blunter statement does not replace its sharper one.
	probe("n3", &Prior{Leader: "n2", Term: 1, Ago: 0})
	if got := arrived(); !got.Equal(bound) {
		t.Fatalf("a later prior replaced an earlier: Arrived %s, want %s", got, bound)
	}
	// A bound later than the fallback is not used.
	probe("n1", &Prior{Leader: "n2", Term: 1, Ago: 0})
	lead(true) // a new term: priors start over
	waitUntil(t, "the next term", func() bool { s, _ := tr.TermStart(); return !s.Equal(start) })
	start, _ = tr.TermStart()
	seq = 100
	probe("n2", &Prior{Leader: "n2", Term: 2, Ago: 100 * time.Millisecond})
	probe("n3", &Prior{Leader: "n2", Term: 2, Ago: 100 * time.Millisecond})
	if r, _ := tr.Report("n1"); !r.Arrived.Equal(start.Add(-500 * time.Millisecond)) {
		t.Fatalf("a bound later than the fallback was used: Arrived %s, term start %s", r.Arrived, start)
	}
}

// Probes that keep failing are said at WARN once they have failed for
// WarnAfter, once, and their recovery at INFO.
func TestProberWarnsWhileProbesFail(t *testing.T) {
	var logs testutil.SyncBuffer
	var failing atomic.Bool
	failing.Store(true)
	p, err := NewProber(ProberConfig{
		NodeID:    "n1",
		Interval:  5 * time.Millisecond,
		WarnAfter: 100 * time.Millisecond,
		Leader:    func() (string, string) { return "n1", "" },
		Local: func(context.Context, Request) (Response, error) {
			if failing.Load() {
				return Response{}, fmt.Errorf("%w: no quorum", ErrNotLeader)
			}
			return Response{Leader: "n1"}, nil
		},
		Sender: &fakeSender{},
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	const warning = `"msg":"probes of the leader failing`
	waitUntil(t, "a warning", func() bool { return strings.Contains(logs.String(), warning) })
	if s := logs.String(); !strings.Contains(s, `no quorum`) {
		t.Fatalf("the warning does not name the error:\n%s", s)
	}
	time.Sleep(200 * time.Millisecond) // more failures: no second warning
	failing.Store(false)
	waitUntil(t, "the recovery said", func() bool {
		return strings.Contains(logs.String(), `"msg":"probes of the leader answered again"`)
	})
	if c := strings.Count(logs.String(), warning); c != 1 {
		t.Fatalf("%d warnings for one run of failures, want 1:\n%s", c, logs.String())
	}
	failing.Store(true) // a new run of failures is said again
	waitUntil(t, "the second run's warning", func() bool { return strings.Count(logs.String(), warning) == 2 })
}
