package dataplane

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The differential proxy test: many clients send random sequences of
// requests through one data plane to a recording backend, and every
// request the backend receives must be exactly one client request after
// the documented rewrites, and every client must get exactly its own
// response. Each request carries a unique id in a header, in its body and
// in its path; the backend echoes it in a header and in the response body.

// abortKind is how a client gives up on a request.
type abortKind uint8

const (
	abortNone     abortKind = iota
	abortMidBody            // half the body is sent, then the connection closes
	abortNoRead             // the whole request is sent, the response never read
	abortHeadOnly           // the response head is read, its body is not
)

type diffReq struct {
	id       string
	method   string
	uri      string
	http10   bool
	tags     [][2]string // end-to-end fields the backend must see as sent
	hop      bool        // sends a field named in Connection, which must not arrive
	xff, via string      // the client's own X-Forwarded-For and Via, if any
	body     []byte
	chunked  bool
	expect   bool // Expect: 100-continue
	respSize int
	respCL   bool
	abort    abortKind
}

// diffSeen is one request as the backend received it.
type diffSeen struct {
	method, uri, host string
	header            http.Header
	body              []byte
	complete          bool
}

// diffBackend records every request and answers with the request's id.
type diffBackend struct {
	addr     string
	inflight atomic.Int64
	mu       sync.Mutex
	seen     []diffSeen
}

func newDiffBackend(tb testing.TB) *diffBackend {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	b := &diffBackend{addr: ln.Addr().String()}
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	tb.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return b
}

func (b *diffBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.inflight.Add(1)
	defer b.inflight.Add(-1)
	body, err := io.ReadAll(r.Body)
	b.mu.Lock()
	b.seen = append(b.seen, diffSeen{method: r.Method, uri: r.RequestURI, host: r.Host,
		header: r.Header.Clone(), body: body, complete: err == nil})
	b.mu.Unlock()
	if err != nil {
		return
	}
	id := r.Header.Get("X-Req-Id")
	size, _ := strconv.Atoi(r.Header.Get("X-Resp-Size"))
	h := w.Header()
	h.Set("X-Resp-Id", id)
	h.Set("Content-Type", "application/octet-stream")
	if r.Header.Get("X-Resp-Cl") == "1" {
		h.Set("Content-Length", strconv.Itoa(size))
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(idPattern("R", id, size))
}

func (b *diffBackend) records() []diffSeen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.seen)
}

// idPattern is size bytes that name id throughout, so that a body that
// reaches the wrong party says whose it is.
func idPattern(kind, id string, size int) []byte {
	unit := "<" + kind + ":" + id + ">"
	out := make([]byte, 0, size)
	for len(out) < size {
		out = append(out, unit...)
	}
	return out[:size]
}

// diffSession is one run of the differential test against a data plane.
type diffSession struct {
	name    string // id prefix, unique per session
	addr    string
	be      *diffBackend
	seed    uint64
	clients int
	ops     int
	until   time.Time

	mu       sync.Mutex
	reqs     map[string]*diffReq
	answered map[string]bool
	errs     []string
}

func (s *diffSession) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) < 20 {
		s.errs = append(s.errs, fmt.Sprintf(format, args...))
	}
}

func (s *diffSession) register(r *diffReq) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs[r.id] = r
}

// bodySize is mostly small, sometimes beyond the buffered limit.
func bodySize(rng *rand.Rand) int {
	switch n := rng.IntN(100); {
	case n < 35:
		return 0
	case n < 65:
		return 1 + rng.IntN(1024)
	case n < 88:
		return 1024 + rng.IntN(64<<10)
	default:
		return 64<<10 + rng.IntN(192<<10+1)
	}
}

