package dataplane

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

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

// failingListener fails its first Accepts with errs.
type failingListener struct {
	net.Listener
	mu   sync.Mutex
	errs []error
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// An accept that fails for want of descriptors or memory is retried; any
// other failure stops the listener, as before.
func TestAcceptRetriesWhenOutOfDescriptors(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &failingListener{Listener: inner, errs: []error{
		&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)},
		&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ENFILE)},
	}}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("served") }}
	pl := &parkListener{Listener: ln, lot: &parkLot{srv: srv, ended: func(net.Conn) {}, gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})},
		log: slog.New(slog.DiscardHandler), name: "web"}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(pl) }()
	resp, body := rawExchange(t, inner.Addr().String(), "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp.StatusCode != 200 || body != "served" {
		t.Fatalf("after EMFILE and ENFILE: %d %q, want 200 served", resp.StatusCode, body)
	}
	if err := srv.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve after Shutdown: %v", err)
	}

	boom := errors.New("accept: something else")
	inner2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inner2.Close()
	srv2 := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {}, Logger: fasthttpLogger{slog.New(slog.DiscardHandler)}}
	pl2 := &parkListener{Listener: &failingListener{Listener: inner2, errs: []error{boom}}, lot: &parkLot{srv: srv2},
		log: slog.New(slog.DiscardHandler), name: "web"}
	if err := srv2.Serve(pl2); !errors.Is(err, boom) {
		t.Fatalf("Serve with another accept failure returned %v, want it", err)
	}
}

// A parked HTTPS connection is served as TLS after it wakes: its
// requests reach the backend with X-Forwarded-Proto https, park after
// park.
func TestParkedHTTPSConnectionStaysTLS(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get("X-Forwarded-Proto"))
	})
	cfg := simpleConfig(be.addr)
	certFile, keyFile, roots := writeSelfSigned(t, t.TempDir())
	cfg.listeners["web"] = fsm.ListenerSpec{Protocol: "https", TLS: &fsm.ListenerTLS{CertFile: certFile, KeyFile: keyFile}}
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
	certFile, keyFile, roots := writeSelfSigned(t, t.TempDir())
	cfg.listeners["web"] = fsm.ListenerSpec{Protocol: "https", TLS: &fsm.ListenerTLS{CertFile: certFile, KeyFile: keyFile}}
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
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := func(net.Conn) {
		once.Do(func() {
			close(held)
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
		})
	}
	testHookServe.Store(&hook)
	t.Cleanup(func() { testHookServe.Store(nil) })
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
	stopped := make(chan struct{})
	go func() {
		d.stopping.Wait()
		close(stopped)
	}()
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
