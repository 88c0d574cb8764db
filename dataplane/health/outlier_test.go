package health

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/fsm"
)

// resetListener is a backend that accepts and at once resets every connection.
func resetListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// proxyOnce does what the proxy does for one request: send it and classify the exchange.
func proxyOnce(t *testing.T, client *http.Client, addr string) Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	switch {
	case err == nil:
		_ = resp.Body.Close()
		if resp.StatusCode >= 500 {
			return Status5xx
		}
		return Success
	case errors.Is(err, syscall.ECONNREFUSED):
		return ConnectError
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF):
		return Reset
	}
	t.Fatalf("unexpected upstream error: %v", err)
	return Success
}

func TestPassiveEjectionOfResettingBackend(t *testing.T) {
	const base = 10 * time.Second
	clk := newFakeClock()
	bad := resetListener(t)
	good := newBackend(t)
	reg := prometheus.NewRegistry()
	m := NewMonitor(Options{Clock: clk, Registerer: reg, Seed: 4})
	m.Update(map[string]fsm.PoolSpec{"app": poolWith(nil,
		&fsm.Outlier{ConsecutiveConnectErrors: 3, BaseEjection: fsm.Duration(base)},
		bad, good.addr())})
	startMonitor(t, m)
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	t.Cleanup(client.CloseIdleConnections)

	for round, wantEjection := range []time.Duration{base, 2 * base, 3 * base} {
		for i := range 3 {
			if !m.Healthy("app", bad) {
				t.Fatalf("round %d: ejected after %d errors, want 3", round, i)
			}
			o := proxyOnce(t, client, bad)
			if o != Reset {
				t.Fatalf("round %d: outcome %v, want reset", round, o)
			}
			m.Observe("app", bad, o)
			m.Observe("app", good.addr(), proxyOnce(t, client, good.addr()))
		}
		ejectedAt := clk.Now()
		st := status(t, m, "app", bad)
		if st.Healthy || m.Healthy("app", bad) {
			t.Fatalf("round %d: not ejected after 3 resets", round)
		}
		if want := "outlier: 3 consecutive connect errors (last: reset)"; st.Reason != want {
			t.Fatalf("round %d: reason = %q, want %q", round, st.Reason, want)
		}
		if got := st.EjectedUntil.Sub(ejectedAt); got != wantEjection {
			t.Fatalf("round %d: ejected for %s, want %s", round, got, wantEjection)
		}
		if st.Ejections != round+1 {
			t.Fatalf("round %d: ejections = %d, want %d", round, st.Ejections, round+1)
		}
		if !m.Healthy("app", good.addr()) {
			t.Fatalf("round %d: the good backend was ejected", round)
		}
		if h, n := m.HealthyCount("app"); h != 1 || n != 2 {
			t.Fatalf("round %d: HealthyCount = %d, %d; want 1, 2", round, h, n)
		}

		waitFor(t, "ejection timer", func() bool { return clk.Waiters() == 1 })
		clk.Advance(wantEjection - time.Second)
		// The reaper's only timer is not due: nothing can return the backend yet.
		if clk.Waiters() != 1 || m.Healthy("app", bad) {
			t.Fatalf("round %d: returned before its ejection time", round)
		}
		clk.Advance(time.Second)
		waitFor(t, "ejected backend to return", func() bool { return m.Healthy("app", bad) })
		st = status(t, m, "app", bad)
		if st.Reason != "outlier: ejection ended" || !st.EjectedUntil.IsZero() || !st.Since.Equal(clk.Now()) {
			t.Fatalf("round %d: after return: %+v", round, st)
		}
	}
	if got := metricValue(t, reg, "rafter_health_ejections_total", "pool", "app"); got != 3 {
		t.Fatalf("rafter_health_ejections_total = %v, want 3", got)
	}
	if got := metricValue(t, reg, "rafter_health_transitions_total", "pool", "app", "to", "unhealthy"); got != 3 {
		t.Fatalf("transitions to unhealthy = %v, want 3", got)
	}
}

func TestEjectionTimeGrowsAndIsCapped(t *testing.T) {
	const base = time.Second
	clk := newFakeClock()
	m := NewMonitor(Options{Clock: clk})
	m.Update(map[string]fsm.PoolSpec{"p": poolWith(nil,
		&fsm.Outlier{Consecutive5xx: 2, BaseEjection: fsm.Duration(base), MaxEjectedPercent: 100}, "10.0.0.1:80")})
	eject := func() time.Duration {
		t.Helper()
		m.Observe("p", "10.0.0.1:80", Status5xx)
		m.Observe("p", "10.0.0.1:80", Status5xx)
		st := status(t, m, "p", "10.0.0.1:80")
		if st.Healthy || st.Reason != "outlier: 2 consecutive 5xx" {
			t.Fatalf("not ejected after 2 5xx: %+v", st)
		}
		d := st.EjectedUntil.Sub(clk.Now())
		clk.Advance(d)
		if next := m.expireEjections(); !next.IsZero() || !m.Healthy("p", "10.0.0.1:80") {
			t.Fatalf("not returned at its time")
		}
		return d
	}
	for i := 1; i <= 12; i++ {
		if got, want := eject(), base*time.Duration(min(i, MaxEjectionMultiplier)); got != want {
			t.Fatalf("ejection %d lasted %s, want %s", i, got, want)
		}
	}
	// A success in between resets the streak.
	m.Observe("p", "10.0.0.1:80", Status5xx)
	m.Observe("p", "10.0.0.1:80", Success)
	m.Observe("p", "10.0.0.1:80", Status5xx)
	if !m.Healthy("p", "10.0.0.1:80") {
		t.Fatal("ejected although a success broke the streak")
	}
	m.Observe("p", "10.0.0.1:80", Success)
	// Long enough in rotation: the multiplier starts over.
	clk.Advance(MaxEjectionMultiplier * base)
	if got := eject(); got != base {
		t.Fatalf("ejection after a long healthy period lasted %s, want %s", got, base)
	}
}

