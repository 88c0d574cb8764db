package systemtest

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

func rolloutSpec(steps []int, interval string, minRequests int) map[string]any {
	return map[string]any{"route": "app", "stable": "v1", "canary": "v2", "steps": steps,
		"interval": interval, "min_requests": minRequests, "max_error_rate": 0.05}
}

// A healthy canary goes through every step and ends with the whole route
// on it; every step's observed share is within 2 points of its weight.
func TestRolloutHealthyCanary(t *testing.T) {
	c := StartCluster(t, bin, 3)
	port := dataPort(t, c.Agents)
	rolloutSetup(t, c, port, false)
	all := func() []*Agent { return c.Agents }
	l := startLoad(t, all, port, 4, 60000, 120*time.Second)
	steps := []int{10, 50, 100}
	c.putJSON(t, c.Leader(30*time.Second), "rollouts", "r1", rolloutSpec(steps, "3s", 100))
	st := c.waitRollout(t, all, "r1", 90*time.Second, "r1 to end", func(st *fsm.RolloutStatus) bool { return st.Terminal() })
	l.halt()

	if st.State != fsm.RolloutSucceeded || st.Weight != 100 {
		t.Fatalf("rollout ended %s at %d%% (%s)", st.State, st.Weight, st.Reason)
	}
	checkHistory(t, st, steps, len(steps), "passed")
	var measured uint64
	for _, h := range st.History {
		f := h.Figures
		t.Logf("step %d at %d%%: %d canary + %d stable requests from %d nodes, observed share %.2f%%, p99 %v, window %v",
			h.Step+1, h.Weight, f.Requests, f.StableRequests, f.Nodes, f.Share, f.P99.D(), f.Window.D())
		if math.Abs(f.Share-float64(h.Weight)) > 2 {
			t.Errorf("step %d: observed share %.2f%%, want %d±2", h.Step+1, f.Share, h.Weight)
		}
		if f.Nodes != 3 || f.Errors != 0 {
			t.Errorf("step %d: figures from %d nodes with %d errors", h.Step+1, f.Nodes, f.Errors)
		}
		measured += f.Requests + f.StableRequests
	}
	if measured < 2000 {
		t.Errorf("the step windows measured %d requests, want at least 2000", measured)
	}
	for _, a := range c.Agents {
		if n := l.count(&l.byNode, a.ID); n < 500 {
			t.Errorf("%s proxied %d requests, want at least 500", a.ID, n)
		}
	}
	t.Logf("client: %d sent, %d ok, %d 5xx, %d errors; v1 %d, v2 %d", l.sent.Load(), l.ok.Load(), l.failed.Load(),
		l.errs.Load(), l.count(&l.byPool, "v1"), l.count(&l.byPool, "v2"))
	if l.failed.Load()+l.errs.Load() != 0 {
		t.Errorf("%d requests failed during a healthy rollout", l.failed.Load()+l.errs.Load())
	}
	client := newProxyClient(nil)
	for _, a := range c.Agents {
		c.waitSplit(t, a, 0, 100)
		waitOnly(t, client, a, port, "v2")
		for range 20 {
			if code, body, err := get(client, proxyURL(a, port, "/")); err != nil || code != 200 || body != "v2" {
				t.Fatalf("%s after the rollout: %d %q %v", a.ID, code, body, err)
			}
		}
	}
}

// A canary answering 500 is rolled back at its first step: at most that
// step's share of the requests plus one window's worth failed.
func TestRolloutFailingCanaryRollsBack(t *testing.T) {
	c := StartCluster(t, bin, 3)
	port := dataPort(t, c.Agents)
	rolloutSetup(t, c, port, true)
	all := func() []*Agent { return c.Agents }
	l := startLoad(t, all, port, 4, 40000, 90*time.Second)
	testutil.WaitFor(t, 30*time.Second, "steady traffic", func() bool { return l.ok.Load() >= 300 })
	sent0, failed0 := l.sent.Load(), l.failed.Load()
	start := time.Now()
	const interval = 2 * time.Second
	c.putJSON(t, c.Leader(30*time.Second), "rollouts", "r1", rolloutSpec([]int{10, 50, 100}, interval.String(), 30))
	st := c.waitRollout(t, all, "r1", 60*time.Second, "r1 to end", func(st *fsm.RolloutStatus) bool { return st.Terminal() })
	elapsed := time.Since(start)
	// Requests go on through the old split until each node has applied
	// the verdict; they count too.
	for _, a := range c.Agents {
		c.waitSplit(t, a, 100, 0)
	}
	l.halt()

	if st.State != fsm.RolloutFailed || st.Weight != 0 {
		t.Fatalf("rollout ended %s at %d%%", st.State, st.Weight)
	}
	checkHistory(t, st, []int{10}, 1, "failed")
	f := st.History[0].Figures
	if f.ErrorRate <= 0.05 || !strings.Contains(st.Reason, "error rate") {
		t.Fatalf("failed with error rate %.3f: %s", f.ErrorRate, st.Reason)
	}
	sent := l.sent.Load() - sent0
	failed := l.failed.Load() - failed0
	rate := float64(sent) / time.Since(start).Seconds()
	share := 0.10
	bound := share*float64(sent) + share*rate*interval.Seconds()
	t.Logf("failed after %v: %d of %d requests answered 5xx (bound %.0f: %.0f%% of them plus one %v window at %.0f req/s); figures %+v",
		elapsed.Round(time.Millisecond), failed, sent, bound, share*100, interval, rate, *f)
	if float64(failed) > bound {
		t.Errorf("%d requests failed, more than the step's share plus one window (%.0f)", failed, bound)
	}
	client := newProxyClient(nil)
	for _, a := range c.Agents {
		waitOnly(t, client, a, port, "v1")
		for range 50 {
			if code, body, err := get(client, proxyURL(a, port, "/")); err != nil || code != 200 || body != "v1" {
				t.Fatalf("%s after the rollback: %d %q %v", a.ID, code, body, err)
			}
		}
	}
}

