package dataplane

import (
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// A listener that cannot bind neither delays the configuration changes
// after it nor goes unreported: it is retried in the background, shown by
// Listeners, and serves once its port frees up.
func TestBadPortDoesNotStallConfigChanges(t *testing.T) {
	be := newBackend(t, nil)
	cfg := simpleConfig(be.addr)
	cfg.listeners["bad"] = fsm.ListenerSpec{Port: 0}
	var portFree atomic.Bool
	src := newFakeSource(cfg.build())
	d := startDataplane(t, src, func(o *Options) {
		o.Listen = func(name string, _ int, addr string) (net.Listener, error) {
			if name == "bad" && !portFree.Load() {
				return nil, errors.New("address already in use")
			}
			return net.Listen("tcp", addr)
		}
	})
	start := time.Now()
	const changes = 5
	for i := 1; i <= changes; i++ {
		cfg.index = uint64(i)
		r := cfg.routes["app"]
		r.Priority = i // a real change each time
		cfg.routes["app"] = r
		src.Set(cfg.build())
		waitFor(t, "the change to be served", func() bool { return d.Table().Index() == uint64(i) })
	}
	// Each change used to wait 2 x 50 x 20 ms for the bad port.
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("%d config changes took %s with a listener that cannot bind", changes, took)
	}
	var bad ListenerStatus
	for _, st := range d.Listeners() {
		switch st.Listener {
		case "web":
			if !st.Bound || st.Addr == "" {
				t.Errorf("web: %+v, want bound", st)
			}
		case "bad":
			bad = st
		}
	}
	if bad.Bound || bad.Error == "" || bad.Attempts < 1 {
		t.Errorf("bad: %+v, want unbound with its error", bad)
	}
	if resp, _ := rawExchange(t, d.ListenerAddr("web"), "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode != 200 {
		t.Errorf("web: status %d", resp.StatusCode)
	}
	portFree.Store(true)
	waitFor(t, "the bad listener to bind once its port is free", func() bool { return d.ListenerAddr("bad") != "" })
	if resp, _ := rawExchange(t, d.ListenerAddr("bad"), "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode != 404 {
		t.Errorf("bad listener (no routes): status %d, want 404", resp.StatusCode)
	}
}
