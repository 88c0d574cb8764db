package dataplane

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// parkedConns is how many connections of listener name are parked.
func parkedConns(d *Dataplane, name string) int {
	d.mu.Lock()
	ls := d.listeners[name]
	d.mu.Unlock()
	if ls == nil {
		return 0
	}
	n := 0
	for _, ln := range ls.lns {
		n += ln.(*parkListener).lot.len()
	}
	return n
}

// servingGoroutines is how many goroutines are inside fasthttp's loop
// that serves a connection.
func servingGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "fasthttp.(*Server).serveConnCounted")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// parkUntil sweeps d's idle registry until n connections of "web" are
// parked.
func parkUntil(t *testing.T, d *Dataplane, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d connections to park", n), func() bool {
		d.idleConns.sweep()
		return parkedConns(d, "web") == n
	})
}

// parkClient is a keep-alive client connection of a test.
type parkClient struct {
	t  *testing.T
	id int
	c  net.Conn
	br *bufio.Reader
}

func dialPark(t *testing.T, addr string, id int, roots *x509.CertPool) *parkClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if roots != nil {
		tc := tls.Client(c, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		c = tc
	}
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	t.Cleanup(func() { _ = c.Close() })
	return &parkClient{t: t, id: id, c: c, br: bufio.NewReader(c)}
}

func (p *parkClient) send(s string) {
	p.t.Helper()
	if _, err := io.WriteString(p.c, s); err != nil {
		p.t.Fatalf("conn %d: %v", p.id, err)
	}
}

func (p *parkClient) get(path string) string {
	return fmt.Sprintf("GET %s HTTP/1.1\r\nHost: a\r\nX-Conn: %d\r\n\r\n", path, p.id)
}

func (p *parkClient) answer(want string) {
	p.t.Helper()
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil {
		p.t.Fatalf("conn %d: reading the answer: %v", p.id, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != want {
		p.t.Fatalf("conn %d: answer %d %q, want 200 %q", p.id, resp.StatusCode, body, want)
	}
}

// Idle keep-alive connections park: no goroutine serves them, they stay
// open and counted, and each serves its next requests (pipelined, or
// arriving in pieces across sweeps) whole and to its own client, park
// after park, over HTTP and HTTPS.
func TestParkedConnectionsServeTheirNextRequests(t *testing.T) {
	t.Run("http", func(t *testing.T) { testParkedConnectionsServe(t, false) })
	t.Run("https", func(t *testing.T) { testParkedConnectionsServe(t, true) })
}

func testParkedConnectionsServe(t *testing.T, https bool) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get("X-Conn")+" "+r.URL.Path)
	})
	cfg := simpleConfig(be.addr)
	var roots *x509.CertPool
	if https {
		roots = withHTTPS(t, cfg)
	}
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	addr := d.ListenerAddr("web")
	clients := make([]*parkClient, 3)
	for i := range clients {
		clients[i] = dialPark(t, addr, i, roots)
		clients[i].send(clients[i].get("/first"))
		clients[i].answer(fmt.Sprintf("%d /first", i))
	}
	parkUntil(t, d, 3)
	if n := servingGoroutines(); n != 0 {
		t.Errorf("%d goroutines serve connections while all three are parked", n)
	}
	if v := seriesValue(t, d, "web"); v != 3 {
		t.Errorf("rafter_client_connections = %v with three parked, want 3", v)
	}
	if v := gaugeValue(t, d.metrics.parked.WithLabelValues("web")); v != 3 {
		t.Errorf("rafter_client_connections_parked = %v with three parked, want 3", v)
	}

	var bodies []string
	for round := range 2 {
		// Two pipelined requests, and one request.
		c := clients[0]
		c.send(c.get(fmt.Sprintf("/p%d.1", round)) + c.get(fmt.Sprintf("/p%d.2", round)))
		c.answer(fmt.Sprintf("0 /p%d.1", round))
		c.answer(fmt.Sprintf("0 /p%d.2", round))
		c = clients[2]
		c.send(c.get(fmt.Sprintf("/g%d", round)))
		c.answer(fmt.Sprintf("2 /g%d", round))
		parkUntil(t, d, 3)
		// A request in three pieces, each waiting through a sweep that
		// releases its buffer (no other connection waits in a read: they
		// are parked). Its waits are not for a next request: it must not
		// park.
		c = clients[1]
		released := d.idleConns.released.Load()
		c.send(fmt.Sprintf("POST /post%d HTTP/1.1\r\nHost: a\r\nX-Conn: 1\r\nX-Big: %s", round, strings.Repeat("b", 6000)))
		released = sweepUntilReleased(t, &d.idleConns, released)
		body := strings.Repeat(fmt.Sprintf("<%d>", round), 3000)
		bodies = append(bodies, body)
		c.send(fmt.Sprintf("\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:len(body)/2]))
		sweepUntilReleased(t, &d.idleConns, released)
		c.send(body[len(body)/2:])
		c.answer(fmt.Sprintf("1 /post%d", round))
		parkUntil(t, d, 3)
	}
	for k, r := range be.posts(t, len(bodies)) {
		if r.Body != bodies[k] || len(r.Header.Get("X-Big")) != 6000 || r.Header.Get("X-Conn") != "1" {
			t.Errorf("POST %d reached the backend changed: body %d bytes (sent %d), X-Big %d bytes, X-Conn %q",
				k, len(r.Body), len(bodies[k]), len(r.Header.Get("X-Big")), r.Header.Get("X-Conn"))
		}
	}

	for _, c := range clients {
		c.c.Close()
	}
	waitFor(t, "parked connections to close with their clients", func() bool {
		return parkedConns(d, "web") == 0 && d.idleConns.open() == 0 && seriesValue(t, d, "web") == 0 &&
			gaugeValue(t, d.metrics.parked.WithLabelValues("web")) == 0
	})
}

// A parked connection keeps its idle timeout: the server closes it once
// the timeout has passed since its last answer, not before.
func TestParkedConnectionKeepsItsIdleTimeout(t *testing.T) {
	be := newBackend(t, nil)
	const idle = 1500 * time.Millisecond
	cfg := withListener(simpleConfig(be.addr), fsm.ListenerLimits{IdleTimeout: fsm.Duration(idle)})
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	c := dialPark(t, d.ListenerAddr("web"), 0, nil)
	c.send(c.get("/"))
	c.answer("ok")
	answered := time.Now()
	parkUntil(t, d, 1)
	_ = c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := c.br.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("reading a parked connection: %d bytes, %v; want the server's close", n, err)
	}
	if waited := time.Since(answered); waited < idle-100*time.Millisecond {
		t.Errorf("the parked connection closed %v after its answer, before its idle timeout of %v", waited, idle)
	}
	waitFor(t, "the closed connection to be forgotten", func() bool {
		return parkedConns(d, "web") == 0 && seriesValue(t, d, "web") == 0
	})
}