func (s *diffSession) newReq(rng *rand.Rand, client, n int) *diffReq {
	id := fmt.Sprintf("%s-c%d-r%d", s.name, client, n)
	r := &diffReq{id: id, uri: "/d/" + id + "?n=" + strconv.Itoa(n)}
	withBody := []string{"POST", "PUT", "PATCH", "DELETE"}
	noBody := []string{"GET", "HEAD", "OPTIONS", "GET"}
	if rng.IntN(2) == 0 {
		r.method = withBody[rng.IntN(len(withBody))]
		r.body = idPattern("B", id, bodySize(rng))
		r.chunked = rng.IntN(3) == 0
	} else {
		r.method = noBody[rng.IntN(len(noBody))]
	}
	for i := 0; i < rng.IntN(4); i++ {
		r.tags = append(r.tags, [2]string{"X-Tag-" + string(rune('A'+i)), id + "/" + strconv.Itoa(rng.IntN(1000))})
	}
	r.hop = rng.IntN(5) == 0
	if rng.IntN(5) == 0 {
		r.xff = fmt.Sprintf("10.0.%d.%d", client, n%250)
	}
	if rng.IntN(5) == 0 {
		r.via = "1.0 " + id
	}
	r.respSize = []int{0, 2, 100, 3000, 40 << 10}[rng.IntN(5)]
	if rng.IntN(8) == 0 {
		r.respSize = 200<<10 + rng.IntN(100<<10)
	}
	r.respCL = rng.IntN(2) == 0
	return r
}

// String describes r for failure messages.
func (r *diffReq) String() string {
	return fmt.Sprintf("%s %s (body %d chunked=%v expect=%v http10=%v abort=%d resp %d cl=%v)",
		r.method, r.id, len(r.body), r.chunked, r.expect, r.http10, r.abort, r.respSize, r.respCL)
}

// head is the request line and fields of r.
func (r *diffReq) head() []byte {
	var b bytes.Buffer
	proto := "HTTP/1.1"
	if r.http10 {
		proto = "HTTP/1.0"
	}
	fmt.Fprintf(&b, "%s %s %s\r\nHost: app.test\r\nX-Req-Id: %s\r\n", r.method, r.uri, proto, r.id)
	fmt.Fprintf(&b, "X-Resp-Size: %d\r\n", r.respSize)
	if r.respCL {
		b.WriteString("X-Resp-Cl: 1\r\n")
	}
	for _, kv := range r.tags {
		fmt.Fprintf(&b, "%s: %s\r\n", kv[0], kv[1])
	}
	if r.hop {
		fmt.Fprintf(&b, "Connection: X-Hop\r\nX-Hop: %s\r\n", r.id)
	}
	if r.xff != "" {
		fmt.Fprintf(&b, "X-Forwarded-For: %s\r\n", r.xff)
	}
	if r.via != "" {
		fmt.Fprintf(&b, "Via: %s\r\n", r.via)
	}
	if r.expect {
		b.WriteString("Expect: 100-continue\r\n")
	}
	switch {
	case r.chunked:
		b.WriteString("Transfer-Encoding: chunked\r\n")
	case len(r.body) > 0 || r.method == "POST" || r.method == "PUT" || r.method == "PATCH":
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(r.body))
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// encodedBody is r's body as it goes on the wire.
func (r *diffReq) encodedBody(rng *rand.Rand) []byte {
	if !r.chunked {
		return r.body
	}
	var b bytes.Buffer
	rest := r.body
	for len(rest) > 0 {
		n := min(len(rest), 1+rng.IntN(16<<10))
		fmt.Fprintf(&b, "%x\r\n", n)
		b.Write(rest[:n])
		b.WriteString("\r\n")
		rest = rest[n:]
	}
	b.WriteString("0\r\n\r\n")
	return b.Bytes()
}

// diffConn is one client connection.
type diffConn struct {
	c  net.Conn
	br *bufio.Reader
}

func (s *diffSession) dial() (*diffConn, error) {
	c, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return &diffConn{c: c, br: bufio.NewReaderSize(c, 4096)}, nil
}

// readAnswer reads r's response and checks it is r's own. It reports
// whether the connection may be used again.
func (s *diffSession) readAnswer(dc *diffConn, r *diffReq) bool {
	resp, err := http.ReadResponse(dc.br, &http.Request{Method: r.method})
	if err != nil {
		s.fail("%s %s: reading the response: %v", r.method, r.id, err)
		return false
	}
	if resp.StatusCode == http.StatusContinue {
		s.fail("%s %s: unexpected 100 Continue", r.method, r.id)
		return false
	}
	return s.checkAnswer(dc, r, resp)
}

func (s *diffSession) checkAnswer(dc *diffConn, r *diffReq, resp *http.Response) bool {
	defer resp.Body.Close()
	if got := resp.Header.Get("X-Resp-Id"); got != r.id || resp.StatusCode != 200 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		s.fail("%s: got status %d for X-Resp-Id %q (body %q)", r, resp.StatusCode, got, body)
		return false
	}
	if r.abort == abortHeadOnly {
		return false
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.fail("%s %s: reading the response body: %v", r.method, r.id, err)
		return false
	}
	want := idPattern("R", r.id, r.respSize)
	if r.method == "HEAD" {
		want = nil
	}
	if !bytes.Equal(body, want) {
		s.fail("%s %s: response body of %d bytes is not its own (starts %q)", r.method, r.id, len(body), body[:min(len(body), 60)])
		return false
	}
	s.mu.Lock()
	s.answered[r.id] = true
	s.mu.Unlock()
	return !resp.Close && !r.http10
}

