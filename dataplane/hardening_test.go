package dataplane

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rafterlb/rafter/fsm"
)

// keepAliveConn is a raw client connection that sends requests one after
// another and reads each response.
type keepAliveConn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dialKeepAlive(t testing.TB, addr string) *keepAliveConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &keepAliveConn{t: t, c: c, br: bufio.NewReader(c)}
}

// do sends req and reads one response; method is the request's (for HEAD).
func (k *keepAliveConn) do(req string) (*http.Response, string) {
	k.t.Helper()
	_ = k.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(k.c, req); err != nil {
		k.t.Fatalf("write %q: %v", firstLine(req), err)
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		k.t.Fatalf("response to %q: %v", firstLine(req), err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		k.t.Fatalf("response body to %q: %v", firstLine(req), err)
	}
	return resp, string(body)
}

// A panic while handling a request answers that request with 500, is
// counted, and leaves the node serving: on the same connection and on new
// ones.
func TestPanicAnswers500AndNodeKeepsServing(t *testing.T) {
	be := newBackend(t, nil)
	cfg := simpleConfig(be.addr)
	cfg.routes["boom"] = fsm.RouteSpec{Listener: "web", Match: fsm.RouteMatch{Path: fsm.PathMatch{Prefix: "/boom"}},
		Action: fsm.RouteAction{Split: []fsm.WeightedPool{{Pool: "app", Weight: 1}}}}
	d := startDataplane(t, newFakeSource(cfg.build()), func(o *Options) {
		o.routeHook = func(route string) {
			if route == "boom" {
				panic("injected failure")
			}
		}
	})
	addr := d.ListenerAddr("web")
	k := dialKeepAlive(t, addr)
	for i := 0; i < 3; i++ {
		if resp, body := k.do("GET /boom HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode != 500 {
			t.Fatalf("panicking route: status %d %q, want 500", resp.StatusCode, body)
		}
		if resp, body := k.do("GET / HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("same connection after the panic: status %d %q", resp.StatusCode, body)
		}
		if resp, body := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("new connection after the panic: status %d %q", resp.StatusCode, body)
		}
	}
	if n := counterValue(t, d.metrics.panics.WithLabelValues("request")); n != 3 {
		t.Errorf("rafter_panics_total{where=request} = %v, want 3", n)
	}
	if n := len(be.requests()); n != 6 {
		t.Errorf("backend saw %d requests, want 6", n)
	}
}

// Limits far beyond anything sensible (validation will refuse them, but
// the data plane must not rely on it) neither panic the node nor make it
// allocate them.
func TestHugeLimitsDoNotPanic(t *testing.T) {
	be := newBackend(t, nil)
	cfg := simpleConfig(be.addr)
	huge := fsm.Duration(math.MaxInt64)
	cfg.listeners["web"] = fsm.ListenerSpec{Limits: fsm.ListenerLimits{
		MaxHeaderBytes: 4611686018427387904, MaxBodyBytes: math.MaxInt64,
		ReadTimeout: huge, WriteTimeout: huge, IdleTimeout: huge, MaxConns: math.MaxInt,
	}}
	r := cfg.routes["app"]
	r.Timeouts = fsm.RouteTimeouts{Connect: huge, Request: huge, Idle: huge}
	r.MaxBody = math.MaxInt64
	r.Action.Split[0].Weight = math.MaxInt
	r.Action.Split = append(r.Action.Split, fsm.WeightedPool{Pool: "app", Weight: math.MaxInt})
	cfg.routes["app"] = r
	p := cfg.pools["app"]
	p.Balancer = fsm.BalancerRandom
	p.MaxConnsPerBackend = math.MaxInt
	p.MaxConnWait = huge
	p.Backends = append(p.Backends, fsm.Backend{Addr: be.addr + "0", Weight: math.MaxInt})
	p.Backends[0].Weight = math.MaxInt
	cfg.pools["app"] = p
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	addr := d.ListenerAddr("web")
	for i := 0; i < 5; i++ {
		k := dialKeepAlive(t, addr)
		resp, _ := k.do("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
		if resp.StatusCode != 200 && resp.StatusCode != 502 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if big := strings.Repeat("x", 2<<20); true {
		resp, _ := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: "+big+"\r\n\r\n")
		if resp.StatusCode != 431 {
			t.Errorf("a 2 MiB header: status %d, want 431", resp.StatusCode)
		}
	}
}

// A client that announces a Content-Length and disconnects before sending
// all of it must not get a shorter body delivered upstream as complete:
// buffered (small) or streamed (large).
func TestTruncatedRequestBodyNeverCompleteUpstream(t *testing.T) {
	f := newDiffFixture(t)
	for _, size := range []int{1000, 50 << 10, 300 << 10} {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		head := fmt.Sprintf("PUT /cut/%d HTTP/1.1\r\nHost: a\r\nX-Req-Id: cut-%d\r\nContent-Length: %d\r\n\r\n", size, size, size)
		_, _ = io.WriteString(c, head+strings.Repeat("x", size/2))
		_ = c.Close()
	}
	// Each cut request ends either in the handler (recorded in
	// rafter_requests_total) or in fasthttp's parser (a client error).
	waitFor(t, "the proxy to finish the cut requests", func() bool {
		return sumCounters(t, f.d.metrics.requests)+sumCounters(t, f.d.metrics.clientErrors) >= 3
	})
	waitFor(t, "the backend to settle", func() bool { return f.be.inflight.Load() == 0 })
	for _, rec := range f.be.records() {
		if rec.complete {
			t.Errorf("backend got %s %s complete with %d body bytes", rec.method, rec.uri, len(rec.body))
		}
	}
}

// sumCounters adds up every series of a counter vector.
func sumCounters(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 256)
	c.Collect(ch)
	close(ch)
	total := 0.0
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		total += pb.GetCounter().GetValue()
	}
	return total
}

// Requests a proxy must refuse rather than pass on, closing the
// connection: obs-fold field lines (fasthttp would join them into a
// corrupted value), CONNECT, which is not tunnelled and must reach no
// backend, and ambiguous framing.
func TestRefusedRequestsReachNoBackend(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	for _, tc := range []struct {
		req  string
		want int
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\nX-B: 1\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n\ttwo\r\n\r\n", 400},
		{"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"CONNECT http://a/x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501},
		// The framing refusal closed nothing before: the error response
		// reset the Connection: close set for it.
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		// An Upgrade's body would be tunnelled raw: a request smuggled
		// past routing to the backend.
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 30\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	} {
		resp, _ := rawExchange(t, f.addr, tc.req)
		if resp.StatusCode != tc.want || !resp.Close {
			t.Errorf("%q: status %d close=%v, want %d and the connection closed", tc.req, resp.StatusCode, resp.Close, tc.want)
		}
	}
	if reqs := f.be.requests(); len(reqs) != 0 {
		t.Errorf("backend saw %d requests: %+v", len(reqs), reqs)
	}
}