// Parked connections count against max_conns, and their place comes back
// when they close; a listener of one socket too, where fasthttp's own
// count, which does not see them, was the limit.
func TestParkedConnectionsCountAgainstMaxConns(t *testing.T) {
	for _, shards := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d sockets", shards), func(t *testing.T) { testParkedMaxConns(t, shards) })
	}
}

func testParkedMaxConns(t *testing.T, shards int) {
	be := newBackend(t, nil)
	cfg := withListener(simpleConfig(be.addr), fsm.ListenerLimits{MaxConns: 1})
	d := startDataplane(t, newFakeSource(cfg.build()), func(o *Options) { o.ListenShards = shards })
	addr := d.ListenerAddr("web")
	a := dialPark(t, addr, 0, nil)
	a.send(a.get("/"))
	a.answer("ok")
	parkUntil(t, d, 1)
	resp, body := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp.StatusCode != 503 || !strings.Contains(body, "connection limit") {
		t.Fatalf("a second connection with one parked at max_conns 1: %d %q, want 503", resp.StatusCode, body)
	}
	a.c.Close()
	waitFor(t, "the parked connection's place to come back", func() bool { return seriesValue(t, d, "web") == 0 })
	resp, body = rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("a connection after the parked one closed: %d %q, want 200", resp.StatusCode, body)
	}
}

// Removing a listener closes its parked connections.
func TestRemovedListenerClosesItsParkedConnections(t *testing.T) {
	be := newBackend(t, nil)
	cfg := simpleConfig(be.addr)
	src := newFakeSource(cfg.build())
	d := startDataplane(t, src, nil)
	c := dialPark(t, d.ListenerAddr("web"), 0, nil)
	c.send(c.get("/"))
	c.answer("ok")
	parkUntil(t, d, 1)
	gone := simpleConfig(be.addr)
	gone.index = 2
	delete(gone.listeners, "web")
	delete(gone.routes, "app")
	src.Set(gone.build())
	_ = c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var ne net.Error
	if n, err := c.br.Read(make([]byte, 1)); n != 0 || err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("a parked connection of a removed listener read %d bytes, %v; want it closed", n, err)
	}
	waitFor(t, "the parked connection to be forgotten", func() bool {
		return d.idleConns.open() == 0 && seriesValue(t, d, "web") == 0
	})
}

// Many clients whose connections park and wake as fast as a sweeper can
// make them, with requests pipelined or one at a time: every answer is
// to its own client's request. A parked connection gives back its
// request context and reader, which another connection then uses.
func TestParkingKeepsClientsApart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echo := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, r.Header.Get("X-Conn")+"|"+r.URL.Path+"|"+string(body))
	})}
	go func() { _ = echo.Serve(ln) }()
	t.Cleanup(func() { _ = echo.Close() })
	d := startDataplane(t, newFakeSource(simpleConfig(ln.Addr().String()).build()), nil)
	addr := d.ListenerAddr("web")

	stop := make(chan struct{})
	var sweeping sync.WaitGroup
	sweeping.Go(func() {
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				d.idleConns.sweep()
			}
		}
	})
	const clients, rounds = 6, 25
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			errs <- parkingClient(addr, i, rounds)
		})
	}
	wg.Wait()
	close(stop)
	sweeping.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := d.idleConns.parked.Load(); n < clients {
		t.Errorf("%d parks in all: the test did not exercise parking", n)
	} else {
		t.Logf("%d parks", n)
	}
}

