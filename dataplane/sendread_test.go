package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
	"github.com/valyala/fasthttp"
)

// holdEvents counts the events of held requests while a test runs.
type holdEvents struct{ sent, empty, recheck, partial atomic.Int64 }

func watchHolds(t *testing.T) *holdEvents {
	ev := &holdEvents{}
	hook := func(e int) {
		switch e {
		case holdSent:
			ev.sent.Add(1)
		case holdEmpty:
			ev.empty.Add(1)
		case holdRecheck:
			ev.recheck.Add(1)
		case holdPartial:
			ev.partial.Add(1)
		}
	}
	testHookHold.Store(&hook)
	t.Cleanup(func() { testHookHold.Store(nil) })
	return ev
}

// dialWithTimeout starts a data plane whose route to backend addr has the
// request timeout given, and opens a keep-alive connection to it.
func dialWithTimeout(t *testing.T, addr string, timeout time.Duration) *keepAliveConn {
	cfg := simpleConfig(addr)
	rs := cfg.routes["app"]
	rs.Timeouts = fsm.RouteTimeouts{Request: fsm.Duration(timeout)}
	cfg.routes["app"] = rs
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	return dialKeepAlive(t, d.ListenerAddr("web"))
}

// dialUpstream opens a plain backend connection to ln, closed when the
// test ends.
func dialUpstream(t *testing.T, ln net.Listener) *upstreamConn {
	t.Helper()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	uc := newUpstreamConn(raw, 0)
	t.Cleanup(func() { _ = uc.Close() })
	return uc
}

// okAnswer is closingBackend's answer.
const okAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// closingBackend answers every request from a plain TCP server, each after
// the first on a connection slow later, with answer(n) for the request's
// number n on the connection (from 1; okAnswer when answer is nil), and
// then calls after (unless nil) with the connection and n; after may end
// the connection in any way.
func closingBackend(t *testing.T, slow time.Duration, answer func(n int) string, after func(c *net.TCPConn, n int)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 1; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if n > 1 {
						time.Sleep(slow)
					}
					a := okAnswer
					if answer != nil {
						a = answer(n)
					}
					if _, err := io.WriteString(c, a); err != nil {
						return
					}
					if after != nil {
						after(c.(*net.TCPConn), n)
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// Requests on a reused backend connection go out with the read of their
// answer, and that read finds the answer at its first try: no read that
// finds nothing (EAGAIN) per request. Bodies of every size, on several
// client connections in turn, reach the backend as they were sent, none
// with bytes of an earlier one held on the same connection.
func TestHeldRequestsAreReadOnce(t *testing.T) {
	ev := watchHolds(t)
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Id", r.Header.Get("X-Id"))
		_, _ = io.WriteString(w, r.Header.Get("X-Id"))
	})
	d := startDataplane(t, newFakeSource(simpleConfig(be.addr).build()), nil)
	clients := []*keepAliveConn{dialKeepAlive(t, d.ListenerAddr("web")), dialKeepAlive(t, d.ListenerAddr("web"))}
	// 6000 bytes do not fit the writer's buffer: such a request goes out
	// in parts, not held.
	sizes := []int{0, 3000, 10, 2500, 0, 1, 6000, 3500, 200, 0}
	const n = 60
	for i := range n {
		id := "r" + strconv.Itoa(i)
		size := sizes[i%len(sizes)]
		body := strings.Repeat(string(rune('a'+i%26)), size)
		req := fmt.Sprintf("POST /echo HTTP/1.1\r\nHost: app\r\nX-Id: %s\r\nContent-Length: %d\r\n\r\n%s", id, size, body)
		if size == 0 && i%2 == 0 {
			req = fmt.Sprintf("GET /echo HTTP/1.1\r\nHost: app\r\nX-Id: %s\r\n\r\n", id)
		}
		resp, got := clients[i%len(clients)].do(req)
		if resp.StatusCode != 200 || got != id || resp.Header.Get("X-Id") != id {
			t.Fatalf("request %s: status %d, body %q, X-Id %q", id, resp.StatusCode, got, resp.Header.Get("X-Id"))
		}
	}
	reqs := be.requests()
	if len(reqs) != n {
		t.Fatalf("the backend saw %d requests, want %d", len(reqs), n)
	}
	for i, r := range reqs {
		size := sizes[i%len(sizes)]
		if size == 0 && i%2 == 0 {
			size = -1 // a GET
		}
		want := strings.Repeat(string(rune('a'+i%26)), max(size, 0))
		if r.Header.Get("X-Id") != "r"+strconv.Itoa(i) || r.Body != want {
			t.Fatalf("request %d reached the backend as X-Id %q with a body of %d bytes, want r%d with %d", i, r.Header.Get("X-Id"), len(r.Body), i, len(want))
		}
	}
	// Nor is the first request on a backend connection: it is new.
	want := int64(n - n/len(sizes) - 2)
	if sent := ev.sent.Load(); sent < want || sent > int64(n-n/len(sizes)) {
		t.Errorf("%d of %d requests were written by their answer's read, want %d to %d", sent, n, want, n-n/len(sizes))
	}
	if empty := ev.empty.Load(); empty > ev.sent.Load()/10 {
		t.Errorf("%d reads of %d held requests found nothing: the read did not wait for the answer", empty, ev.sent.Load())
	}
}