// client runs one client's random sequence of operations.
func (s *diffSession) client(n int) {
	rng := rand.New(rand.NewPCG(s.seed, uint64(n)))
	var kc *diffConn
	defer func() {
		if kc != nil {
			_ = kc.c.Close()
		}
	}()
	keep := func() *diffConn {
		if kc != nil && rng.IntN(6) > 0 {
			return kc
		}
		if kc != nil {
			_ = kc.c.Close()
		}
		var err error
		if kc, err = s.dial(); err != nil {
			s.fail("client %d: dial: %v", n, err)
		}
		return kc
	}
	seq := 0
	next := func() *diffReq {
		seq++
		r := s.newReq(rng, n, seq)
		s.register(r)
		return r
	}
	for op := 0; op < s.ops && time.Now().Before(s.until); op++ {
		switch k := rng.IntN(100); {
		case k < 12: // pipelined on the keep-alive connection
			dc := keep()
			if dc == nil {
				return
			}
			var batch []*diffReq
			var wire []byte
			for i := 0; i < 2+rng.IntN(3); i++ {
				r := next()
				batch = append(batch, r)
				wire = append(append(wire, r.head()...), r.encodedBody(rng)...)
			}
			if _, err := dc.c.Write(wire); err != nil {
				s.fail("client %d: writing pipelined requests: %v", n, err)
				return
			}
			for _, r := range batch {
				if !s.readAnswer(dc, r) {
					_ = dc.c.Close()
					kc = nil
					break
				}
			}
		case k < 20: // aborted halfway through the body, on its own connection
			r := next()
			if len(r.body) < 2 {
				r.body = idPattern("B", r.id, 2+rng.IntN(100<<10))
				if r.method == "GET" || r.method == "HEAD" || r.method == "OPTIONS" {
					r.method = "POST"
				}
			}
			r.abort = abortMidBody
			wire := append(r.head(), r.encodedBody(rng)...)
			cut := len(r.head()) + rng.IntN(len(r.body)/2+1)
			s.oneShot(n, r, wire[:cut])
		case k < 25: // sent in full, answer never read
			r := next()
			r.abort = abortNoRead
			s.oneShot(n, r, append(r.head(), r.encodedBody(rng)...))
		case k < 30: // answer's head read, its body left
			r := next()
			r.abort = abortHeadOnly
			r.respSize = 100<<10 + rng.IntN(200<<10)
			dc, err := s.dial()
			if err != nil {
				s.fail("client %d: dial: %v", n, err)
				return
			}
			if _, err := dc.c.Write(append(r.head(), r.encodedBody(rng)...)); err == nil {
				s.readAnswer(dc, r)
			}
			_ = dc.c.Close()
		case k < 35: // HTTP/1.0, one request per connection
			r := next()
			// RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding
			// has faulty framing; the proxy refuses it (tested elsewhere).
			r.http10, r.chunked = true, false
			dc, err := s.dial()
			if err != nil {
				s.fail("client %d: dial: %v", n, err)
				return
			}
			if _, err := dc.c.Write(append(r.head(), r.encodedBody(rng)...)); err != nil {
				s.fail("%s: write: %v", r.id, err)
			} else {
				s.readAnswer(dc, r)
			}
			_ = dc.c.Close()
		default: // one request on the keep-alive connection
			dc := keep()
			if dc == nil {
				return
			}
			r := next()
			r.expect = len(r.body) > 0 && !r.chunked && rng.IntN(4) == 0
			if !s.sendOne(dc, r, rng) {
				_ = dc.c.Close()
				kc = nil
			}
		}
	}
}