// parkingClient sends rounds requests on one connection, pausing between
// them, and checks that each answer is its own.
func parkingClient(addr string, id, rounds int) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	br := bufio.NewReader(c)
	rng := rand.New(rand.NewPCG(uint64(id), 7))
	for k := range rounds {
		n := 1 + rng.IntN(2) // one request, or two pipelined
		var reqs strings.Builder
		var want []string
		for j := range n {
			path := fmt.Sprintf("/c%d/r%d.%d", id, k, j)
			body := strings.Repeat(fmt.Sprintf("[%d.%d.%d]", id, k, j), 1+rng.IntN(400))
			fmt.Fprintf(&reqs, "POST %s HTTP/1.1\r\nHost: a\r\nX-Conn: %d\r\nContent-Length: %d\r\n\r\n%s", path, id, len(body), body)
			want = append(want, fmt.Sprintf("%d|%s|%s", id, path, body))
		}
		if _, err := io.WriteString(c, reqs.String()); err != nil {
			return fmt.Errorf("conn %d round %d: %w", id, k, err)
		}
		for j := range n {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return fmt.Errorf("conn %d round %d: %w", id, k, err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(got) != want[j] {
				return fmt.Errorf("conn %d round %d: answer %d %.60q, want 200 %.60q", id, k, resp.StatusCode, got, want[j])
			}
		}
		time.Sleep(time.Duration(rng.IntN(8)) * time.Millisecond)
	}
	return nil
}

// The memory parked connections leave is returned at the end of a wave
// of parks, or the sweep after a large batch (not more often than
// returnEvery).
func TestReturnWhen(t *testing.T) {
	for _, c := range []struct {
		parked, parks int
		due           bool
		since         time.Duration
		now, next     bool
	}{
		{parked: 0, parks: 0, since: time.Hour},
		{parked: 0, parks: returnAfterWave - 1, since: time.Hour},
		{parked: 0, parks: returnAfterWave, since: time.Hour, now: true},
		{parked: 0, parks: returnAfterWave, since: 0, now: true},
		{parked: 5, parks: returnAfterWave, since: time.Hour},
		{parked: 5, parks: returnAfterParks - 1, since: time.Hour},
		{parked: 5, parks: returnAfterParks, since: time.Hour, next: true},
		{parked: 5, parks: returnAfterParks, since: returnEvery - time.Millisecond},
		{parked: 0, parks: returnAfterParks, since: returnEvery - time.Millisecond, now: true},
		{parked: 5, parks: returnAfterParks + 5, due: true, since: time.Hour, now: true},
		{parked: 0, parks: 1, due: true, since: 0, now: true},
	} {
		now, next := returnWhen(c.parked, c.parks, c.due, c.since)
		if now != c.now || next != c.next {
			t.Errorf("returnWhen(%d, %d, %v, %v) = %v, %v; want %v, %v", c.parked, c.parks, c.due, c.since, now, next, c.now, c.next)
		}
	}
}

// A wave of parks has the runtime return memory once, at the first sweep
// that parks none.
func TestParkWaveReturnsMemory(t *testing.T) {
	be := newBackend(t, nil)
	d := startDataplane(t, newFakeSource(simpleConfig(be.addr).build()), nil)
	var mu sync.Mutex
	returns := 0
	d.idleConns.sweepMu.Lock()
	d.idleConns.returnMem = func() { mu.Lock(); returns++; mu.Unlock() }
	d.idleConns.sweepMu.Unlock()
	addr := d.ListenerAddr("web")
	for i := range returnAfterWave {
		c := dialPark(t, addr, i, nil)
		c.send(c.get("/"))
		c.answer("ok")
	}
	parkUntil(t, d, returnAfterWave)
	waitFor(t, "the wave's memory to be returned", func() bool {
		d.idleConns.sweep()
		mu.Lock()
		defer mu.Unlock()
		return returns > 0
	})
	d.idleConns.sweep()
	d.idleConns.sweep()
	mu.Lock()
	defer mu.Unlock()
	if returns != 1 {
		t.Errorf("one wave of %d parks returned memory %d times, want once", returnAfterWave, returns)
	}
}

// withFixedRoute adds route "fixed": /fixed answered 200 "fixed" by the
// proxy itself.
func withFixedRoute(cfg config) {
	cfg.routes["fixed"] = fsm.RouteSpec{Listener: "web", Match: fsm.RouteMatch{Path: fsm.PathMatch{Prefix: "/fixed"}},
		Action: fsm.RouteAction{Respond: &fsm.Respond{Status: 200, Body: "fixed"}}}
}

// withHTTPS makes listener "web" https with a self-signed certificate,
// and returns the pool that verifies it.
func withHTTPS(t *testing.T, cfg config) *x509.CertPool {
	certFile, keyFile, roots := writeSelfSigned(t, t.TempDir())
	cfg.listeners["web"] = fsm.ListenerSpec{Protocol: "https", TLS: &fsm.ListenerTLS{CertFile: certFile, KeyFile: keyFile}}
	return roots
}
