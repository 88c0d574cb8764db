package health

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

func TestUpdateKeepsStateOfTargetsThatStay(t *testing.T) {
	const interval = time.Second
	clk := newFakeClock()
	x, y, z := newBackend(t), newBackend(t), newBackend(t)
	x.status.Store(http.StatusInternalServerError)
	m := NewMonitor(Options{Clock: clk, Seed: 5})
	hc := &fsm.HealthCheck{Path: "/healthz", Interval: fsm.Duration(interval), Fall: 1, Rise: 1}
	m.Update(map[string]fsm.PoolSpec{"app": poolWith(hc, nil, x.addr())})
	startMonitor(t, m)
	waitFor(t, "one checker", func() bool { return m.liveCheckers.Load() == 1 })
	stepCheck(t, clk, m, "app", x.addr(), interval, 1)
	before := status(t, m, "app", x.addr())
	if before.Healthy {
		t.Fatal("x should have failed its check")
	}

	steps := []struct {
		name        string
		pools       map[string]fsm.PoolSpec
		wantTargets []string // pool/addr, sorted
		checkers    int64
		xHealthy    bool
		xReason     string
		xChecks     uint64 // checks of x kept across the update
		xFailures   int
	}{
		{
			name: "unrelated pool fields change, a backend is added",
			pools: map[string]fsm.PoolSpec{"app": func() fsm.PoolSpec {
				p := poolWith(hc, &fsm.Outlier{Consecutive5xx: 5}, x.addr(), y.addr(), x.addr())
				p.Balancer, p.PanicThreshold, p.Backends[0].Weight = fsm.BalancerLeastRequest, 30, 7
				return p
			}()},
			wantTargets: []string{"app/" + x.addr(), "app/" + y.addr()},
			checkers:    2, xHealthy: false, xReason: before.Reason, xChecks: 1, xFailures: 1,
		},
		{
			name: "health_check changes: checks restart, verdict stays",
			pools: map[string]fsm.PoolSpec{"app": poolWith(
				&fsm.HealthCheck{Path: "/ready", Interval: fsm.Duration(interval), Fall: 1, Rise: 1},
				nil, x.addr(), y.addr())},
			wantTargets: []string{"app/" + x.addr(), "app/" + y.addr()},
			checkers:    2, xHealthy: false, xReason: before.Reason, xChecks: 1, xFailures: 0,
		},
		{
			name: "a backend is removed and another pool appears",
			pools: map[string]fsm.PoolSpec{
				"app":   poolWith(&fsm.HealthCheck{Path: "/ready", Interval: fsm.Duration(interval), Fall: 1, Rise: 1}, nil, x.addr()),
				"other": poolWith(nil, nil, z.addr()),
			},
			wantTargets: []string{"app/" + x.addr(), "other/" + z.addr()},
			checkers:    1, xHealthy: false, xReason: before.Reason, xChecks: 1,
		},
		{
			name: "health_check removed: the failed target returns",
			pools: map[string]fsm.PoolSpec{
				"app":   poolWith(nil, nil, x.addr()),
				"other": poolWith(nil, nil, z.addr()),
			},
			wantTargets: []string{"app/" + x.addr(), "other/" + z.addr()},
			checkers:    0, xHealthy: true, xReason: "active check removed", xChecks: 1,
		},
		{
			name:     "everything removed",
			pools:    map[string]fsm.PoolSpec{},
			checkers: 0,
		},
	}
	for _, s := range steps {
		m.Update(s.pools)
		m.Update(s.pools) // idempotent
		waitFor(t, s.name+": checker count", func() bool { return m.liveCheckers.Load() == s.checkers })
		view := m.View()
		var got []string
		for _, ts := range view {
			got = append(got, ts.Pool+"/"+ts.Addr)
		}
		slices.Sort(s.wantTargets)
		if len(got) != len(s.wantTargets) {
			t.Fatalf("%s: targets %v, want %v", s.name, got, s.wantTargets)
		}
		for i := range got {
			if got[i] != s.wantTargets[i] {
				t.Fatalf("%s: targets %v, want %v", s.name, got, s.wantTargets)
			}
		}
		if len(s.wantTargets) == 0 {
			if h, n := m.HealthyCount("app"); h != 0 || n != 0 {
				t.Fatalf("%s: HealthyCount of a removed pool = %d, %d", s.name, h, n)
			}
			continue
		}
		st := status(t, m, "app", x.addr())
		if st.Healthy != s.xHealthy || st.Reason != s.xReason || st.Checks != s.xChecks || st.ActiveFailures != s.xFailures {
			t.Fatalf("%s: x = %+v; want healthy %v reason %q checks %d failures %d",
				s.name, st, s.xHealthy, s.xReason, s.xChecks, s.xFailures)
		}
		if s.xHealthy == before.Healthy && !st.Since.Equal(before.Since) {
			t.Fatalf("%s: since moved from %v to %v without a verdict change", s.name, before.Since, st.Since)
		}
	}
	if !m.Healthy("app", y.addr()) {
		t.Fatal("a removed target must read as unknown, hence healthy")
	}
}