// A request held on a connection that the backend ended while it sat in
// the pool, in each of the ways a backend ends one, is answered without
// waiting for the request timeout: the poller lost the end, but the reset
// that answers the request, or the look at the socket after holdCheck,
// finds it.
func TestHeldRequestOnAConnectionTheBackendEnded(t *testing.T) {
	cases := []struct {
		name    string
		end     func(c *net.TCPConn)
		sent    int64 // 0 when the write fails: the reset came before it
		recheck bool  // the end is found by the look after holdCheck
	}{
		{"close", func(c *net.TCPConn) { _ = c.Close() }, 1, false},
		{"reset", func(c *net.TCPConn) { _ = c.SetLinger(0); _ = c.Close() }, 0, false},
		{"lingering close", func(c *net.TCPConn) { _ = c.CloseWrite(); _, _ = io.Copy(io.Discard, c) }, 1, true},
		{"unasked answer", func(c *net.TCPConn) {
			time.Sleep(30 * time.Millisecond) // after the first answer was read
			_, _ = io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			_, _ = io.Copy(io.Discard, c)
		}, 1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := watchHolds(t)
			addr := closingBackend(t, 0, nil, func(c *net.TCPConn, n int) {
				if n == 1 {
					tc.end(c)
				}
			})
			k := dialWithTimeout(t, addr, 10*time.Second)
			if resp, body := k.do("GET /1 HTTP/1.1\r\nHost: app\r\n\r\n"); resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("first request: %d %q", resp.StatusCode, body)
			}
			time.Sleep(100 * time.Millisecond) // the end reaches the pooled connection
			start := time.Now()
			resp, body := k.do("GET /2 HTTP/1.1\r\nHost: app\r\n\r\n")
			took := time.Since(start)
			t.Logf("second request: %d %q after %v; held %d, rechecked %d", resp.StatusCode, body, took, ev.sent.Load(), ev.recheck.Load())
			if took > 3*time.Second {
				t.Errorf("the second request took %v: it waited for the request timeout", took)
			}
			// The unasked 408 was the backend's, not this request's answer.
			if resp.StatusCode != 200 || body != "ok" {
				t.Errorf("second request: %d %q, want 200 \"ok\"", resp.StatusCode, body)
			}
			if ev.sent.Load() != tc.sent {
				t.Errorf("%d held requests written, want %d", ev.sent.Load(), tc.sent)
			}
			if tc.recheck && ev.recheck.Load() != 1 {
				t.Errorf("%d looks after holdCheck, want 1", ev.recheck.Load())
			}
		})
	}
}

