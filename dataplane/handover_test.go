package dataplane

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// handoverConfig is listener "web" on port with the given max_conns, and a
// route answering 200 "ok".
func handoverConfig(port, maxConns int, index uint64) *fsm.Config {
	return config{
		index:     index,
		listeners: map[string]fsm.ListenerSpec{"web": {Port: port, Limits: fsm.ListenerLimits{MaxConns: maxConns}}},
		routes: map[string]fsm.RouteSpec{"ok": {Listener: "web",
			Action: fsm.RouteAction{Respond: &fsm.Respond{Status: 200, Body: "ok"}}}},
	}.build()
}

// listenerSpec returns the spec the server of listener key serves, if one
// runs.
func listenerSpec(d *Dataplane, key string) (fsm.ListenerSpec, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ls := d.listeners[key]
	if ls == nil || !ls.started {
		return fsm.ListenerSpec{}, false
	}
	return ls.spec, true
}

// A listener whose spec changes while clients keep connecting refuses and
// resets none of them: the new server takes over the listener's sockets,
// with the connections waiting in their accept queues, instead of binding
// new ones while the old ones close.
func TestChangedListenerKeepsItsSocketsAndQueuedConnections(t *testing.T) {
	port := freePort(t)
	src := newFakeSource(handoverConfig(port, 1000, 1))
	d := startDataplane(t, src, func(o *Options) { o.ListenShards = 2 })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitFor(t, "the listener to serve", func() bool { _, ok := listenerSpec(d, "web"); return ok })

	const clients, changes = 8, 30
	var stop atomic.Bool
	var served, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	deadline := time.Now().Add(60 * time.Second)
	for range clients {
		wg.Go(func() {
			for i := 0; i < 100000 && !stop.Load() && time.Now().Before(deadline); i++ {
				if err := getOnce(addr); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				served.Add(1)
			}
		})
	}
	for i := range changes {
		maxConns := 1000 + i%2
		src.Set(handoverConfig(port, maxConns, uint64(i+2)))
		waitFor(t, "the changed listener to serve", func() bool {
			s, ok := listenerSpec(d, "web")
			return ok && s.Limits.MaxConns == maxConns
		})
		// Let new connections reach the new server before the next change.
		start := served.Load()
		waitFor(t, "requests on the changed listener", func() bool { return served.Load() >= start+20 })
	}
	stop.Store(true)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d connections failed across %d listener changes; first: %v", n, n+served.Load(), changes, firstErr.Load())
	}
	d.mu.Lock()
	ls := d.listeners["web"]
	d.mu.Unlock()
	if got := len(ls.lns); got != 2 {
		t.Fatalf("the listener serves on %d sockets after its changes, want 2", got)
	}
}

// getOnce opens a connection to addr, asks for / and checks the answer.
func getOnce(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// noDeadlineListener hides its socket's SetDeadline.
type noDeadlineListener struct{ net.Listener }

// A changed listener serves its new spec on the same port, whether its
// sockets were handed over or, when their Accept cannot be interrupted,
// bound anew: max_conns lowered to 1 refuses a second connection.
func TestChangedListenerServesItsNewSpec(t *testing.T) {
	for _, interruptible := range []bool{true, false} {
		t.Run(fmt.Sprintf("interruptible=%v", interruptible), func(t *testing.T) {
			port := freePort(t)
			src := newFakeSource(handoverConfig(port, 100, 1))
			d := startDataplane(t, src, func(o *Options) {
				o.ListenShards = 2
				if !interruptible {
					o.Listen = func(_ string, _ int, addr string) (net.Listener, error) {
						ln, err := ListenShared("", 0, addr)
						if err != nil {
							return nil, err
						}
						return noDeadlineListener{ln}, nil
					}
				}
			})
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			waitFor(t, "the listener to serve", func() bool { _, ok := listenerSpec(d, "web"); return ok })
			d.mu.Lock()
			var old []net.Listener
			for _, l := range d.listeners["web"].leases {
				old = append(old, l.Listener)
			}
			before := old[0]
			d.mu.Unlock()

			src.Set(handoverConfig(port, 1, 2))
			waitFor(t, "the changed listener to serve", func() bool {
				s, ok := listenerSpec(d, "web")
				return ok && s.Limits.MaxConns == 1
			})
			d.mu.Lock()
			after := d.listeners["web"].leases[0].Listener
			d.mu.Unlock()
			if same := after == before; same != interruptible {
				t.Fatalf("the new server serves on the old socket: %v, want %v", same, interruptible)
			}
			if !interruptible {
				// Bound anew, the port has the old sockets too until the
				// old server's shutdown closes them.
				for _, ln := range old {
					rc, err := ln.(noDeadlineListener).Listener.(*net.TCPListener).SyscallConn()
					if err != nil {
						t.Fatal(err)
					}
					waitFor(t, "the old sockets to close", func() bool { return rc.Control(func(uintptr) {}) != nil })
				}
			}

			first, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer first.Close()
			_ = first.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(first)
			if _, err := first.Write([]byte("GET / HTTP/1.1\r\nHost: t\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("first connection: %v, %v", resp, err)
			}
			resp.Body.Close()
			second, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer second.Close()
			_ = second.SetDeadline(time.Now().Add(10 * time.Second))
			resp, err = http.ReadResponse(bufio.NewReader(second), nil)
			if err != nil || resp.StatusCode != 503 {
				t.Fatalf("second connection with max_conns 1: %v, %v; want 503", resp, err)
			}
			resp.Body.Close()
		})
	}
}

// A connection that reaches the old server of a changed listener only once
// the server's shutdown has found no connection to wait for, one accepted
// as the server handed its sockets over or a parked one waking, is
// answered and then closed: it does not go on serving the old spec after
// the drain, still counted in the listener's connections.
func TestChangedListenerClosesAConnectionReachingItsOldServerLate(t *testing.T) {
	for _, woken := range []bool{false, true} {
		t.Run(fmt.Sprintf("woken=%v", woken), func(t *testing.T) {
			testChangedListenerClosesALateConnection(t, woken)
		})
	}
}

func testChangedListenerClosesALateConnection(t *testing.T, woken bool) {
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	src := newFakeSource(handoverConfig(port, 100, 1))
	d := startDataplane(t, src, func(o *Options) { o.ListenShards = 1 })
	waitFor(t, "the listener to serve", func() bool { _, ok := listenerSpec(d, "web"); return ok })
	d.mu.Lock()
	old := d.listeners["web"]
	d.mu.Unlock()
	var c *parkClient
	if woken {
		c = dialPark(t, addr, 0, nil)
		c.send(c.get("/"))
		c.answer("ok")
		parkUntil(t, d, 1)
	}

	// The connection is held on its way to the server until the old
	// server's shutdown has closed its listeners.
	held, release := holdNextServe(t)
	if !woken {
		c = dialPark(t, addr, 0, nil)
	}
	c.send(c.get("/"))
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection did not reach the server")
	}

	src.Set(handoverConfig(port, 101, 2))
	waitFor(t, "the changed listener to serve", func() bool {
		s, ok := listenerSpec(d, "web")
		return ok && s.Limits.MaxConns == 101
	})
	waitFor(t, "the old server's shutdown to close its listeners", func() bool {
		old.lots[0].mu.Lock()
		defer old.lots[0].mu.Unlock()
		return old.lots[0].closed
	})
	close(release)

	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("the held connection got no answer: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("the held connection's answer: status %d, Connection: close %v; want 200 and close", resp.StatusCode, resp.Close)
	}
	if n, err := c.br.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("after its answer the connection read %d bytes, %v; want it closed", n, err)
	}
	stopped := stoppedChan(d)
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the old server's shutdown did not end")
	}
	if v := seriesValue(t, d, "web"); v != 0 {
		t.Errorf("rafter_client_connections = %v once the old server's shutdown is done, want 0", v)
	}
}