func TestUpdateCountsPerPool(t *testing.T) {
	m := NewMonitor(Options{Clock: newFakeClock()})
	m.Update(map[string]fsm.PoolSpec{
		"a": poolWith(nil, &fsm.Outlier{Consecutive5xx: 1}, "10.0.0.1:80", "10.0.0.2:80", "10.0.0.2:80"),
		"b": poolWith(nil, nil, "10.0.0.1:80"),
	})
	m.Observe("a", "10.0.0.1:80", Status5xx)
	checks := []struct {
		pool            string
		healthy, total  int
		addr            string
		wantAddrHealthy bool
	}{
		{"a", 1, 2, "10.0.0.1:80", false},
		{"b", 1, 1, "10.0.0.1:80", true}, // the same address in another pool is another target
		{"none", 0, 0, "10.0.0.1:80", true},
	}
	for _, c := range checks {
		if h, n := m.HealthyCount(c.pool); h != c.healthy || n != c.total {
			t.Errorf("HealthyCount(%s) = %d, %d; want %d, %d", c.pool, h, n, c.healthy, c.total)
		}
		if got := m.Healthy(c.pool, c.addr); got != c.wantAddrHealthy {
			t.Errorf("Healthy(%s, %s) = %v", c.pool, c.addr, got)
		}
	}
	// Removing the ejected target frees its place in the ejection budget.
	m.Update(map[string]fsm.PoolSpec{"a": poolWith(nil, &fsm.Outlier{Consecutive5xx: 1}, "10.0.0.2:80", "10.0.0.3:80")})
	if h, n := m.HealthyCount("a"); h != 2 || n != 2 {
		t.Fatalf("after removal HealthyCount(a) = %d, %d; want 2, 2", h, n)
	}
	m.Observe("a", "10.0.0.3:80", Status5xx)
	if m.Healthy("a", "10.0.0.3:80") {
		t.Fatal("removed ejected target still counts against max_ejected_percent")
	}
	// Turning outlier detection off ends the ejection.
	m.Update(map[string]fsm.PoolSpec{"a": poolWith(nil, nil, "10.0.0.2:80", "10.0.0.3:80")})
	if st := status(t, m, "a", "10.0.0.3:80"); !st.Healthy || st.Reason != "outlier detection disabled" {
		t.Fatalf("after disabling outlier detection: %+v", st)
	}
}

func TestRunRestartsAndStopsCheckers(t *testing.T) {
	clk := newFakeClock()
	b := newBackend(t)
	m := NewMonitor(Options{Clock: clk})
	m.Update(map[string]fsm.PoolSpec{"app": poolWith(&fsm.HealthCheck{Path: "/"}, nil, b.addr())})
	if n := m.liveCheckers.Load(); n != 0 {
		t.Fatalf("%d checkers before Run", n)
	}
	for round := range 2 {
		done := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			defer close(done)
			m.Run(ctx)
		}()
		waitFor(t, "checker started by Run", func() bool { return m.liveCheckers.Load() == 1 })
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Run did not return", round)
		}
		if n := m.liveCheckers.Load(); n != 0 {
			t.Fatalf("round %d: %d checkers left after Run returned", round, n)
		}
	}
}
