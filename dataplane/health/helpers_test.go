package health

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

// fakeClock is the shared fake clock as this package's Clock.
type fakeClock struct{ *testutil.FakeClock }

func newFakeClock() *fakeClock { return &fakeClock{testutil.NewFakeClock()} }

func (c *fakeClock) NewTimer(d time.Duration) Timer { return c.FakeClock.NewTimer(d) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, what, cond)
}

// startMonitor runs m until the test ends and checks that Run leaves no checker behind.
func startMonitor(t *testing.T, m *Monitor) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
		if n := m.liveCheckers.Load(); n != 0 {
			t.Errorf("%d checker goroutines still running after Run returned", n)
		}
	})
}

func status(t *testing.T, m *Monitor, pool, addr string) TargetStatus {
	t.Helper()
	for _, ts := range m.View() {
		if ts.Pool == pool && ts.Addr == addr {
			return ts
		}
	}
	t.Fatalf("no target %s/%s in view", pool, addr)
	return TargetStatus{}
}

// stepCheck fires the next active check of the only checker running and
// waits until its result is recorded as check number n.
func stepCheck(t *testing.T, clk *fakeClock, m *Monitor, pool, addr string, interval time.Duration, n uint64) {
	t.Helper()
	waitFor(t, "checker to arm its timer", func() bool { return clk.Waiters() >= 1 })
	clk.Advance(interval + interval/5)
	waitFor(t, "check to be recorded", func() bool { return status(t, m, pool, addr).Checks >= n })
	if got := status(t, m, pool, addr).Checks; got != n {
		t.Fatalf("checks = %d, want %d (one check per step)", got, n)
	}
}

// backend is a loopback HTTP server whose answer the test changes.
type backend struct {
	srv    *httptest.Server
	status atomic.Int32
	hang   atomic.Bool
	hits   atomic.Int64
	mu     sync.Mutex
	last   *http.Request
}

func newBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{}
	b.status.Store(http.StatusOK)
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		b.mu.Lock()
		b.last = r.Clone(context.Background())
		b.mu.Unlock()
		if b.hang.Load() {
			<-r.Context().Done()
			return
		}
		if s := int(b.status.Load()); s >= 300 && s < 400 {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(int(b.status.Load()))
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

func (b *backend) lastRequest() *http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

func poolWith(hc *fsm.HealthCheck, o *fsm.Outlier, addrs ...string) fsm.PoolSpec {
	p := fsm.PoolSpec{HealthCheck: hc, Outlier: o}
	for _, a := range addrs {
		p.Backends = append(p.Backends, fsm.Backend{Addr: a, Weight: 1})
	}
	return p
}

// metricValue reads one counter or gauge sample from reg; labels are name, value pairs.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, mt := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range mt.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if c := mt.GetCounter(); c != nil {
				return c.GetValue()
			}
			return mt.GetGauge().GetValue()
		}
	}
	return 0
}