// A listener's max_conns bounds its open connections across a change:
// requests still in flight on the server before the change keep their
// connections counted, so the changed listener refuses a connection past
// the limit, and takes one again once they end. Before, every change
// started the count afresh, and slow requests could hold a limit's worth
// of connections per change.
func TestMaxConnsCountsConnectionsOpenedBeforeAChange(t *testing.T) {
	release := make(chan struct{})
	var arrived atomic.Int64
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		select {
		case <-release:
		case <-time.After(30 * time.Second):
		}
		_, _ = io.WriteString(w, "slow")
	}))
	t.Cleanup(be.Close)
	defer close(release)
	port := freePort(t)
	cfg := func(idle time.Duration, index uint64) *fsm.Config {
		c := simpleConfig(be.Listener.Addr().String())
		c.index = index
		c.listeners["web"] = fsm.ListenerSpec{Port: port, Limits: fsm.ListenerLimits{MaxConns: 2, IdleTimeout: fsm.Duration(idle)}}
		c.routes["ok"] = fsm.RouteSpec{Listener: "web", Match: fsm.RouteMatch{Path: fsm.PathMatch{Exact: "/ok"}},
			Action: fsm.RouteAction{Respond: &fsm.Respond{Status: 200, Body: "ok"}}}
		return c.build()
	}
	src := newFakeSource(cfg(time.Minute, 1))
	d := startDataplane(t, src, func(o *Options) { o.DrainTimeout = 20 * time.Second })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitFor(t, "the listener to serve", func() bool { _, ok := listenerSpec(d, "web"); return ok })

	slow := make(chan int, 2)
	for range 2 {
		go func() {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				slow <- 0
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(40 * time.Second))
			if _, err := io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"); err != nil {
				slow <- 0
				return
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				slow <- 0
				return
			}
			resp.Body.Close()
			slow <- resp.StatusCode
		}()
	}
	waitFor(t, "two slow requests at the backend", func() bool { return arrived.Load() == 2 })

	src.Set(cfg(2*time.Minute, 2))
	waitFor(t, "the changed listener to serve", func() bool {
		s, ok := listenerSpec(d, "web")
		return ok && s.Limits.IdleTimeout == fsm.Duration(2*time.Minute)
	})
	if status := oneGet(t, addr); status != http.StatusServiceUnavailable {
		t.Fatalf("a third connection with two requests in flight and max_conns 2: status %d, want 503", status)
	}

	release <- struct{}{}
	release <- struct{}{}
	for range 2 {
		if status := <-slow; status != http.StatusOK {
			t.Fatalf("a request in flight across the change: status %d, want 200", status)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for status := 0; status != http.StatusOK; status = oneGet(t, addr) {
		if time.Now().After(deadline) {
			t.Fatalf("a connection once the slow requests ended: status %d, want 200", status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// oneGet asks for /ok on a new connection to addr and returns the status.
func oneGet(t *testing.T, addr string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET on a new connection: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
