package dataplane

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rafterlb/rafter/fsm"
)

// One test per data-plane timeout of the README's table. Each checks the
// cut comes near the configured value, far before what a broken timeout
// would allow.

// withListener sets the limits of listener "web".
func withListener(cfg config, lim fsm.ListenerLimits) config {
	l := cfg.listeners["web"]
	l.Limits = lim
	cfg.listeners["web"] = l
	return cfg
}

// withRoute changes route "app".
func withRoute(cfg config, mod func(*fsm.RouteSpec)) config {
	r := cfg.routes["app"]
	mod(&r)
	cfg.routes["app"] = r
	return cfg
}

// closedWithin reads c until it is closed or errs and reports how long
// that took (up to limit).
func closedWithin(c net.Conn, limit time.Duration) (time.Duration, []byte) {
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	b, _ := io.ReadAll(c)
	return time.Since(start), b
}

// listener read_timeout: the whole request head (and body) from its first
// byte. A client dripping one byte every 50 ms is cut at the timeout, not
// kept alive byte by byte; on a new connection and on a kept-alive one.
func TestTimeoutReadHeaderNotRestartedPerByte(t *testing.T) {
	be := newBackend(t, nil)
	const readTimeout = 400 * time.Millisecond
	cfg := withListener(simpleConfig(be.addr), fsm.ListenerLimits{ReadTimeout: fsm.Duration(readTimeout)})
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	for _, keepAlive := range []bool{false, true} {
		c, err := net.Dial("tcp", d.ListenerAddr("web"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if keepAlive {
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = c.SetDeadline(time.Time{})
		}
		req := "GET / HTTP/1.1\r\nHost: a\r\nX-Drip: " + strings.Repeat("d", 200) // 10 s at 50 ms a byte
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; i < len(req); i++ {
				if _, err := c.Write([]byte{req[i]}); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
		_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, _ = io.ReadAll(br)
		took := time.Since(start)
		_ = c.Close()
		<-done
		if took > readTimeout+1500*time.Millisecond {
			t.Errorf("keep-alive=%v: a dripping head was cut after %s, read timeout %s", keepAlive, took, readTimeout)
		}
	}
}

// listener write_timeout: writing one response. A client that reads
// nothing of a large response is cut off.
func TestTimeoutWrite(t *testing.T) {
	const size = 64 << 20
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = io.Copy(w, io.LimitReader(zeroReader{}, size))
	})
	cfg := withListener(simpleConfig(be.addr), fsm.ListenerLimits{WriteTimeout: fsm.Duration(300 * time.Millisecond), MaxBodyBytes: 1 << 30})
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	c, err := net.Dial("tcp", d.ListenerAddr("web"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetReadBuffer(64 << 10)
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	waitFor(t, "the stalled response to be cut", func() bool {
		return seriesValue(t, d, "web") == 0
	})
	_, b := closedWithin(c, 20*time.Second)
	if len(b) >= size {
		t.Errorf("client got the whole %d bytes", len(b))
	}
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// seriesValue is rafter_client_connections for listener.
func seriesValue(t *testing.T, d *Dataplane, listener string) float64 {
	return gaugeValue(t, d.metrics.connections.WithLabelValues(listener))
}

// listener idle_timeout: a kept-alive connection with no next request is
// closed.
func TestTimeoutIdleKeepAlive(t *testing.T) {
	be := newBackend(t, nil)
	cfg := withListener(simpleConfig(be.addr), fsm.ListenerLimits{IdleTimeout: fsm.Duration(300 * time.Millisecond)})
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	k := dialKeepAlive(t, d.ListenerAddr("web"))
	if resp, _ := k.do("GET / HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if took, b := closedWithin(k.c, 10*time.Second); took > 2*time.Second || len(b) > 0 {
		t.Errorf("idle connection closed after %s (read %q), idle timeout 300ms", took, b)
	}
}

// route timeouts.connect: applies to plain HTTP dials, not only Upgrade.
func TestTimeoutConnectHTTP(t *testing.T) {
	cfg := withRoute(simpleConfig("192.0.2.1:80"), func(r *fsm.RouteSpec) {
		r.Timeouts.Connect = fsm.Duration(250 * time.Millisecond)
	})
	var mu sync.Mutex
	var dialed []time.Duration
	d := startDataplane(t, newFakeSource(cfg.build()), func(o *Options) {
		// A backend that never answers the SYN: the dial takes its timeout.
		o.Dial = func(addr string, timeout time.Duration) (net.Conn, error) {
			mu.Lock()
			dialed = append(dialed, timeout)
			mu.Unlock()
			time.Sleep(min(timeout, 10*time.Second))
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: timeoutErr{}}
		}
	})
	start := time.Now()
	resp, _ := rawExchange(t, d.ListenerAddr("web"), "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if took := time.Since(start); resp.StatusCode != 504 || took > 3*time.Second {
		t.Errorf("status %d after %s, want 504 after about 2 x 250ms (one retry)", resp.StatusCode, took)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, d := range dialed {
		if d != 250*time.Millisecond {
			t.Errorf("dialed with timeout %s, want the route's 250ms", d)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// route timeouts.request: the response head must arrive in time.
func TestTimeoutRequest(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
	})
	cfg := withRoute(simpleConfig(be.addr), func(r *fsm.RouteSpec) {
		r.Timeouts.Request = fsm.Duration(200 * time.Millisecond)
	})
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	start := time.Now()
	resp, _ := rawExchange(t, d.ListenerAddr("web"), "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if took := time.Since(start); resp.StatusCode != 504 || took > 2*time.Second {
		t.Errorf("status %d after %s, want 504 after about 200ms", resp.StatusCode, took)
	}
}

// route timeouts.idle on a streamed request body: a client that stops
// sending mid-body is cut, and the backend never gets it complete.
func TestTimeoutIdleStreamedRequestBody(t *testing.T) {
	be := newDiffBackend(t)
	cfg := withRoute(simpleConfig(be.addr), func(r *fsm.RouteSpec) {
		r.Timeouts.Idle = fsm.Duration(300 * time.Millisecond)
	})
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	c, err := net.Dial("tcp", d.ListenerAddr("web"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Past the buffered prefix, so the body streams; then silence.
	fmt.Fprintf(c, "PUT /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s", 1<<20, strings.Repeat("x", 200<<10))
	took, b := closedWithin(c, 15*time.Second)
	if took > 3*time.Second {
		t.Errorf("silent upload cut after %s, idle timeout 300ms", took)
	}
	if len(b) > 0 && !strings.Contains(string(b), " 408 ") && !strings.Contains(string(b), " 400 ") {
		t.Errorf("client got %q", b[:min(len(b), 100)])
	}
	waitFor(t, "the backend to settle", func() bool { return be.inflight.Load() == 0 })
	for _, rec := range be.records() {
		if rec.complete {
			t.Errorf("backend got %s complete", rec.uri)
		}
	}
}

// route timeouts.idle on a streamed response body: a backend that stops
// sending mid-body is cut, counted and the client sees the truncation.
func TestTimeoutIdleStreamedResponseBody(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		_, _ = io.WriteString(w, strings.Repeat("y", 1000))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
	})
	cfg := withRoute(simpleConfig(be.addr), func(r *fsm.RouteSpec) {
		r.Timeouts.Idle = fsm.Duration(300 * time.Millisecond)
	})
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	c, err := net.Dial("tcp", d.ListenerAddr("web"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, err = io.ReadAll(resp.Body)
	}
	if took := time.Since(start); took > 3*time.Second || !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		t.Errorf("after %s: %v, want the response cut after about 300ms", took, err)
	}
	waitFor(t, "the idle timeout to be counted", func() bool {
		return counterValue(t, d.metrics.upstreamErrors.WithLabelValues("app", "idle_timeout")) == 1
	})
}

// pool max_conn_wait: a request waiting for a connection to a backend at
// its limit gives up with 503.
func TestTimeoutMaxConnWait(t *testing.T) {
	release := make(chan struct{})
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
		}
	})
	cfg := simpleConfig(be.addr)
	p := cfg.pools["app"]
	p.MaxConnsPerBackend = 1
	p.MaxConnWait = fsm.Duration(200 * time.Millisecond)
	cfg.pools["app"] = p
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	t.Cleanup(func() { close(release) }) // before the data plane drains
	addr := d.ListenerAddr("web")
	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_, _ = io.WriteString(held, "GET /hold HTTP/1.1\r\nHost: a\r\n\r\n")
	waitFor(t, "the first request to hold the only connection", func() bool { return len(be.requests()) == 1 })
	start := time.Now()
	resp, _ := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if took := time.Since(start); resp.StatusCode != 503 || took > 2*time.Second {
		t.Errorf("status %d after %s, want 503 after about 200ms", resp.StatusCode, took)
	}
}
