package health

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

func TestActiveRiseFall(t *testing.T) {
	type step struct {
		status  int
		healthy bool
		reason  string // substring of the reason after this check; "" = not checked
	}
	const interval = time.Second
	tests := []struct {
		name  string
		hc    fsm.HealthCheck
		steps []step
	}{
		{
			name: "leaves after fall failures and returns after rise successes",
			hc:   fsm.HealthCheck{Path: "/healthz", Rise: 2, Fall: 3},
			steps: []step{
				{200, true, "new backend"},
				{500, true, ""},
				{500, true, ""},
				{500, false, "active: 3 consecutive failures: status 500"},
				{500, false, "active: 4 consecutive failures: status 500"},
				{200, false, ""},
				{500, false, ""}, // a failure resets the rise streak
				{200, false, ""},
				{200, true, "active: 2 consecutive successes"},
				{500, true, ""}, // a success reset the fall streak
				{200, true, ""},
			},
		},
		{
			name: "expected status honored",
			hc:   fsm.HealthCheck{Path: "/ready", Expect: 204, Rise: 1, Fall: 2},
			steps: []step{
				{204, true, ""},
				{200, true, ""},
				{200, false, "status 200, want 204"},
				{204, true, "active: 1 consecutive successes"},
			},
		},
		{
			name: "any 2xx or 3xx is up without expect",
			hc:   fsm.HealthCheck{Path: "/", Rise: 1, Fall: 1},
			steps: []step{
				{302, true, ""},
				{299, true, ""},
				{404, false, "status 404"},
				{301, true, ""},
				{503, false, "status 503"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			b := newBackend(t)
			m := NewMonitor(Options{Clock: clk, Seed: 1})
			hc := tc.hc
			hc.Interval = fsm.Duration(interval)
			m.Update(map[string]fsm.PoolSpec{"app": poolWith(&hc, nil, b.addr())})
			startMonitor(t, m)
			for i, s := range tc.steps {
				b.status.Store(int32(s.status))
				stepCheck(t, clk, m, "app", b.addr(), interval, uint64(i+1))
				got := status(t, m, "app", b.addr())
				if got.Healthy != s.healthy || m.Healthy("app", b.addr()) != s.healthy {
					t.Fatalf("after check %d (status %d): healthy = %v, want %v (reason %q)",
						i+1, s.status, got.Healthy, s.healthy, got.Reason)
				}
				if s.reason != "" && !strings.Contains(got.Reason, s.reason) {
					t.Fatalf("after check %d: reason = %q, want it to contain %q", i+1, got.Reason, s.reason)
				}
			}
		})
	}
}

func TestActiveRequest(t *testing.T) {
	tests := []struct {
		name     string
		host     string
		path     string
		wantHost func(addr string) string
		wantPath string
	}{
		{"host defaults to addr", "", "/healthz?deep=1", func(a string) string { return a }, "/healthz?deep=1"},
		{"configured host", "app.internal", "/status", func(string) string { return "app.internal" }, "/status"},
		{"path without slash", "", "ping", func(a string) string { return a }, "/ping"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			b := newBackend(t)
			m := NewMonitor(Options{Clock: clk, Seed: 2})
			hc := &fsm.HealthCheck{Path: tc.path, Host: tc.host, Interval: fsm.Duration(time.Second)}
			m.Update(map[string]fsm.PoolSpec{"app": poolWith(hc, nil, b.addr())})
			startMonitor(t, m)
			stepCheck(t, clk, m, "app", b.addr(), time.Second, 1)
			r := b.lastRequest()
			if r.Method != http.MethodGet || r.Host != tc.wantHost(b.addr()) || r.URL.RequestURI() != tc.wantPath {
				t.Fatalf("check request = %s %s Host %s, want GET %s Host %s",
					r.Method, r.URL.RequestURI(), r.Host, tc.wantPath, tc.wantHost(b.addr()))
			}
			if ua := r.Header.Get("User-Agent"); ua != DefaultUserAgent {
				t.Fatalf("User-Agent = %q, want %q", ua, DefaultUserAgent)
			}
		})
	}
}

func TestActiveFailureKinds(t *testing.T) {
	refusedAddr := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		return addr
	}
	hanging := func(t *testing.T) string {
		b := newBackend(t)
		b.hang.Store(true)
		return b.addr()
	}
	resetting := func(t *testing.T) string { return resetListener(t) }
	tests := []struct {
		name    string
		addr    func(t *testing.T) string
		timeout time.Duration
		reason  string
	}{
		{"timeout counts as failure", hanging, 50 * time.Millisecond, "active: 2 consecutive failures: timeout after 50ms"},
		{"connection refused", refusedAddr, time.Second, "active: 2 consecutive failures: connect refused"},
		{"connection closed without answer", resetting, time.Second, "active: 2 consecutive failures: connection reset"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			addr := tc.addr(t)
			m := NewMonitor(Options{Clock: clk, Seed: 3})
			hc := &fsm.HealthCheck{Path: "/", Interval: fsm.Duration(time.Second), Timeout: fsm.Duration(tc.timeout), Fall: 2}
			m.Update(map[string]fsm.PoolSpec{"app": poolWith(hc, nil, addr)})
			startMonitor(t, m)
			stepCheck(t, clk, m, "app", addr, time.Second, 1)
			if !m.Healthy("app", addr) {
				t.Fatalf("unhealthy after one failure with fall 2: %q", status(t, m, "app", addr).Reason)
			}
			stepCheck(t, clk, m, "app", addr, time.Second, 2)
			got := status(t, m, "app", addr)
			if got.Healthy || m.Healthy("app", addr) {
				t.Fatalf("still healthy after fall failures")
			}
			if got.Reason != tc.reason {
				t.Fatalf("reason = %q, want %q", got.Reason, tc.reason)
			}
			if got.ActiveFailures != 2 {
				t.Fatalf("active_failures = %d, want 2", got.ActiveFailures)
			}
		})
	}
}