// A held request whose answer takes longer than holdCheck gets it, and one
// whose answer does not come ends at the request timeout, not at
// holdCheck.
func TestHeldRequestWaitsForASlowAnswer(t *testing.T) {
	cases := []struct {
		name            string
		slow, timeout   time.Duration
		status          int
		atLeast, atMost time.Duration
	}{
		{"answer after 150ms", 150 * time.Millisecond, 10 * time.Second, 200, 150 * time.Millisecond, 5 * time.Second},
		// A deadline may fall short by timeout/deadlineSlack (armDeadline).
		{"answer after the timeout", 3 * time.Second, 400 * time.Millisecond, 504, 350 * time.Millisecond, 2500 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := watchHolds(t)
			k := dialWithTimeout(t, closingBackend(t, tc.slow, nil, nil), tc.timeout)
			if resp, _ := k.do("GET /1 HTTP/1.1\r\nHost: app\r\n\r\n"); resp.StatusCode != 200 {
				t.Fatalf("first request: %d", resp.StatusCode)
			}
			start := time.Now()
			resp, _ := k.do("GET /2 HTTP/1.1\r\nHost: app\r\n\r\n")
			took := time.Since(start)
			if resp.StatusCode != tc.status || took < tc.atLeast || took > tc.atMost {
				t.Errorf("second request: %d after %v, want %d after %v to %v", resp.StatusCode, took, tc.status, tc.atLeast, tc.atMost)
			}
			if ev.sent.Load() != 1 || ev.recheck.Load() != 1 {
				t.Errorf("held %d, looked after holdCheck %d: want 1 and 1", ev.sent.Load(), ev.recheck.Load())
			}
		})
	}
}

// A held request that the socket takes only in part (its buffer is full)
// goes out whole and in order, the rest written as any write, and its
// answer is read.
func TestHeldRequestWrittenInPart(t *testing.T) {
	ev := watchHolds(t)
	// Small buffers on both sides (the accepted socket inherits the
	// listener's) keep the kernel from taking it all.
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8192) })
		return errors.Join(err, serr)
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const size = 1 << 20 // more than the socket buffers hold
	want := make([]byte, size)
	for i := range want {
		want[i] = byte(i % 251)
	}
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		time.Sleep(100 * time.Millisecond) // the buffers fill meanwhile
		b := make([]byte, size)
		_, err = io.ReadFull(c, b)
		if err == nil {
			_, err = io.WriteString(c, "answer")
		}
		if err != nil {
			b = nil
		}
		got <- b
		_, _ = io.Copy(io.Discard, c)
	}()
	uc := dialUpstream(t, ln)
	if err := uc.Conn.(*net.TCPConn).SetWriteBuffer(8192); err != nil {
		t.Fatal(err)
	}
	if err := uc.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if !uc.startHold(time.Now(), time.Now(), 0) {
		t.Fatal("a TCP connection used just now may not hold a request")
	}
	// No look after holdCheck: this test is about the write alone, on
	// machines of any speed.
	uc.held.check = time.Now().Add(time.Minute)
	uc.holdFlush()
	if n, err := uc.Write(want); n != size || err != nil {
		t.Fatalf("held write: %d, %v", n, err)
	}
	p := make([]byte, 16)
	n, err := io.ReadAtLeast(uc, p, len("answer"))
	if err != nil || string(p[:n]) != "answer" {
		t.Fatalf("answer: %q, %v", p[:n], err)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("the peer got %d bytes, not the %d written in order", len(b), size)
	}
	if ev.partial.Load() != 1 {
		t.Errorf("%d requests written in part, want 1", ev.partial.Load())
	}
}

