package dataplane

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// backendConns reports the open and idle connections of pool "app"'s
// first backend (every client of it).
func backendConns(d *Dataplane) (open, idle int) {
	st := d.Table().pools["app"].backends[0].st
	open, idle = st.hc.ConnsCount(), st.hc.IdleConnsCount()
	st.timed.Range(func(_, c any) bool {
		hc := c.(interface {
			ConnsCount() int
			IdleConnsCount() int
		})
		open += hc.ConnsCount()
		idle += hc.IdleConnsCount()
		return true
	})
	return open, idle
}

// waitNoLeasedConns waits until every open backend connection is back in
// the pool: a response body that ended without giving its connection back
// would hold a slot of the backend's max_conns forever.
func waitNoLeasedConns(t *testing.T, d *Dataplane) {
	t.Helper()
	waitFor(t, "every backend connection back in the pool", func() bool {
		open, idle := backendConns(d)
		return open == idle
	})
}

// Responses of every shape, on several client connections in turn, reach
// only the request they answer: each carries its own body and its own
// header, none of another's. Backend connections are reused between them
// and all are back in the pool at the end.
func TestResponsesStayApartOnReusedConns(t *testing.T) {
	var conns sync.Map
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		size, _ := strconv.Atoi(r.URL.Query().Get("size"))
		w.Header().Set("X-Answer-"+id, id)
		switch r.URL.Path {
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
			return
		case "/chunked":
			w.(http.Flusher).Flush() // no Content-Length: chunked
		default:
			w.Header().Set("Content-Length", strconv.Itoa(size))
		}
		if r.Method != http.MethodHead {
			_, _ = io.WriteString(w, strings.Repeat(id[len(id)-1:], size))
		}
	})
	cfg := simpleConfig(be.addr)
	d := startDataplane(t, newFakeSource(cfg.build()), func(o *Options) {
		o.Dial = func(addr string, timeout time.Duration) (net.Conn, error) {
			c, err := net.DialTimeout("tcp", addr, timeout)
			if err == nil {
				conns.Store(c.LocalAddr().String(), true)
			}
			return c, err
		}
	})
	clients := []*keepAliveConn{dialKeepAlive(t, d.ListenerAddr("web")), dialKeepAlive(t, d.ListenerAddr("web")), dialKeepAlive(t, d.ListenerAddr("web"))}
	shapes := []struct {
		method, path string
		size         int
		status       int
	}{
		{"GET", "/sized", 0, 200},
		{"GET", "/sized", 1, 200},
		{"GET", "/sized", 1500, 200},
		{"HEAD", "/sized", 300, 200},
		{"GET", "/chunked", 7000, 200},
		{"GET", "/nocontent", 0, 204},
		{"GET", "/sized", 70000, 200},
		{"GET", "/chunked", 0, 200},
	}
	const rounds = 6
	for i := 0; i < rounds*len(shapes); i++ {
		sh := shapes[i%len(shapes)]
		id := fmt.Sprintf("r%d-%d", i, i%10)
		req := fmt.Sprintf("%s %s?id=%s&size=%d HTTP/1.1\r\nHost: app\r\n\r\n", sh.method, sh.path, id, sh.size)
		k := clients[i%len(clients)]
		if sh.method == "HEAD" {
			// http.ReadResponse needs to know there is no body.
			_ = k.c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(k.c, req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(k.br, &http.Request{Method: "HEAD"})
			if err != nil {
				t.Fatalf("%s: %v", firstLine(req), err)
			}
			checkOwnAnswer(t, req, resp, id, sh.status)
			continue
		}
		resp, body := k.do(req)
		checkOwnAnswer(t, req, resp, id, sh.status)
		if want := strings.Repeat(id[len(id)-1:], sh.size); body != want {
			t.Fatalf("%s: body of %d bytes, want %d bytes of %q", firstLine(req), len(body), sh.size, id[len(id)-1:])
		}
	}
	n := 0
	conns.Range(func(_, _ any) bool { n++; return true })
	if n > len(clients) {
		t.Errorf("%d backend connections dialled for %d requests on %d client connections: not reused", n, rounds*len(shapes), len(clients))
	}
	waitNoLeasedConns(t, d)
}

func checkOwnAnswer(t *testing.T, req string, resp *http.Response, id string, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s: status %d, want %d", firstLine(req), resp.StatusCode, status)
	}
	for k := range resp.Header {
		if strings.HasPrefix(k, "X-Answer-") && k != http.CanonicalHeaderKey("X-Answer-"+id) {
			t.Fatalf("%s: carries %s from another response", firstLine(req), k)
		}
	}
	if resp.Header.Get("X-Answer-"+id) != id {
		t.Fatalf("%s: its own X-Answer-%s is missing", firstLine(req), id)
	}
}