// sendOne sends r on dc (waiting for 100 Continue when r expects it) and
// checks the answer; it reports whether dc may be used again.
func (s *diffSession) sendOne(dc *diffConn, r *diffReq, rng *rand.Rand) bool {
	body := r.encodedBody(rng)
	if !r.expect {
		if _, err := dc.c.Write(append(r.head(), body...)); err != nil {
			s.fail("%s: write: %v", r.id, err)
			return false
		}
		return s.readAnswer(dc, r)
	}
	if _, err := dc.c.Write(r.head()); err != nil {
		s.fail("%s: write: %v", r.id, err)
		return false
	}
	resp, err := http.ReadResponse(dc.br, &http.Request{Method: r.method})
	if err != nil {
		s.fail("%s: waiting for 100 Continue: %v", r.id, err)
		return false
	}
	if resp.StatusCode != http.StatusContinue {
		s.fail("%s: got %d instead of 100 Continue", r.id, resp.StatusCode)
		return false
	}
	if _, err := dc.c.Write(body); err != nil {
		s.fail("%s: write body: %v", r.id, err)
		return false
	}
	return s.readAnswer(dc, r)
}

// oneShot writes wire on a new connection and closes it.
func (s *diffSession) oneShot(n int, r *diffReq, wire []byte) {
	dc, err := s.dial()
	if err != nil {
		s.fail("client %d: dial: %v", n, err)
		return
	}
	_, _ = dc.c.Write(wire)
	_ = dc.c.Close()
}

// run drives the clients, waits for the backend to settle and checks
// every record against the requests.
func (s *diffSession) run() []string {
	s.reqs, s.answered = map[string]*diffReq{}, map[string]bool{}
	var wg sync.WaitGroup
	for i := 0; i < s.clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.client(i)
		}()
	}
	wg.Wait()
	// Aborted requests may still be on their way; nothing else is.
	deadline := time.Now().Add(15 * time.Second)
	for s.be.inflight.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	s.check()
	return s.errs
}

func (s *diffSession) check() {
	got := map[string]int{}
	for _, rec := range s.be.records() {
		id := rec.header.Get("X-Req-Id")
		if !strings.HasPrefix(rec.uri, "/d/"+s.name+"-") && !strings.HasPrefix(id, s.name+"-") {
			continue // another session's
		}
		r := s.reqs[id]
		if r == nil || !strings.HasPrefix(rec.uri, "/d/"+id+"?") {
			s.fail("backend got %s %s with X-Req-Id %q, which no client sent", rec.method, rec.uri, id)
			continue
		}
		if !rec.complete {
			if r.abort != abortMidBody {
				s.fail("%s: backend got it incomplete (%d of %d body bytes)", id, len(rec.body), len(r.body))
			} else if !bytes.HasPrefix(r.body, rec.body) {
				s.fail("%s: backend got a partial body that is not a prefix of the request's", id)
			}
			continue
		}
		got[id]++
		s.compare(r, rec)
	}
	for id, r := range s.reqs {
		switch {
		case got[id] > 1:
			s.fail("%s: backend got it %d times", id, got[id])
		case r.abort == abortMidBody && got[id] > 0:
			s.fail("%s: aborted halfway, yet the backend got it complete", id)
		case r.abort == abortNone && !s.answered[id]:
			// The client already failed with the reason.
		case r.abort == abortNone && got[id] != 1:
			s.fail("%s: answered but the backend never got it", id)
		}
	}
}

