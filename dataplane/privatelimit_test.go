package dataplane

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

// capBackend reads the PROXY header (v1 or v2) that starts each
// connection, then serves HTTP on it: GET /c/PORT answers with the
// header's source address, which must name PORT (the client connection
// the proxy forwarded from); GET /hold waits for release first. It counts
// the connections open at once as it sees them.
type capBackend struct {
	addr    string
	plain   bool          // connections start without a PROXY header
	cap     int           // connections the proxy may hold open at once
	release chan struct{} // closed: /hold answers
	mu      sync.Mutex
	open    int
	most    int // the most connections open at once (see settle)
	total   int
	holding int
	bad     []string
}

func newCapBackend(t testing.TB, limit int) *capBackend {
	return newCapBackendOf(t, limit, false)
}

// newCapBackendOf is newCapBackend; with plain, connections start without
// a PROXY header.
func newCapBackendOf(t testing.TB, limit int, plain bool) *capBackend {
	b := &capBackend{cap: limit, plain: plain, release: make(chan struct{})}
	b.addr = serveConns(t, 30*time.Second, b.serve)
	t.Cleanup(b.unhold) // before serveConns waits for its connections
	return b
}

func (b *capBackend) unhold() {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.release:
	default:
		close(b.release)
	}
}

func (b *capBackend) serve(c net.Conn, br *bufio.Reader) {
	b.mu.Lock()
	b.open++
	b.total++
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.open--
		b.mu.Unlock()
	}()
	var src netip.AddrPort
	if !b.plain {
		var err error
		if src, err = readProxyHeader(br); err != nil {
			b.fail("connection without a PROXY header: %v", err)
			return
		}
	}
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		b.settle()
		if req.Header.Get("Upgrade") != "" {
			b.upgrade(c, br, req)
			return
		}
		if req.URL.Path == "/drop" {
			// Answered as if the connection stayed open, then closed.
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
			return
		}
		if req.URL.Path == "/hold" {
			b.mu.Lock()
			b.holding++
			b.mu.Unlock()
			<-b.release
		} else if port := strings.TrimPrefix(req.URL.Path, "/c/"); !b.plain && port != strconv.Itoa(int(src.Port())) {
			b.fail("request for client port %s on a connection whose PROXY header names %s", port, src)
		}
		body := src.String()
		if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
			return
		}
	}
}

