package dataplane

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// A parked HTTPS connection is served as TLS after it wakes: its
// requests reach the backend with X-Forwarded-Proto https, park after
// park.
func TestParkedHTTPSConnectionStaysTLS(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get("X-Forwarded-Proto"))
	})
	cfg := simpleConfig(be.addr)
	roots := withHTTPS(t, cfg)
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	c := dialPark(t, d.ListenerAddr("web"), 0, roots)
	for range 3 {
		c.send(c.get("/"))
		c.answer("https")
		parkUntil(t, d, 1)
	}
}

// A connection to a pool with send_proxy_protocol keeps its private
// backend connection while it parks, and gives it back once it closes.
func TestParkedConnectionKeepsItsPrivateClient(t *testing.T) {
	addr, conns := proxyAwareBackend(t)
	cfg := simpleConfig(addr)
	cfg.pools["app"] = fsm.PoolSpec{Backends: []fsm.Backend{{Addr: addr}}, SendProxyProtocol: fsm.ProxyProtocolV1}
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	c := dialFrom(t, untrustedSrc, d.ListenerAddr("web"))
	br := bufio.NewReader(c)
	want := untrustedSrc + " " + untrustedSrc
	for i := range 3 {
		if got := askXFF(t, c, br, 1)[0]; got != want {
			t.Fatalf("request %d: backend saw %q, want %q", i, got, want)
		}
		parkUntil(t, d, 1)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d backend connections for one client connection that parked, want 1", n)
	}
	c.Close()
	waitFor(t, "the private client dropped with its client connection", func() bool {
		return d.private.n.Load() == 0 && seriesValue(t, d, "web") == 0
	})
}

// splitWriter passes writes through, except that the first write after
// hold is set sends only its first bytes; rest sends the others.
type splitWriter struct {
	net.Conn
	hold bool
	left []byte
}

func (w *splitWriter) Write(p []byte) (int, error) {
	if !w.hold {
		return w.Conn.Write(p)
	}
	w.hold = false
	w.left = append([]byte(nil), p[3:]...)
	if _, err := w.Conn.Write(p[:3]); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *splitWriter) rest() error {
	_, err := w.Conn.Write(w.left)
	return err
}

// A connection that parks holding the start of a TLS record serves the
// request that record carries once the rest of it arrives.
func TestParkedConnectionKeepsAPartialTLSRecord(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.URL.Path)
	})
	cfg := simpleConfig(be.addr)
	roots := withHTTPS(t, cfg)
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	raw, err := net.DialTimeout("tcp", d.ListenerAddr("web"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	_ = raw.SetDeadline(time.Now().Add(time.Minute))
	sw := &splitWriter{Conn: raw}
	tc := tls.Client(sw, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	c := &parkClient{t: t, c: tc, br: bufio.NewReader(tc)}
	c.send(c.get("/one"))
	c.answer("/one")
	for i := range 2 {
		sw.hold = true
		path := fmt.Sprintf("/split%d", i)
		c.send(c.get(path))
		parkUntil(t, d, 1)
		if err := sw.rest(); err != nil {
			t.Fatal(err)
		}
		c.answer(path)
	}
}

// A connection that wakes as its listener is removed is served to its
// end before the removal is done: no connection of a removed listener
// is left open, and counted, after its shutdown.
func TestRemovedListenerWaitsForAWakingConnection(t *testing.T) {
	be := newBackend(t, nil)
	src := newFakeSource(simpleConfig(be.addr).build())
	d := startDataplane(t, src, nil)
	c := dialPark(t, d.ListenerAddr("web"), 0, nil)
	c.send(c.get("/"))
	c.answer("ok")
	parkUntil(t, d, 1)

	// The woken connection is held on its way to the server until the
	// removal is done, or long enough for it to be.
	held, release := holdNextServe(t)
	c.send(c.get("/"))
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the parked connection did not wake")
	}

	gone := simpleConfig(be.addr)
	gone.index = 2
	delete(gone.listeners, "web")
	delete(gone.routes, "app")
	src.Set(gone.build())
	waitFor(t, "the listener's removal to begin", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.listeners["web"] == nil
	})
	stopped := stoppedChan(d)
	select {
	case <-stopped:
	case <-time.After(time.Second):
	}
	close(release)
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the removed listener's shutdown did not end")
	}
	if v := seriesValue(t, d, "web"); v != 0 {
		t.Errorf("rafter_client_connections = %v once the removed listener's shutdown is done, want 0", v)
	}
	// The request was answered (by the configuration without the
	// listener), and the connection closed.
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("the request that woke the connection got no answer: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n, err := c.br.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("after its answer the connection read %d bytes, %v; want it closed", n, err)
	}
}