// A response body that does not end well never returns its connection to
// the pool, and never keeps it out of the pool either: a backend that cuts
// its body, a client that leaves mid-body and a response dropped for a
// retry each leave every connection closed or idle, and the next request
// gets a whole, fresh answer.
func TestLeasedConnEndsOnEveryPath(t *testing.T) {
	big := strings.Repeat("b", 4<<20)
	var n sync.Map
	addr := serveConns(t, 20*time.Second, func(c net.Conn, br *bufio.Reader) {
		for {
			head, err := readHead(br)
			if err != nil {
				return
			}
			path := strings.Fields(head)[1]
			switch path {
			case "/cut":
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
				return
			case "/big":
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(big))+"\r\n\r\n"+big)
			case "/flaky":
				// The first answer is a 503 with a body, retried; the
				// second a 200.
				if _, loaded := n.LoadOrStore(path, true); !loaded {
					_, _ = io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 12\r\n\r\nnot this one")
					continue
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nthis one")
			default:
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh")
			}
		}
	})
	cfg := withRoute(simpleConfig(addr), func(r *fsm.RouteSpec) {
		r.Retries = &fsm.RetryPolicy{Attempts: 1, On: []string{"503"}, BudgetPercent: 100}
	})
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	proxy := d.ListenerAddr("web")
	fresh := func(what string) {
		t.Helper()
		for i := 0; i < 3; i++ {
			if resp, body := rawExchange(t, proxy, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode != 200 || body != "fresh" {
				t.Fatalf("after %s: %d %q", what, resp.StatusCode, body)
			}
		}
		waitNoLeasedConns(t, d)
	}

	send := func(req string) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", proxy)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := send("GET /cut HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
		if body, err := io.ReadAll(resp.Body); err == nil {
			t.Fatalf("a cut body looked whole to the client: %d %q", resp.StatusCode, body)
		}
	}
	_ = c.Close()
	fresh("a cut body")

	c = send("GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, err := io.ReadFull(c, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	_ = c.Close() // mid-body
	fresh("a client that left mid-body")

	if resp, body := rawExchange(t, proxy, "GET /flaky HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode != 200 || body != "this one" {
		t.Fatalf("retried request: %d %q", resp.StatusCode, body)
	}
	fresh("a response dropped for a retry")
}

// countingConn counts the deadline calls made on it.
type countingConn struct {
	net.Conn
	addr  upstreamAddr
	calls int
	last  time.Time
}

func (c *countingConn) RemoteAddr() net.Addr { return &c.addr }
func (c *countingConn) SetDeadline(t time.Time) error {
	c.calls++
	c.last = t
	return nil
}

// armDeadline leaves a deadline that is at most timeout/64 short of the
// one wanted, and sets every other: a later one past the slack, an
// earlier one (a shorter timeout) always, none when the timeout is zero.
func TestArmDeadline(t *testing.T) {
	c := &countingConn{}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const to = 64 * time.Second // slack: one second
	steps := []struct {
		at      time.Duration
		timeout time.Duration
		set     bool
		want    time.Time
	}{
		{0, to, true, t0.Add(to)},
		{500 * time.Millisecond, to, false, t0.Add(to)},
		{time.Second, to, false, t0.Add(to)},
		{1001 * time.Millisecond, to, true, t0.Add(1001*time.Millisecond + to)},
		{1002 * time.Millisecond, time.Second, true, t0.Add(2002 * time.Millisecond)},
		{1003 * time.Millisecond, time.Second, false, t0.Add(2002 * time.Millisecond)},
		{1004 * time.Millisecond, 0, true, time.Time{}},
		{1005 * time.Millisecond, 0, false, time.Time{}},
		{1006 * time.Millisecond, time.Second, true, t0.Add(2006 * time.Millisecond)},
	}
	calls := 0
	for i, s := range steps {
		if err := armDeadline(c, t0.Add(s.at), s.timeout); err != nil {
			t.Fatal(err)
		}
		if s.set {
			calls++
		}
		if c.calls != calls || !c.last.Equal(s.want) || !c.addr.armed.Equal(s.want) {
			t.Fatalf("step %d: %d calls, deadline %v (armed %v), want %d calls, %v", i, c.calls, c.last, c.addr.armed, calls, s.want)
		}
	}
}

// deadlineConn records the deadlines applied to it.
type deadlineConn struct {
	net.Conn
	read, write []time.Time
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.read, c.write = append(c.read, t), append(c.write, t)
	return nil
}
func (c *deadlineConn) SetReadDeadline(t time.Time) error  { c.read = append(c.read, t); return nil }
func (c *deadlineConn) SetWriteDeadline(t time.Time) error { c.write = append(c.write, t); return nil }