// The leader is killed (SIGKILL) in the middle of a rollout: the new
// leader carries on from the committed step; no step is skipped or run
// twice.
func TestRolloutResumesAfterLeaderKill(t *testing.T) {
	c := StartCluster(t, bin, 3)
	port := dataPort(t, c.Agents)
	rolloutSetup(t, c, port, false)
	var mu sync.Mutex
	alive := slices.Clone(c.Agents)
	live := func() []*Agent {
		mu.Lock()
		defer mu.Unlock()
		return alive
	}
	l := startLoad(t, live, port, 6, 80000, 150*time.Second)
	steps := []int{10, 25, 50, 75, 100}
	leader := c.Leader(30 * time.Second)
	c.putJSON(t, leader, "rollouts", "r1", rolloutSpec(steps, "2s", 50))
	before := c.waitRollout(t, live, "r1", 60*time.Second, "r1 at its third step", func(st *fsm.RolloutStatus) bool {
		return st.State == fsm.RolloutProgressing && st.Step >= 2 || st.Terminal()
	})
	if before.Terminal() {
		t.Fatalf("rollout ended before the kill: %+v", before)
	}
	leader = c.Leader(30 * time.Second)
	mu.Lock()
	alive = slices.DeleteFunc(slices.Clone(alive), func(a *Agent) bool { return a == leader })
	mu.Unlock()
	c.Kill(leader)
	killedAt := before.Step
	next := c.Leader(30 * time.Second)
	t.Logf("killed leader %s at step %d (term %d); new leader %s", leader.ID, killedAt+1, before.Term, next.ID)

	st := c.waitRollout(t, live, "r1", 120*time.Second, "r1 to end on the new leader", func(st *fsm.RolloutStatus) bool { return st.Terminal() })
	l.halt()
	if st.State != fsm.RolloutSucceeded {
		t.Fatalf("rollout ended %s: %s", st.State, st.Reason)
	}
	checkHistory(t, st, steps, len(steps), "passed")
	var terms []string
	for _, h := range st.History {
		terms = append(terms, fmt.Sprintf("step %d: term %d index %d", h.Step+1, h.Term, h.Index))
	}
	t.Logf("history: %s", strings.Join(terms, "; "))
	if last := st.History[len(st.History)-1]; last.Term <= before.Term {
		t.Fatalf("the last step was decided in term %d, not after the killed leader's %d", last.Term, before.Term)
	}
	for i := 1; i < len(st.History); i++ {
		if st.History[i].Term < st.History[i-1].Term {
			t.Fatalf("step %d decided in term %d after step %d in term %d", i+1, st.History[i].Term, i, st.History[i-1].Term)
		}
	}
}

// Without traffic the rollout waits at its first step and never promotes;
// with traffic the same rollout moves on.
func TestRolloutWaitsWithoutTraffic(t *testing.T) {
	c := StartCluster(t, bin, 3)
	port := dataPort(t, c.Agents)
	rolloutSetup(t, c, port, false)
	leader := c.Leader(30 * time.Second)
	c.putJSON(t, leader, "rollouts", "r1", rolloutSpec([]int{10, 100}, "1s", 20))
	for _, a := range c.Agents {
		c.waitRollout(t, func() []*Agent { return []*Agent{a} }, "r1", 10*time.Second, a.ID+" to know r1",
			func(st *fsm.RolloutStatus) bool { return true })
	}
	// Five intervals without a request: the status must not move.
	quietUntil := time.Now().Add(5 * time.Second)
	checks := 0
	for time.Now().Before(quietUntil) {
		for _, a := range c.Agents {
			st, err := c.rolloutStatus(a, "r1")
			if err != nil {
				t.Fatal(err)
			}
			if st.State != fsm.RolloutProgressing || st.Step != 0 || st.Weight != 10 || len(st.History) != 0 {
				t.Fatalf("%s: a rollout without traffic moved: %+v", a.ID, st)
			}
			checks++
		}
		<-time.After(200 * time.Millisecond) // paces the observation; nothing waits on it
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	r, err := c.Do(ctx, leader, "GET", "/metrics", nil)
	cancel()
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("GET /metrics: %v %+v", err, r)
	}
	for _, want := range []string{`rafter_rollout_step{rollout="r1"} 1`, `rafter_rollout_state{rollout="r1",state="progressing"} 1`,
		`rafter_rollout_state{rollout="r1",state="succeeded"} 0`, `rafter_rollout_weight{rollout="r1"} 10`} {
		if !strings.Contains(string(r.Body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	all := func() []*Agent { return c.Agents }
	l := startLoad(t, all, port, 2, 20000, 60*time.Second)
	st := c.waitRollout(t, all, "r1", 60*time.Second, "r1 to move on with traffic", func(st *fsm.RolloutStatus) bool { return st.Terminal() })
	l.halt()
	if st.State != fsm.RolloutSucceeded || st.History[0].Figures.Requests < 20 {
		t.Fatalf("after traffic: %+v", st)
	}
	t.Logf("%d checks over 5s without traffic saw step 1 at 10%%; then %d requests took it to %s", checks, l.sent.Load(), st.State)
}