// Requests of every framing are served whole across parks: one that
// waits for 100 Continue, a chunked body sent in pieces through sweeps,
// HTTP/1.0 keep-alive, and a request whose body the route left unread.
func TestParkedConnectionServesEveryFraming(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
	})
	// lastBody is the body of the last request the backend received.
	lastBody := func() string {
		reqs := be.requests()
		return reqs[len(reqs)-1].Body
	}
	cfg := simpleConfig(be.addr)
	withFixedRoute(cfg)
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	c := dialPark(t, d.ListenerAddr("web"), 0, nil)
	c.send(c.get("/start"))
	c.answer("GET /start")
	parkUntil(t, d, 1)
	for round := range 2 {
		// Expect: 100-continue: the body is sent once the interim answer is in.
		body := strings.Repeat(fmt.Sprintf("e%d", round), 500)
		c.send(fmt.Sprintf("POST /continue HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", len(body)))
		line, err := c.br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
			t.Fatalf("round %d: waiting for 100 Continue: %q, %v", round, line, err)
		}
		if blank, err := c.br.ReadString('\n'); err != nil || blank != "\r\n" {
			t.Fatalf("round %d: after 100 Continue: %q, %v", round, blank, err)
		}
		c.send(body)
		c.answer("POST /continue")
		if got := lastBody(); got != body {
			t.Fatalf("round %d: the 100-continue body reached the backend as %d bytes, want %d", round, len(got), len(body))
		}
		parkUntil(t, d, 1)

		// A chunked body in pieces, each waiting through a sweep.
		released := d.idleConns.released.Load()
		c.send("POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
		released = sweepUntilReleased(t, &d.idleConns, released)
		c.send("6\r\n world\r\n")
		sweepUntilReleased(t, &d.idleConns, released)
		c.send("0\r\n\r\n")
		c.answer("POST /chunked")
		if got := lastBody(); got != "hello world" {
			t.Fatalf("round %d: the chunked body reached the backend as %q", round, got)
		}
		parkUntil(t, d, 1)

		// HTTP/1.0 keep-alive.
		c.send("GET /old HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
		c.answer("GET /old")
		parkUntil(t, d, 1)

		// A body the route does not read, then the next request.
		unread := strings.Repeat("u", 3000)
		c.send(fmt.Sprintf("POST /fixed HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s", len(unread), unread))
		c.answer("fixed")
		parkUntil(t, d, 1)
		c.send(c.get("/after"))
		c.answer("GET /after")
		parkUntil(t, d, 1)
	}
	if n := len(be.requests()); n != 1+2*4 {
		t.Errorf("the backend saw %d requests, want %d", n, 1+2*4)
	}
}

// A connection of a PROXY-protocol listener keeps the client address of
// its header across parks.
func TestParkedConnectionKeepsItsProxyHeaderAddress(t *testing.T) {
	be := xffBackend(t)
	cfg := simpleConfig(be.addr)
	cfg.listeners["web"] = fsm.ListenerSpec{ProxyProtocol: &fsm.ProxyProtocol{Trusted: []string{trustedSrc}}}
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	c := dialFrom(t, trustedSrc, d.ListenerAddr("web"))
	if _, err := io.WriteString(c, "PROXY TCP4 203.0.113.9 10.0.0.1 5000 80\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for i := range 3 {
		if got := askXFF(t, c, br, 1)[0]; got != "203.0.113.9" {
			t.Fatalf("request %d: backend saw X-Forwarded-For %q, want the header's 203.0.113.9", i, got)
		}
		parkUntil(t, d, 1)
	}
}

// A parked connection whose client sends a request and half-closes gets
// its answer, then the server's close, and is forgotten.
func TestParkedConnectionAnswersAHalfClosedClient(t *testing.T) {
	be := newBackend(t, nil)
	d := startDataplane(t, newFakeSource(simpleConfig(be.addr).build()), nil)
	c := dialPark(t, d.ListenerAddr("web"), 0, nil)
	c.send(c.get("/"))
	c.answer("ok")
	parkUntil(t, d, 1)
	c.send(c.get("/"))
	if err := c.c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.answer("ok")
	if n, err := c.br.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("after its answer the half-closed connection read %d bytes, %v; want the server's close", n, err)
	}
	waitFor(t, "the connection to be forgotten", func() bool {
		return parkedConns(d, "web") == 0 && d.idleConns.open() == 0 && seriesValue(t, d, "web") == 0
	})
}

// A parked connection that wakes with an Upgrade becomes a tunnel, which
// never parks: its idle waits are the tunnel's, through any number of
// sweeps.
func TestParkedConnectionUpgradesToATunnelThatDoesNotPark(t *testing.T) {
	addr, _ := wsEcho(t)
	cfg := simpleConfig(addr)
	withFixedRoute(cfg)
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	c := dialPark(t, d.ListenerAddr("web"), 0, nil)
	c.send(c.get("/fixed"))
	c.answer("fixed")
	parkUntil(t, d, 1)
	c.send(upgradeReq("/chat"))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("the Upgrade of a parked connection: %v, %v", resp, err)
	}
	for i := range 3 {
		released := d.idleConns.released.Load()
		sweepUntilReleased(t, &d.idleConns, released)
		d.idleConns.sweep()
		if n := parkedConns(d, "web"); n != 0 {
			t.Fatalf("%d connections parked with only a tunnel open", n)
		}
		msg := fmt.Sprintf("ping %d", i)
		c.send(msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c.br, got); err != nil || string(got) != msg {
			t.Fatalf("the tunnel echoed %q, %v; want %q", got, err, msg)
		}
	}
	c.c.Close()
	waitFor(t, "the tunnel's connection to be forgotten", func() bool {
		return d.idleConns.open() == 0 && seriesValue(t, d, "web") == 0
	})
}

// holdNextServe holds the next connection on its way to the server
// (testHookServe) until release is closed, or for 10 s; held is closed
// once it is held.
func holdNextServe(t *testing.T) (held <-chan struct{}, release chan struct{}) {
	t.Helper()
	h, r := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := func(net.Conn) {
		once.Do(func() {
			close(h)
			select {
			case <-r:
			case <-time.After(10 * time.Second):
			}
		})
	}
	testHookServe.Store(&hook)
	t.Cleanup(func() { testHookServe.Store(nil) })
	return h, r
}

// stoppedChan is closed once every server the data plane is shutting down
// has stopped.
func stoppedChan(d *Dataplane) <-chan struct{} {
	stopped := make(chan struct{})
	go func() {
		d.stopping.Wait()
		close(stopped)
	}()
	return stopped
}