// An accepted connection keeps a deadline that would move later by at
// most a 64th of its time left, and applies every other: a later one past
// that, an earlier one, none (the zero time), and SetDeadline always.
func TestYieldConnDeadlines(t *testing.T) {
	dc := &deadlineConn{}
	c := &yieldConn{Conn: dc}
	now := time.Now()
	const to = time.Hour // a 64th: about 56 seconds
	steps := []struct {
		read bool
		t    time.Time
		set  bool
	}{
		{true, now.Add(to), true},
		{true, now.Add(to + time.Second), false},
		{true, now.Add(to + 10*time.Second), false},
		{true, now.Add(to + 2*time.Minute), true},
		{true, now.Add(to), true}, // earlier
		{true, time.Time{}, true}, // none
		{true, time.Time{}, true}, // none again: nothing to compare with
		{true, now.Add(to), true},
		{false, now.Add(to), true}, // the write deadline is apart
		{false, now.Add(to + time.Second), false},
		{true, now.Add(-time.Second), true}, // in the past: interrupts a read
		{true, now.Add(time.Second), true},  // later than one in the past
	}
	reads, writes := 0, 0
	for i, s := range steps {
		var err error
		if s.read {
			err = c.SetReadDeadline(s.t)
		} else {
			err = c.SetWriteDeadline(s.t)
		}
		if err != nil {
			t.Fatal(err)
		}
		if s.set && s.read {
			reads++
		}
		if s.set && !s.read {
			writes++
		}
		if len(dc.read) != reads || len(dc.write) != writes {
			t.Fatalf("step %d: %d read and %d write deadlines applied, want %d and %d", i, len(dc.read), len(dc.write), reads, writes)
		}
		if s.set && s.read && !dc.read[reads-1].Equal(s.t) || s.set && !s.read && !dc.write[writes-1].Equal(s.t) {
			t.Fatalf("step %d: applied another deadline than %v", i, s.t)
		}
	}
	// SetDeadline applies both and becomes what later calls compare with.
	if err := c.SetDeadline(now.Add(to)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(now.Add(to + time.Second))
	_ = c.SetWriteDeadline(now.Add(to + time.Second))
	if len(dc.read) != reads+1 || len(dc.write) != writes+1 {
		t.Fatalf("after SetDeadline: %d/%d deadlines, want %d/%d", len(dc.read), len(dc.write), reads+1, writes+1)
	}
}

// errAfter yields its data, then err.
type errAfter struct {
	r   io.Reader
	err error
}

func (e *errAfter) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		err = e.err
	}
	return n, err
}

// yieldConn.ReadFrom copies a reader it cannot splice through a pooled
// buffer: one copy after another hands on exactly each reader's bytes,
// never the rest of an earlier, longer copy, and a read error stops it.
func TestYieldConnReadFromPooledBuffer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		got <- b
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := &yieldConn{Conn: raw}
	var want strings.Builder
	for i, size := range []int{100 << 10, 10, 40 << 10, 1, 0, 33 << 10} {
		body := strings.Repeat(string(rune('a'+i)), size)
		want.WriteString(body)
		n, err := c.ReadFrom(struct{ io.Reader }{strings.NewReader(body)})
		if err != nil || n != int64(size) {
			t.Fatalf("copy %d: %d bytes, %v; want %d", i, n, err, size)
		}
	}
	boom := fmt.Errorf("backend went away")
	n, err := c.ReadFrom(&errAfter{r: strings.NewReader("tail"), err: boom})
	if err != boom || n != 4 {
		t.Fatalf("a failing reader: %d bytes, %v; want 4 bytes and its error", n, err)
	}
	want.WriteString("tail")
	_ = raw.Close()
	if b := <-got; string(b) != want.String() {
		t.Fatalf("the peer got %d bytes, want %d (the copies in order, nothing else)", len(b), want.Len())
	}
}

// readyConn answers every Read at once with one byte and takes every
// Write: a read on it never parks.
type readyConn struct{ net.Conn }

func (readyConn) Read(p []byte) (int, error)  { p[0] = 'x'; return 1, nil }
func (readyConn) Write(p []byte) (int, error) { return len(p), nil }
func (readyConn) RemoteAddr() net.Addr        { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080} }

// A client connection yields before the read that follows a write, so a
// goroutine made runnable just before gets to run first; a backend
// connection (newUpstreamConn) does not, so that the response read parks
// and the scheduler polls the network once per request. With one P and
// a read that never parks, only a yield lets the other goroutine run
// inside the read. Counted over tries, since the runtime may preempt or
// pick another run queue now and then.
func TestOnlyClientConnectionsYieldBeforeReading(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ranInside := func(c net.Conn, write bool) int {
		n := 0
		for range 20 {
			if write {
				_, _ = c.Write([]byte("request"))
			}
			runtime.Gosched() // a fresh time slice
			var ran atomic.Bool
			done := make(chan struct{})
			go func() { ran.Store(true); close(done) }()
			_, _ = c.Read(make([]byte, 1))
			if ran.Load() {
				n++
			}
			<-done
		}
		return n
	}
	client := &yieldConn{Conn: readyConn{}, yields: true}
	if n := ranInside(client, true); n < 15 {
		t.Errorf("client connection, read after a write: the other goroutine ran inside it %d times of 20, want at least 15 (a yield)", n)
	}
	if n := ranInside(client, false); n > 5 {
		t.Errorf("client connection, read after a read: the other goroutine ran inside it %d times of 20, want at most 5 (no yield)", n)
	}
	if n := ranInside(newUpstreamConn(readyConn{}, 0), true); n > 5 {
		t.Errorf("backend connection, read after a write: the other goroutine ran inside it %d times of 20, want at most 5 (no yield)", n)
	}
}