func TestMaxEjectedPercent(t *testing.T) {
	tests := []struct {
		backends, percent, wantEjected int
	}{
		{4, 50, 2},
		{4, 0, 2}, // default 50
		{3, 50, 1},
		{1, 50, 0}, // a lone backend is never ejected
		{5, 100, 5},
		{10, 10, 1},
	}
	for _, tc := range tests {
		reg := prometheus.NewRegistry()
		m := NewMonitor(Options{Clock: newFakeClock(), Registerer: reg})
		var addrs []string
		for i := range tc.backends {
			addrs = append(addrs, "10.0.0."+string(rune('1'+i))+":80")
		}
		m.Update(map[string]fsm.PoolSpec{"p": poolWith(nil,
			&fsm.Outlier{Consecutive5xx: 1, MaxEjectedPercent: tc.percent}, addrs...)})
		for range 3 {
			for _, a := range addrs {
				m.Observe("p", a, Status5xx)
			}
		}
		ejected := 0
		for _, a := range addrs {
			if !m.Healthy("p", a) {
				ejected++
			}
		}
		if ejected != tc.wantEjected {
			t.Errorf("%d backends, max %d%%: %d ejected, want %d", tc.backends, tc.percent, ejected, tc.wantEjected)
		}
		if h, n := m.HealthyCount("p"); h != tc.backends-tc.wantEjected || n != tc.backends {
			t.Errorf("%d backends, max %d%%: HealthyCount = %d, %d", tc.backends, tc.percent, h, n)
		}
		if tc.wantEjected < tc.backends {
			if got := metricValue(t, reg, "rafter_health_ejections_suppressed_total", "pool", "p"); got == 0 {
				t.Errorf("%d backends, max %d%%: no suppressed ejection counted", tc.backends, tc.percent)
			}
		}
		if got := metricValue(t, reg, "rafter_health_backends_ejected", "pool", "p"); got != float64(tc.wantEjected) {
			t.Errorf("%d backends, max %d%%: ejected gauge = %v", tc.backends, tc.percent, got)
		}
	}
}

func TestObserveIgnoresWhatItCannotJudge(t *testing.T) {
	m := NewMonitor(Options{Clock: newFakeClock()})
	m.Update(map[string]fsm.PoolSpec{
		"off":     poolWith(nil, nil, "10.0.0.1:80", "10.0.0.2:80"),
		"no5xx":   poolWith(nil, &fsm.Outlier{ConsecutiveConnectErrors: 1}, "10.0.0.1:80", "10.0.0.2:80"),
		"no-conn": poolWith(nil, &fsm.Outlier{Consecutive5xx: 1}, "10.0.0.1:80", "10.0.0.2:80"),
	})
	for range 10 {
		m.Observe("off", "10.0.0.1:80", ConnectError)
		m.Observe("no5xx", "10.0.0.1:80", Status5xx)
		m.Observe("no-conn", "10.0.0.1:80", Timeout)
		m.Observe("unknown", "10.0.0.1:80", ConnectError)
	}
	for _, ts := range m.View() {
		if !ts.Healthy {
			t.Errorf("%s/%s ejected by a disabled trigger: %q", ts.Pool, ts.Addr, ts.Reason)
		}
	}
	if !m.Healthy("unknown", "10.0.0.9:80") {
		t.Error("an unknown target must be healthy")
	}
	// A 5xx proves the connection works: it ends a connect-error streak.
	m.Update(map[string]fsm.PoolSpec{"p": poolWith(nil, &fsm.Outlier{ConsecutiveConnectErrors: 2}, "10.0.0.1:80", "10.0.0.2:80")})
	m.Observe("p", "10.0.0.1:80", ConnectError)
	m.Observe("p", "10.0.0.1:80", Status5xx)
	m.Observe("p", "10.0.0.1:80", Reset)
	if !m.Healthy("p", "10.0.0.1:80") {
		t.Error("ejected although a 5xx broke the connect-error streak")
	}
	m.Observe("p", "10.0.0.1:80", Timeout)
	if m.Healthy("p", "10.0.0.1:80") {
		t.Error("not ejected after two connect errors in a row")
	}
}