// compare checks that rec is r after the documented rewrites: hop-by-hop
// fields and fields named in Connection removed, X-Forwarded-For and Via
// extended (or added), X-Forwarded-Proto/-Host added, framing chosen by the
// proxy.
func (s *diffSession) compare(r *diffReq, rec diffSeen) {
	id := r.id
	if rec.method != r.method || rec.uri != r.uri || rec.host != "app.test" {
		s.fail("%s: backend got %s %s host %q, sent %s %s host app.test", id, rec.method, rec.uri, rec.host, r.method, r.uri)
	}
	if !bytes.Equal(rec.body, r.body) {
		s.fail("%s: backend got a body of %d bytes (starts %q), sent %d", id, len(rec.body), rec.body[:min(len(rec.body), 60)], len(r.body))
	}
	want := map[string]string{
		"X-Req-Id": id, "X-Resp-Size": strconv.Itoa(r.respSize),
		"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "app.test",
		"Via": "1.1 rafter",
	}
	if r.respCL {
		want["X-Resp-Cl"] = "1"
	}
	if r.xff != "" {
		want["X-Forwarded-For"] = r.xff + ", 127.0.0.1"
	}
	if r.via != "" {
		want["Via"] = r.via + ", 1.1 rafter"
	}
	for _, kv := range r.tags {
		want[kv[0]] = kv[1]
	}
	for k, v := range want {
		if got := rec.header[k]; len(got) != 1 || got[0] != v {
			s.fail("%s: backend got %s %q, want %q", id, k, got, v)
		}
	}
	for k, vs := range rec.header {
		if _, ok := want[k]; ok {
			continue
		}
		switch k {
		case "X-Request-Id", "Traceparent":
			// Made by the proxy (the clients send neither): checked below.
		case "Content-Length":
			if len(vs) != 1 || vs[0] != strconv.Itoa(len(rec.body)) {
				s.fail("%s: backend got Content-Length %q for a body of %d bytes", id, vs, len(rec.body))
			}
		case "Connection":
			if len(vs) != 1 || !strings.EqualFold(vs[0], "close") && !strings.EqualFold(vs[0], "keep-alive") {
				s.fail("%s: backend got Connection %q", id, vs)
			}
		default:
			s.fail("%s: backend got a field nobody sent: %s: %q", id, k, vs)
		}
	}
	// A request without X-Request-Id or traceparent gets a new trace, and
	// the request id made for it is the trace id.
	rid, tp := rec.header["X-Request-Id"], rec.header["Traceparent"]
	var tc traceContext
	if len(rid) != 1 || len(tp) != 1 || !parseTraceparent([]byte(tp[0]), &tc) || tp[0][3:35] != rid[0] {
		s.fail("%s: backend got X-Request-Id %q and traceparent %q, want one made request id equal to a new trace id", id, rid, tp)
	}
}

// diffFixture is one data plane in front of one recording backend.
type diffFixture struct {
	d        *Dataplane
	be       *diffBackend
	addr     string
	sessions atomic.Int64
}

func newDiffFixture(tb testing.TB) *diffFixture {
	be := newDiffBackend(tb)
	d := startDataplane(tb, newFakeSource(simpleConfig(be.addr).build()), nil)
	addr := d.ListenerAddr("web")
	if addr == "" {
		tb.Fatalf("listener web not bound")
	}
	return &diffFixture{d: d, be: be, addr: addr}
}

func (f *diffFixture) session(seed uint64, clients, ops int, budget time.Duration) *diffSession {
	return &diffSession{name: "s" + strconv.FormatInt(f.sessions.Add(1), 10), addr: f.addr, be: f.be,
		seed: seed, clients: clients, ops: ops, until: time.Now().Add(budget)}
}

func diffSeed(t *testing.T) uint64 {
	if v := os.Getenv("RAFTER_DIFF_SEED"); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("RAFTER_DIFF_SEED: %v", err)
		}
		return seed
	}
	return uint64(time.Now().UnixNano())
}

func TestDifferentialProxy(t *testing.T) {
	seed := diffSeed(t)
	f := newDiffFixture(t)
	s := f.session(seed, 8, 40, 3*time.Second)
	errs := s.run()
	t.Logf("seed %d: %d requests from %d clients, %d answered", seed, len(s.reqs), s.clients, len(s.answered))
	if len(errs) > 0 {
		t.Errorf("differential check failed (rerun with RAFTER_DIFF_SEED=%d):\n%s", seed, strings.Join(errs, "\n"))
	}
	if len(s.answered) < len(s.reqs)/3 {
		t.Errorf("only %d of %d requests were answered", len(s.answered), len(s.reqs))
	}
}

func FuzzDifferential(f *testing.F) {
	for _, seed := range []uint64{1, 2, 3, 42, 1 << 40} {
		f.Add(seed)
	}
	fx := newDiffFixture(f)
	f.Fuzz(func(t *testing.T, seed uint64) {
		s := fx.session(seed, 3, 6, 2*time.Second)
		if errs := s.run(); len(errs) > 0 {
			t.Errorf("seed %d:\n%s", seed, strings.Join(errs, "\n"))
		}
	})
}