// settle records how many connections are open while a request is
// served. A connection the proxy has just closed may not have been seen
// to end yet, so a count above cap is taken only once it has stood for
// two seconds: the proxy keeps the connections it does not close.
func (b *capBackend) settle() {
	deadline := time.Now().Add(2 * time.Second)
	for {
		b.mu.Lock()
		open := b.open
		if open <= b.cap || b.most > b.cap || time.Now().After(deadline) {
			b.most = max(b.most, open)
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
}

func (b *capBackend) fail(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bad = append(b.bad, fmt.Sprintf(format, args...))
}

// check fails t if the proxy held more than cap connections open at
// once or a request arrived on another client's connection.
func (b *capBackend) check(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.most > b.cap {
		t.Errorf("the backend saw %d connections open at once, max_conns_per_backend is %d", b.most, b.cap)
	}
	for _, s := range b.bad {
		t.Error(s)
	}
}

func (b *capBackend) counts() (open, total, holding int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open, b.total, b.holding
}

func readProxyHeader(br *bufio.Reader) (src netip.AddrPort, err error) {
	first, err := br.Peek(len(proxyV2Sig))
	if err != nil {
		return src, err
	}
	var raw []byte
	if string(first) == proxyV2Sig {
		fixed, err := br.Peek(16)
		if err != nil {
			return src, err
		}
		raw = make([]byte, 16+int(binary.BigEndian.Uint16(fixed[14:16])))
		if _, err := io.ReadFull(br, raw); err != nil {
			return src, err
		}
	} else if raw, err = br.ReadSlice('\n'); err != nil {
		return src, err
	}
	h, err := parseProxy(raw)
	if err != nil {
		return src, err
	}
	if h.local || h.n != len(raw) {
		return src, fmt.Errorf("header %q names no client", raw)
	}
	return h.src, nil
}

// sendProxyConfig is simpleConfig with pool app sending PROXY headers of
// version v to backend addr, at most limit connections, waiting wait.
func sendProxyConfig(addr, v string, limit int, wait time.Duration) config {
	cfg := simpleConfig(addr)
	p := cfg.pools["app"]
	p.SendProxyProtocol = v
	p.MaxConnsPerBackend = limit
	p.MaxConnWait = fsm.Duration(wait)
	cfg.pools["app"] = p
	return cfg
}

// noRetries makes route app try each request once, so that a request
// refused at the limit waits once.
func noRetries(cfg config) config {
	r := cfg.routes["app"]
	r.Retries = &fsm.RetryPolicy{Attempts: 0}
	cfg.routes["app"] = r
	return cfg
}

// privateConns is the count of private connections to pool app's
// backend addr (0 when the registry has no limit for it).
func privateConns(d *Dataplane, addr string) int {
	d.reg.mu.Lock()
	l := d.reg.limits[backendKey{"app", addr}]
	d.reg.mu.Unlock()
	if l == nil {
		return 0
	}
	return l.conns()
}

// capClient is a client connection to the proxy asking for /c/PORT.
type capClient struct {
	c    net.Conn
	br   *bufio.Reader
	self string // the client's address as the backend sees it
}

func newCapClient(t testing.TB, proxy string) *capClient {
	c := dialFrom(t, untrustedSrc, proxy)
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	return &capClient{c: c, br: bufio.NewReader(c), self: c.LocalAddr().String()}
}

// get sends GET path (/c/PORT for "") and returns the status and body.
func (c *capClient) get(path string) (int, string, error) {
	if path == "" {
		path = "/c/" + strconv.Itoa(c.c.LocalAddr().(*net.TCPAddr).Port)
	}
	if _, err := io.WriteString(c.c, "GET "+path+" HTTP/1.1\r\nHost: app\r\n\r\n"); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), err
}

// mustGet: GET path answers 200 from a backend that saw this client.
func (c *capClient) mustGet(t testing.TB, path string) {
	t.Helper()
	code, body, err := c.get(path)
	if err != nil || code != 200 || body != c.self {
		t.Fatalf("GET %s from %s: %d %q %v, want 200 naming the client", path, c.self, code, body, err)
	}
}

// Many client connections of a pool with send_proxy_protocol, each
// sending requests in sequence and all staying open, never hold more
// backend connections than max_conns_per_backend: a request beyond the
// limit is served on a connection that another client's request left
// idle, closed for it. Every request arrives on a connection whose PROXY
// header names its own client.
func TestSendProxyMaxConns(t *testing.T) {
	for _, v := range []string{fsm.ProxyProtocolV1, fsm.ProxyProtocolV2} {
		t.Run(v, func(t *testing.T) {
			const limit, clients, rounds = 2, 6, 8
			be := newCapBackend(t, limit)
			// The wait is long so that on a loaded machine every request
			// is served: a connection frees up each time a request ends.
			d := startDataplane(t, newFakeSource(sendProxyConfig(be.addr, v, limit, 5*time.Second).build()), nil)
			proxy := d.ListenerAddr("web")
			var cs []*capClient
			for range clients {
				cs = append(cs, newCapClient(t, proxy))
			}
			// In rounds, each client one request, so that no client
			// connection closes (giving its slots back) before the end.
			for round := range rounds {
				var wg sync.WaitGroup
				errs := make(chan error, clients)
				for _, c := range cs {
					wg.Go(func() {
						if code, body, err := c.get(""); err != nil || code != 200 || body != c.self {
							errs <- fmt.Errorf("round %d, client %s: %d %q %v, want 200 naming the client", round, c.self, code, body, err)
						}
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Fatal(err)
				}
			}
			be.check(t)
			if _, total, _ := be.counts(); total < clients {
				t.Errorf("%d backend connections for %d clients", total, clients)
			}
			for _, c := range cs {
				c.c.Close()
			}
			waitFor(t, "the private connections of closed clients released", func() bool { return privateConns(d, be.addr) == 0 })
		})
	}
}

// At the limit with no idle connection to close, a request waits
// max_conn_wait and fails as the shared client's does: 503, counted and
// logged as conn_limit. Once the holder's request ends, its idle
// connection is closed for the next client's request.
func TestSendProxyMaxConnsWait(t *testing.T) {
	be := newCapBackend(t, 1)
	const wait = 300 * time.Millisecond
	var logBuf testutil.SyncBuffer
	d := startDataplane(t, newFakeSource(noRetries(sendProxyConfig(be.addr, fsm.ProxyProtocolV1, 1, wait)).build()), func(o *Options) {
		o.AccessLog = slog.New(slog.NewJSONHandler(&logBuf, nil))
	})
	t.Cleanup(be.unhold) // before the data plane drains
	proxy := d.ListenerAddr("web")
	a, b := newCapClient(t, proxy), newCapClient(t, proxy)
	held := make(chan error, 1)
	go func() {
		code, body, err := a.get("/hold")
		if err == nil && (code != 200 || body != a.self) {
			err = fmt.Errorf("%d %q, want 200 naming the client", code, body)
		}
		held <- err
	}()
	waitFor(t, "the first client's request to hold the only connection", func() bool {
		_, _, holding := be.counts()
		return holding == 1
	})
	start := time.Now()
	code, _, err := b.get("")
	if took := time.Since(start); err != nil || code != 503 || took < wait/2 || took > wait+5*time.Second {
		t.Fatalf("second client at the limit: %d %v after %s, want 503 after about %s", code, err, took, wait)
	}
	if n := counterValue(t, d.metrics.upstreamErrors.WithLabelValues("app", "conn_limit")); n != 1 {
		t.Errorf("conn_limit upstream errors = %v, want 1", n)
	}
	waitFor(t, "the refusal in the access log", func() bool { return strings.Contains(logBuf.String(), `"error":"conn_limit"`) })
	if _, total, _ := be.counts(); total != 1 {
		t.Fatalf("the backend saw %d connections, want 1", total)
	}

	be.unhold()
	if err := <-held; err != nil {
		t.Fatalf("held request: %v", err)
	}
	for range 3 {
		b.mustGet(t, "")
		a.mustGet(t, "")
	}
	be.check(t)
	if _, total, _ := be.counts(); total != 7 {
		t.Errorf("the backend saw %d connections, want 7 (each request took the other client's idle one)", total)
	}
}

// Closing client connections gives their private connections' slots
// back: round after round, new clients reach the backend at the limit.
func TestSendProxyMaxConnsReleasedOnClose(t *testing.T) {
	const limit = 2
	be := newCapBackend(t, limit)
	d := startDataplane(t, newFakeSource(noRetries(sendProxyConfig(be.addr, fsm.ProxyProtocolV1, limit, 300*time.Millisecond)).build()), nil)
	proxy := d.ListenerAddr("web")
	for round := range 4 {
		var cs []*capClient
		for range limit {
			c := newCapClient(t, proxy)
			c.mustGet(t, "")
			cs = append(cs, c)
		}
		if n := privateConns(d, be.addr); n != limit {
			t.Fatalf("round %d: %d private connections counted, want %d", round, n, limit)
		}
		for _, c := range cs {
			c.c.Close()
		}
		waitFor(t, "closed clients' slots given back", func() bool { return privateConns(d, be.addr) == 0 })
		waitFor(t, "the backend connections closed", func() bool {
			open, _, _ := be.counts()
			return open == 0
		})
	}
	be.check(t)
}

// A change of max_conns_per_backend applies to new dials, and counts the
// connections opened under the earlier table until they close.
func TestSendProxyMaxConnsTableChange(t *testing.T) {
	be := newCapBackend(t, 3)
	const wait = 300 * time.Millisecond
	cfg := noRetries(sendProxyConfig(be.addr, fsm.ProxyProtocolV1, 2, wait))
	cfg.index = 1
	src := newFakeSource(cfg.build())
	d := startDataplane(t, src, nil)
	t.Cleanup(be.unhold) // before the data plane drains
	setLimit := func(index uint64, limit int) {
		t.Helper()
		next := noRetries(sendProxyConfig(be.addr, fsm.ProxyProtocolV1, limit, wait))
		next.index = index
		src.Set(next.build())
		waitFor(t, "the new table served", func() bool { return d.Table().Index() == index })
	}
	proxy := d.ListenerAddr("web")
	a, b := newCapClient(t, proxy), newCapClient(t, proxy)
	held := make(chan error, 1)
	go func() {
		code, _, err := a.get("/hold")
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d", code)
		}
		held <- err
	}()
	waitFor(t, "a request holding a connection", func() bool {
		_, _, holding := be.counts()
		return holding == 1
	})

	setLimit(2, 1)
	if code, _, err := b.get(""); err != nil || code != 503 {
		t.Fatalf("limit 1 with a connection of the earlier table busy: %d %v, want 503", code, err)
	}
	setLimit(3, 3)
	b.mustGet(t, "")
	if n := privateConns(d, be.addr); n != 2 {
		t.Errorf("%d private connections counted, want 2 (one from each table)", n)
	}
	be.unhold()
	if err := <-held; err != nil {
		t.Fatalf("held request: %v", err)
	}
	a.c.Close()
	b.c.Close()
	waitFor(t, "every slot given back", func() bool { return privateConns(d, be.addr) == 0 })
	be.check(t)
}

// A dial that fails, and a connection closed because its TLS handshake
// failed, give their slots back: every request to a backend at limit 1
// that cannot be reached gets 502, never 503 from a slot kept.
func TestSendProxyMaxConnsFailedDials(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	plain := newCapBackend(t, 1) // speaks no TLS
	for name, cfg := range map[string]config{
		"refused": noRetries(sendProxyConfig(refused, fsm.ProxyProtocolV1, 1, 200*time.Millisecond)),
		"tls handshake": func() config {
			cfg := noRetries(sendProxyConfig(plain.addr, fsm.ProxyProtocolV2, 1, 200*time.Millisecond))
			p := cfg.pools["app"]
			p.TLS = &fsm.PoolTLS{InsecureSkipVerify: true}
			cfg.pools["app"] = p
			return cfg
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			d := startDataplane(t, newFakeSource(cfg.build()), nil)
			addr := cfg.pools["app"].Backends[0].Addr
			c := newCapClient(t, d.ListenerAddr("web"))
			for i := range 4 {
				if code, _, err := c.get(""); err != nil || code != 502 {
					t.Fatalf("request %d: %d %v, want 502", i, code, err)
				}
				if n := privateConns(d, addr); n != 0 {
					t.Fatalf("request %d: %d slots still taken", i, n)
				}
			}
		})
	}
}

// privateLimit on its own: slots up to the limit, a refusal after the
// wait (ErrTimeout when the request's timeout ended it), a waiter handed
// the slot a connection gives back, exactly one release per connection
// however often it is closed, and a lowered limit retiring slots.
func TestPrivateLimit(t *testing.T) {
	var l privateLimit
	hc := &fasthttp.HostClient{}
	const wait = 20 * time.Millisecond
	var conns []net.Conn
	for range 2 {
		if err := l.acquire(2, wait, 0); err != nil {
			t.Fatalf("below the limit: %v", err)
		}
		c, peer := net.Pipe()
		t.Cleanup(func() { peer.Close() })
		conns = append(conns, l.adopt(c, hc))
	}
	if err := l.acquire(2, wait, 0); !errors.Is(err, fasthttp.ErrNoFreeConns) {
		t.Fatalf("at the limit: %v, want ErrNoFreeConns", err)
	}
	if err := l.acquire(2, time.Minute, wait); !errors.Is(err, fasthttp.ErrTimeout) {
		t.Fatalf("at the limit with a shorter request timeout: %v, want ErrTimeout", err)
	}

	got := make(chan error, 1)
	go func() { got <- l.acquire(2, time.Minute, 0) }()
	waitFor(t, "a dial waiting", func() bool { return l.waiting.Load() == 1 })
	for range 3 {
		conns[0].Close()
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("waiter: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter was not handed the slot given back")
	}
	if n, w := l.conns(), l.waiting.Load(); n != 2 || w != 0 {
		t.Fatalf("after the hand-over: %d open, %d waiting; want 2 and 0", n, w)
	}
	l.release(nil) // the waiter's dial failed

	// Limit 1 with one open: refused, and the open one's slot retires.
	if err := l.acquire(1, wait, 0); !errors.Is(err, fasthttp.ErrNoFreeConns) {
		t.Fatalf("lowered limit reached: %v", err)
	}
	conns[1].Close()
	conns[1].Close()
	if n := l.conns(); n != 0 {
		t.Fatalf("%d open after every connection closed, want 0", n)
	}
	if len(l.holders) != 0 {
		t.Fatalf("holders left: %v", l.holders)
	}
	if err := l.acquire(1, wait, 0); err != nil {
		t.Fatalf("under the lowered limit: %v", err)
	}
}
