package dataplane

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// A tunnel ends once it has been silent both ways for the route's idle
// timeout, as HAProxy's timeout tunnel: a client that only listens to a
// backend pushing more often than that keeps its tunnel, and the tunnel
// ends after the pushes stop.
func TestTunnelIdleTimeoutCountsBothWays(t *testing.T) {
	const idle, push, pushes = time.Second, 100 * time.Millisecond, 30
	addr := serveConns(t, 30*time.Second, func(c net.Conn, br *bufio.Reader) {
		if _, err := readHead(br); err != nil {
			return
		}
		_, _ = io.WriteString(c, switchingProtocols)
		for range pushes {
			time.Sleep(push)
			if _, err := io.WriteString(c, "p"); err != nil {
				return
			}
		}
		_, _ = io.Copy(io.Discard, br) // silent until the proxy closes
	})
	d := startDataplane(t, newFakeSource(withRouteIdle(simpleConfig(addr), idle).build()), nil)
	c := newCapClient(t, d.ListenerAddr("web"))
	c.mustSwitch(t, "/ws")
	got := make([]byte, pushes)
	if n, err := io.ReadFull(c.br, got); err != nil {
		t.Fatalf("a silent client got %d of the %d pushes sent %v apart, with an idle timeout of %v: %v",
			n, pushes, push, idle, err)
	}
	lastPush := time.Now()
	_ = c.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := c.br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the pushes stopped, the client read %d bytes, %v; want EOF", n, err)
	}
	if quiet := time.Since(lastPush); quiet < idle/2 {
		t.Errorf("the tunnel ended %v after its last push, with an idle timeout of %v", quiet, idle)
	}
}

// A tunnel whose peers both stop reading ends after the idle timeout too:
// a client that sends without reading, to a backend that echoes on one
// goroutine (so it stops reading once its writes block), leaves both
// directions blocked in writes, where no read can time out.
func TestTunnelIdleTimeoutEndsBlockedWrites(t *testing.T) {
	const idle = time.Second
	addr := serveConns(t, 60*time.Second, func(c net.Conn, br *bufio.Reader) {
		if _, err := readHead(br); err != nil {
			return
		}
		_, _ = io.WriteString(c, switchingProtocols)
		_, _ = io.Copy(c, br)
	})
	d := startDataplane(t, newFakeSource(withRouteIdle(simpleConfig(addr), idle).build()), nil)
	c := newCapClient(t, d.ListenerAddr("web"))
	c.mustSwitch(t, "/ws")
	ended := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for { // bounded by newCapClient's 60 s deadline
			if _, err := c.c.Write(buf); err != nil {
				ended <- err
				return
			}
		}
	}()
	select {
	case err := <-ended:
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("the tunnel was still open when the client's own deadline passed")
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("a tunnel whose peers both stopped reading was still open after 30s, with an idle timeout of %v", idle)
	}
	waitFor(t, "the ended tunnel to leave rafter_client_connections", func() bool {
		return seriesValue(t, d, "web") == 0
	})
}

// withRouteIdle sets route app's idle timeout.
func withRouteIdle(cfg config, idle time.Duration) config {
	r := cfg.routes["app"]
	r.Timeouts = fsm.RouteTimeouts{Idle: fsm.Duration(idle)}
	cfg.routes["app"] = r
	return cfg
}

// A route without an idle timeout bounds its tunnels by
// DefaultTunnelIdleTimeout, and streamed bodies not at all; one with an
// idle timeout bounds both by it.
func TestTunnelIdleTimeoutDefault(t *testing.T) {
	for _, tt := range []struct {
		set              time.Duration
		tunnel, streamed time.Duration
	}{
		{0, DefaultTunnelIdleTimeout, 0},
		{5 * time.Second, 5 * time.Second, 5 * time.Second},
	} {
		spec := fsm.RouteSpec{Listener: "web", Action: fsm.RouteAction{Respond: &fsm.Respond{Status: 200}},
			Timeouts: fsm.RouteTimeouts{Idle: fsm.Duration(tt.set)}}
		r, err := compileRoute("r", &spec, nil, regexCache{})
		if err != nil {
			t.Fatal(err)
		}
		if r.tunnelIdle != tt.tunnel || r.idleTimeout != tt.streamed {
			t.Errorf("timeouts.idle %v: tunnel idle %v, streamed body idle %v; want %v and %v",
				tt.set, r.tunnelIdle, r.idleTimeout, tt.tunnel, tt.streamed)
		}
	}
}