// Only a plain socket back from the pool within holdIdle holds a request.
func TestWhichRequestsAreHeld(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tcp := dialUpstream(t, ln)
	now := time.Now()
	for _, tc := range []struct {
		name    string
		c       *upstreamConn
		lastUse time.Time
		timeout time.Duration
		want    bool
	}{
		{"used 10ms ago", tcp, now.Add(-10 * time.Millisecond), 0, true},
		{"used 10ms ago, a 10s timeout", tcp, now.Add(-10 * time.Millisecond), 10 * time.Second, true},
		{"a timeout the wait could end before the watcher", tcp, now.Add(-10 * time.Millisecond), holdShortest - time.Millisecond, false},
		{"idle for holdIdle", tcp, now.Add(-holdIdle), 0, false},
		{"idle for a minute", tcp, now.Add(-time.Minute), 0, false},
		{"new", tcp, time.Time{}, 0, false},
		{"no socket (TLS, a wrapper)", newUpstreamConn(readyConn{}, 0), now.Add(-10 * time.Millisecond), 0, false},
	} {
		if got := tc.c.startHold(now, tc.lastUse, tc.timeout); got != tc.want {
			t.Errorf("%s: startHold = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A backend that closes idle keep-alive connections (its idle timeout is
// shorter than the pool's) costs no request a 502: a GET on a connection
// it closed is sent again on another, and a POST whose bytes the closed
// connection refused at once (a reset came before it) is sent again too.
// A POST the backend may have received is not, and gets its 502.
func TestRequestOnAStaleConnectionIsSentAgain(t *testing.T) {
	closeIt := func(c *net.TCPConn) { _ = c.Close() }
	const answer408 = "HTTP/1.1 408 Request Timeout\r\nContent-Length: 7\r\nConnection: close\r\n\r\ntimeout"
	// unasked408 is what Node.js and Apache do when a connection's idle
	// timeout passes: a 408 nobody asked for, and the close.
	unasked408 := func(c *net.TCPConn) {
		time.Sleep(30 * time.Millisecond) // after the first answer was read
		_, _ = io.WriteString(c, answer408)
		_ = c.CloseWrite()
		_, _ = io.Copy(io.Discard, c)
	}
	cases := []struct {
		name, method string
		end          func(c *net.TCPConn) // after the first answer
		second       string               // the second answer on the first connection, if not okAnswer
		later        string               // every answer after the first, on any connection, if set
		want         int
		dials        int64
		stale        float64
	}{
		{"GET, closed", "GET", closeIt, "", "", 200, 2, 1},
		{"GET, reset", "GET", func(c *net.TCPConn) { _ = c.SetLinger(0); _ = c.Close() }, "", "", 200, 2, 1},
		{"GET, lingering close", "GET", func(c *net.TCPConn) { _ = c.CloseWrite(); _, _ = io.Copy(io.Discard, c) }, "", "", 200, 2, 1},
		{"POST, reset", "POST", func(c *net.TCPConn) { _ = c.SetLinger(0); _ = c.Close() }, "", "", 200, 2, 1},
		{"POST, closed", "POST", closeIt, "", "", 502, 1, 0},
		// An answer that began is no stale connection: the backend failed.
		{"GET, answer cut", "GET", nil, "HTTP/1.1 200 OK\r\nContent-Le", "", 502, 1, 0},
		// A 408 on a pooled connection, unasked or not, says the request
		// was not acted on: it goes again, whatever its method.
		{"GET, unasked 408", "GET", unasked408, "", "", 200, 2, 1},
		{"POST, unasked 408", "POST", unasked408, "", "", 200, 2, 1},
		{"POST, 408 answer", "POST", nil, answer408, "", 200, 2, 1},
		// A 408 on a new connection is the backend's answer: the client
		// gets it.
		{"GET, 408 on every connection", "GET", nil, "", answer408, 408, 2, 1},
		// A body too long to keep (more than bufferBodyLimit, and more
		// than the server reads whole) streams from the client once and
		// cannot be sent again.
		{"PUT, streamed body, closed", "PUT", closeIt, "", "", 502, 1, 0},
		{"PUT, streamed body, unasked 408", "PUT", unasked408, "", "", 408, 1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var conns, requests atomic.Int64
			answer := func(n int) string {
				switch {
				case requests.Add(1) > 1 && tc.later != "":
					return tc.later
				case n == 2 && tc.second != "":
					return tc.second
				}
				return okAnswer
			}
			addr := closingBackend(t, 0, answer, func(c *net.TCPConn, n int) {
				switch {
				case n == 1 && tc.end != nil:
					tc.end(c)
				case n == 2 && tc.second != "":
					_ = c.Close()
				}
			})
			d := startDataplane(t, newFakeSource(simpleConfig(addr).build()), func(o *Options) {
				o.Dial = func(addr string, timeout time.Duration) (net.Conn, error) {
					conns.Add(1)
					return net.DialTimeout("tcp", addr, timeout)
				}
			})
			k := dialKeepAlive(t, d.ListenerAddr("web"))
			if resp, _ := k.do("GET /1 HTTP/1.1\r\nHost: app\r\n\r\n"); resp.StatusCode != 200 {
				t.Fatalf("first request: %d", resp.StatusCode)
			}
			time.Sleep(100 * time.Millisecond) // the end reaches the pooled connection
			reqBody := "body"
			if strings.Contains(tc.name, "streamed") {
				reqBody = strings.Repeat("b", 1<<20)
			}
			resp, body := k.do(fmt.Sprintf("%s /2 HTTP/1.1\r\nHost: app\r\nContent-Length: %d\r\n\r\n%s", tc.method, len(reqBody), reqBody))
			if resp.StatusCode != tc.want {
				t.Fatalf("%s on the connection the backend ended: %d %q, want %d", tc.method, resp.StatusCode, body, tc.want)
			}
			if conns.Load() != tc.dials {
				t.Errorf("%d backend connections dialled, want %d", conns.Load(), tc.dials)
			}
			stale := counterValue(t, d.metrics.backendErrors.WithLabelValues("app", addr, "stale"))
			if stale != tc.stale {
				t.Errorf("rafter_backend_errors_total{kind=\"stale\"} = %v, want %v", stale, tc.stale)
			}
		})
	}
}

// A 408 on a pooled connection sends the request again only while tries
// are left; the last try's 408 is the answer the client gets.
func TestA408OnTheLastTryIsTheAnswer(t *testing.T) {
	for _, resend := range []bool{true, false} {
		addr := closingBackend(t, 0, nil, func(c *net.TCPConn, n int) {
			if n == 1 {
				time.Sleep(30 * time.Millisecond) // after the first answer was read
				_, _ = io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
				_ = c.CloseWrite()
				_, _ = io.Copy(io.Discard, c)
			}
		})
		hc := &fasthttp.HostClient{Addr: addr, StreamResponseBody: true}
		tr := newTransport(hc, hc.AcquireConn, hc.ReleaseConn, hc.CloseConn)
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://app/1")
		var lease upstreamLease
		if err := tr.roundTrip(req, resp, time.Now(), 5*time.Second, &lease); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("first request: %v %d", err, resp.StatusCode())
		}
		_ = resp.CloseBodyStream()
		lease.end(true)
		time.Sleep(100 * time.Millisecond) // the 408 reaches the pooled connection
		req.SetRequestURI("http://app/2")
		again, err := tr.try(req, resp, time.Now(), 5*time.Second, &lease, resend)
		if resend && (!again || err == nil) {
			t.Errorf("try with tries left: again %v, err %v; want a try on another connection", again, err)
		}
		if !resend && (again || err != nil || resp.StatusCode() != 408) {
			t.Errorf("last try: again %v, err %v, status %d; want the 408 as the answer", again, err, resp.StatusCode())
		}
		_ = resp.CloseBodyStream()
		lease.end(false)
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
}

// Answers that come around holdCheck, when the watcher may end the wait
// as the answer arrives, each reach their own request, and the exchange's
// deadline is back after every one: a later slow answer still gets its
// 200, and one past the route timeout its 504 at the timeout.
func TestHeldAnswersAroundTheCheck(t *testing.T) {
	ev := watchHolds(t)
	const n = 40
	rng := rand.New(rand.NewPCG(1, 2))
	var delays [n + 3]time.Duration
	for i := 2; i <= n; i++ {
		// Between 10 and 50 ms: the first look at 20 ms or the second.
		delays[i] = 10*time.Millisecond + time.Duration(rng.IntN(40000))*time.Microsecond
	}
	delays[n+1] = 300 * time.Millisecond
	delays[n+2] = 3 * time.Second
	addr := closingBackend(t, 0, func(i int) string {
		time.Sleep(delays[min(i, len(delays)-1)])
		body := "ok-" + strconv.Itoa(i)
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}, nil)
	k := dialWithTimeout(t, addr, time.Second)
	for i := 1; i <= n+1; i++ {
		resp, body := k.do(fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: app\r\n\r\n", i))
		if want := "ok-" + strconv.Itoa(i); resp.StatusCode != 200 || body != want {
			t.Fatalf("request %d: %d %q, want 200 %q", i, resp.StatusCode, body, want)
		}
	}
	if ev.recheck.Load() == 0 {
		t.Errorf("no wait was ended by the watcher in %d answers of 10-50 ms", n)
	}
	start := time.Now()
	resp, _ := k.do(fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: app\r\n\r\n", n+2))
	// A deadline may fall short by timeout/deadlineSlack (armDeadline).
	if took := time.Since(start); resp.StatusCode != 504 || took < 900*time.Millisecond || took > 2500*time.Millisecond {
		t.Errorf("an answer past the 1s timeout: %d after %v, want 504 at the timeout", resp.StatusCode, took)
	}
	t.Logf("%d held, %d woken by the watcher", ev.sent.Load(), ev.recheck.Load())
}

// The watcher stops once no held read has waited for holdWatchQuiet looks,
// so an idle proxy is not woken every holdCheck, and the next held read
// starts it again: a lingering close is still found at once.
func TestHoldWatcherStopsAndStartsAgain(t *testing.T) {
	ev := watchHolds(t)
	addr := closingBackend(t, 0, nil, func(c *net.TCPConn, n int) {
		if n == 1 {
			_ = c.CloseWrite()
			_, _ = io.Copy(io.Discard, c)
		}
	})
	k := dialWithTimeout(t, addr, 10*time.Second)
	for round := 1; round <= 2; round++ {
		waitFor(t, "the hold watcher to stop", func() bool { return !holdWatcher.running.Load() })
		if resp, _ := k.do("GET /1 HTTP/1.1\r\nHost: app\r\n\r\n"); resp.StatusCode != 200 {
			t.Fatalf("round %d, first request: %d", round, resp.StatusCode)
		}
		time.Sleep(100 * time.Millisecond) // the end reaches the pooled connection
		start := time.Now()
		resp, body := k.do("GET /2 HTTP/1.1\r\nHost: app\r\n\r\n")
		if took := time.Since(start); resp.StatusCode != 200 || body != "ok" || took > 3*time.Second {
			t.Fatalf("round %d, on the connection the backend ended: %d %q after %v", round, resp.StatusCode, body, took)
		}
		if ev.recheck.Load() != int64(round) {
			t.Fatalf("round %d: %d waits ended by the watcher, want %d", round, ev.recheck.Load(), round)
		}
	}
}

// The watcher sees every open plain backend connection, and none after it
// closed: a close in any order leaves the others where the watcher finds
// them, and a second close changes nothing.
func TestHoldWatcherSeesTheOpenConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []*upstreamConn
	for range 4 {
		conns = append(conns, dialUpstream(t, ln))
	}
	watched := func() map[*upstreamConn]bool {
		holdWatcher.mu.Lock()
		defer holdWatcher.mu.Unlock()
		m := map[*upstreamConn]bool{}
		for i, c := range holdWatcher.conns {
			if c.held.slot != i {
				t.Errorf("a connection at %d says it is at %d", i, c.held.slot)
			}
			m[c] = true
		}
		return m
	}
	for _, k := range []int{1, 0, 1, 3, 2} {
		_ = conns[k].Close()
		w := watched()
		for i, c := range conns {
			if open := c.held.slot >= 0; w[c] != open {
				t.Errorf("after closing %d: connection %d watched %v, open %v", k, i, w[c], open)
			}
		}
		if w[conns[k]] {
			t.Errorf("connection %d is watched after its close", k)
		}
	}
}
