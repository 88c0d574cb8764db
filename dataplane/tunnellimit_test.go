package dataplane

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/rafterlb/rafter/fsm"
)

// upgrade answers an Upgrade request on c: GET /silent never answers
// (until the backend is released); any other path gets 101, then the
// connection echoes what it reads until it closes.
func (b *capBackend) upgrade(c net.Conn, br *bufio.Reader, req *http.Request) {
	if req.URL.Path == "/silent" {
		<-b.release
		return
	}
	if _, err := io.WriteString(c, switchingProtocols); err != nil {
		return
	}
	_, _ = io.Copy(c, br)
}

// switchingProtocols is a backend's answer to a WebSocket Upgrade.
const switchingProtocols = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"

// mustSwitch sends an Upgrade request for path and fails the test unless
// the answer is 101.
func (c *capClient) mustSwitch(t *testing.T, path string) {
	t.Helper()
	if _, err := io.WriteString(c.c, upgradeReq(path)); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.ReadResponse(c.br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("Upgrade %s: %v, %v; want 101", path, resp, err)
	}
}

// upgradeReq is a WebSocket Upgrade request for path.
func upgradeReq(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
}

// upgrade sends an Upgrade request for path and returns the status; on
// 101 it checks that the tunnel echoes.
func (c *capClient) upgrade(t *testing.T, path string) int {
	t.Helper()
	if _, err := io.WriteString(c.c, upgradeReq(path)); err != nil {
		t.Fatalf("%s: sending the Upgrade: %v", c.self, err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("%s: reading the answer to the Upgrade: %v", c.self, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if _, err := io.WriteString(c.c, "ping "+c.self); err != nil {
		t.Fatalf("%s: writing into the tunnel: %v", c.self, err)
	}
	got := make([]byte, len("ping "+c.self))
	if _, err := io.ReadFull(c.br, got); err != nil || string(got) != "ping "+c.self {
		t.Fatalf("%s: the tunnel echoed %q, %v", c.self, got, err)
	}
	return resp.StatusCode
}

// Open WebSocket tunnels count against max_conns_per_backend together
// with the requests' connections, in plain pools and in pools with
// send_proxy_protocol: with a limit of 2, two tunnels leave no room for
// a third nor for a request, which get 503 once max_conn_wait has passed,
// and the backend never sees more than 2 connections at once. Closing a
// tunnel frees its slot.
func TestTunnelsCountAgainstMaxConnsPerBackend(t *testing.T) {
	for _, v := range []string{"", "v1"} {
		name := "plain"
		if v != "" {
			name = "send_proxy_protocol " + v
		}
		t.Run(name, func(t *testing.T) {
			b := newCapBackendOf(t, 2, v == "")
			d := startDataplane(t, newFakeSource(noRetries(sendProxyConfig(b.addr, v, 2, 200*time.Millisecond)).build()), nil)
			addr := d.ListenerAddr("web")

			t1, t2 := newCapClient(t, addr), newCapClient(t, addr)
			for _, c := range []*capClient{t1, t2} {
				if code := c.upgrade(t, "/ws"); code != 101 {
					t.Fatalf("Upgrade %s: %d, want 101", c.self, code)
				}
			}
			if code := newCapClient(t, addr).upgrade(t, "/ws"); code != 503 {
				t.Errorf("a third tunnel at the limit: %d, want 503", code)
			}
			if code, _, err := newCapClient(t, addr).get(""); err != nil || code != 503 {
				t.Errorf("a request while two tunnels hold the limit: %d, %v; want 503", code, err)
			}

			t1.c.Close()
			waitFor(t, "the closed tunnel's slot to come back", func() bool {
				code, _, err := newCapClient(t, addr).get("")
				return err == nil && code == 200
			})
			waitFor(t, "a new tunnel to open in the freed slot", func() bool {
				return newCapClient(t, addr).upgrade(t, "/ws") == 101
			})
			b.check(t)
		})
	}
}

// A keep-alive connection that a request left idle, and that the backend
// closed since, is replaced by a new one when an Upgrade would reuse it.
func TestTunnelReplacesAStaleIdleConnection(t *testing.T) {
	b := newCapBackendOf(t, 2, true)
	d := startDataplane(t, newFakeSource(noRetries(sendProxyConfig(b.addr, "", 2, time.Second)).build()), nil)
	c := newCapClient(t, d.ListenerAddr("web"))
	if code, _, err := c.get("/drop"); err != nil || code != 200 {
		t.Fatalf("GET /drop: %d, %v", code, err)
	}
	// The backend has closed the connection it answered on; the proxy
	// still holds it idle.
	waitFor(t, "the backend to close its end", func() bool {
		open, _, _ := b.counts()
		return open == 0
	})
	if _, idle := backendConns(d); idle != 1 {
		t.Fatalf("the proxy holds %d idle connections to the backend, want the 1 the backend closed", idle)
	}
	if code := c.upgrade(t, "/ws"); code != 101 {
		t.Fatalf("Upgrade after the idle connection went stale: %d, want 101", code)
	}
}

// A backend that does not start to answer an Upgrade within the route's
// request timeout gets the client a 504, and its connection is closed.
func TestTunnelWaitsForTheAnswerUpToTheRequestTimeout(t *testing.T) {
	b := newCapBackendOf(t, 2, true)
	cfg := noRetries(sendProxyConfig(b.addr, "", 2, time.Second))
	r := cfg.routes["app"]
	r.Timeouts = fsm.RouteTimeouts{Request: fsm.Duration(300 * time.Millisecond)}
	cfg.routes["app"] = r
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	start := time.Now()
	if code := newCapClient(t, d.ListenerAddr("web")).upgrade(t, "/silent"); code != 504 {
		t.Fatalf("Upgrade to a backend that never answers: %d, want 504", code)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the 504 took %v with a request timeout of 300ms", took)
	}
	waitFor(t, "the silent connection to be closed", func() bool {
		open, _ := backendConns(d)
		return open == 0
	})
}

// A pending backend connection is closed with the client connection
// when the tunnel never takes it, and kept when it does.
func TestPendingTunnelConnections(t *testing.T) {
	var ts tunnels
	c1, b1 := &closeCounter{}, &closeCounter{}
	c2, b2 := &closeCounter{}, &closeCounter{}
	if !ts.pend(c1, b1) || !ts.pend(c2, b2) {
		t.Fatal("pend refused before closeAll")
	}
	ts.dropPending(c1)
	if b1.closes != 1 {
		t.Errorf("a client connection closed before its tunnel started: its backend was closed %d times, want 1", b1.closes)
	}
	if ts.unpend(c1) {
		t.Errorf("unpend handed over a backend connection already closed")
	}
	if !ts.unpend(c2) {
		t.Fatalf("unpend did not hand over a pending backend connection")
	}
	ts.dropPending(c2)
	if b2.closes != 0 {
		t.Errorf("dropPending closed a backend connection its tunnel had taken")
	}
	c3, b3 := &closeCounter{}, &closeCounter{}
	ts.pend(c3, b3)
	ts.closeAll()
	if b3.closes != 1 || ts.pend(c1, b1) || b1.closes != 2 {
		t.Errorf("closeAll: pending closed %d times (want 1); a later pend must be refused and close its backend", b3.closes)
	}
}

// The listener's server closes a client connection's pending backend
// connection when it reports the client connection closed, and leaves it
// to the tunnel when it reports it hijacked.
func TestListenerClosesPendingTunnelConnections(t *testing.T) {
	d := startDataplane(t, newFakeSource(simpleConfig("127.0.0.1:1").build()), nil)
	d.mu.Lock()
	ls := d.listeners["web"]
	d.mu.Unlock()
	if ls == nil {
		t.Fatal("no listener web")
	}
	closed, hijacked := &closeCounter{}, &closeCounter{}
	closedB, hijackedB := &closeCounter{}, &closeCounter{}
	d.tunnels.pend(closed, closedB)
	d.tunnels.pend(hijacked, hijackedB)
	ls.srv.ConnState(closed, fasthttp.StateClosed)
	ls.srv.ConnState(hijacked, fasthttp.StateHijacked)
	if closedB.closes != 1 {
		t.Errorf("the backend connection of a client connection closed before its tunnel started was closed %d times, want 1", closedB.closes)
	}
	if hijackedB.closes != 0 || !d.tunnels.unpend(hijacked) {
		t.Errorf("the backend connection of a hijacked client connection was not left to its tunnel")
	}
}

// closeCounter is a net.Conn that counts its closes.
type closeCounter struct {
	net.Conn
	closes int
}

func (c *closeCounter) Close() error {
	c.closes++
	return nil
}

// Open WebSocket tunnels count against the listener's max_conns and in
// rafter_client_connections until they end, as HAProxy's maxconn counts
// them: with max_conns 2, two tunnels leave no room for a third
// connection, which gets the listener's 503; closing a tunnel frees its
// place, and once every connection is closed the gauge is back to 0.
func TestTunnelsCountAgainstListenerMaxConns(t *testing.T) {
	b := newCapBackendOf(t, 10, true)
	cfg := sendProxyConfig(b.addr, "", 10, 200*time.Millisecond)
	l := cfg.listeners["web"]
	l.Limits.MaxConns = 2
	cfg.listeners["web"] = l
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	addr := d.ListenerAddr("web")

	t1, t2 := newCapClient(t, addr), newCapClient(t, addr)
	for _, c := range []*capClient{t1, t2} {
		if code := c.upgrade(t, "/ws"); code != 101 {
			t.Fatalf("Upgrade %s: %d, want 101", c.self, code)
		}
	}
	if v := seriesValue(t, d, "web"); v != 2 {
		t.Errorf("rafter_client_connections with two tunnels open: %v, want 2", v)
	}
	third := newCapClient(t, addr)
	if code, body, err := third.get(""); err != nil || code != 503 || !strings.Contains(body, "listener connection limit hit") {
		t.Fatalf("a third connection while two tunnels are open with max_conns 2: %d %q, %v; want the listener's 503", code, body, err)
	}
	third.c.Close()

	t1.c.Close()
	var last *capClient
	waitFor(t, "the closed tunnel's place to come back", func() bool {
		c := newCapClient(t, addr)
		code, _, err := c.get("")
		if err == nil && code == 200 {
			last = c
			return true
		}
		c.c.Close()
		return false
	})
	if code := newCapClient(t, addr).upgrade(t, "/ws"); code != 503 {
		t.Errorf("an Upgrade while a tunnel and a connection hold max_conns 2: %d, want 503", code)
	}
	last.c.Close()
	t2.c.Close()
	waitFor(t, "rafter_client_connections to be back to 0", func() bool {
		return seriesValue(t, d, "web") == 0
	})
}

// A tunnel that ends before the server reports its connection hijacked
// gives its place back at the report, once.
func TestTunnelEndingBeforeTheHijackReportGivesItsPlaceBackOnce(t *testing.T) {
	var ts tunnels
	c1, c2 := &closeCounter{}, &closeCounter{}
	released := map[net.Conn]int{}
	ts.ended(c1)
	ts.hijacked(c1, func() { released[c1]++ })
	ts.hijacked(c2, func() { released[c2]++ })
	if released[c2] != 0 {
		t.Fatalf("a tunnel still open gave its place back")
	}
	ts.ended(c2)
	if released[c1] != 1 || released[c2] != 1 {
		t.Fatalf("places given back: %d and %d, want 1 each", released[c1], released[c2])
	}
	if len(ts.releases) != 0 || len(ts.over) != 0 {
		t.Errorf("tunnels keeps %d releases and %d ended marks, want none", len(ts.releases), len(ts.over))
	}
}

// A tunnel whose backend ends closes its client connection, even one
// whose client stays silent, and gives its place under max_conns back.
func TestTunnelEndsWithItsBackend(t *testing.T) {
	addr := serveConns(t, 10*time.Second, func(c net.Conn, br *bufio.Reader) {
		if _, err := readHead(br); err == nil {
			// 101, then the backend ends the tunnel at once.
			_, _ = io.WriteString(c, switchingProtocols)
		}
	})
	cfg := simpleConfig(addr)
	l := cfg.listeners["web"]
	l.Limits.MaxConns = 1
	cfg.listeners["web"] = l
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	c := newCapClient(t, d.ListenerAddr("web"))
	c.mustSwitch(t, "/ws")
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the silent client of a tunnel whose backend ended read %d bytes, %v; want EOF", n, err)
	}
	waitFor(t, "the ended tunnel to leave rafter_client_connections", func() bool {
		return seriesValue(t, d, "web") == 0
	})
	if code, body, _ := newCapClient(t, d.ListenerAddr("web")).get("/"); code == 503 {
		t.Fatalf("a connection after the only tunnel ended, with max_conns 1: 503 %q", body)
	}
}

// Stopping the data plane ends every tunnel, those of silent clients too.
func TestStopEndsSilentTunnels(t *testing.T) {
	addr, _ := wsEcho(t)
	d, stop := runDataplane(t, newFakeSource(simpleConfig(addr).build()), func(o *Options) { o.DrainTimeout = time.Second })
	c := newCapClient(t, d.ListenerAddr("web"))
	if code := c.upgrade(t, "/ws"); code != 101 {
		t.Fatalf("Upgrade: %d, want 101", code)
	}
	stop(15 * time.Second)
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the silent client of a stopped data plane's tunnel read %d bytes, %v; want EOF", n, err)
	}
}
