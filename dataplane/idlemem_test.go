package dataplane

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/rafterlb/rafter/fsm"
)

// idlePair returns the server side of a loopback TCP connection, read
// through an idleReader of a registry swept by hand, and the client side.
func idlePair(t *testing.T) (*yieldConn, *idleRegistry, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	reg := &idleRegistry{manual: true}
	c := &yieldConn{Conn: raw, yields: true, idle: newIdleReader(raw, reg)}
	if c.idle == nil {
		t.Fatal("a TCP connection got no idleReader")
	}
	t.Cleanup(func() { c.Close() })
	return c, reg, client
}

// readResult is what a Read returned.
type readResult struct {
	n   int
	err error
}

// readAsync runs c.Read(p) and waits until it has found nothing to read
// and offered p.
func readAsync(t *testing.T, c *yieldConn, p []byte) <-chan readResult {
	t.Helper()
	res := make(chan readResult, 1)
	waits := c.idle.waits.Load()
	go func() {
		n, err := c.Read(p)
		res <- readResult{n, err}
	}()
	waitFor(t, "the read to wait", func() bool {
		return c.idle.waits.Load() > waits && c.idle.state.Load() == readWaiting
	})
	return res
}

func fillBytes(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}

func allAre(b []byte, v byte) bool {
	for _, x := range b {
		if x != v {
			return false
		}
	}
	return true
}

// A read waiting through two sweeps has the whole pages of its buffer
// released (they read as zeros), and nothing outside them: the bytes a
// caller buffered before p, and p's partial pages, are kept. The read then
// returns what arrives, intact.
func TestIdleReadReleasesOnlyWholePagesOfItsBuffer(t *testing.T) {
	c, reg, client := idlePair(t)
	ps := int(pageSize)
	buf := make([]byte, 8*ps)
	// The caller's buffered bytes end inside the second page: p starts
	// there, so its first whole page is the third.
	held := ps + ps/2
	fillBytes(buf, 0xAA)
	p := buf[held:]
	res := readAsync(t, c, p)

	wholePages := buf[2*ps:]
	reg.sweep() // the first look only notes the wait
	if reg.released.Load() != 0 || !resident(t, buf) {
		t.Fatalf("a buffer was released at the first look at its wait")
	}
	reg.sweep()
	if got := reg.released.Load(); got != 1 {
		t.Fatalf("released %d buffers after two looks at a waiting read, want 1", got)
	}
	// The buffer belongs to the Read until it returns: look at its pages
	// without reading them.
	if !resident(t, buf[:2*ps]) {
		t.Fatalf("pages before p's first whole page were released: the caller's buffered bytes or p's partial page")
	}
	if notResident(t, wholePages) != len(wholePages)/ps {
		t.Fatalf("p's whole pages are still resident")
	}

	if _, err := io.WriteString(client, "hello"); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil || r.n != 5 || string(p[:5]) != "hello" {
		t.Fatalf("read after the release: %d, %v, %q", r.n, r.err, p[:r.n])
	}
	if !allAre(buf[:held], 0xAA) || !allAre(buf[held+5:2*ps], 0xAA) {
		t.Fatalf("bytes outside p's whole pages changed")
	}
	if !allAre(wholePages, 0) {
		t.Fatalf("p's whole pages do not read as zeros after their release")
	}
	if c.idle.state.Load() != readBusy || c.idle.p != nil {
		t.Fatalf("after Read returned the buffer is still on offer (state %d)", c.idle.state.Load())
	}
}

// resident reports whether every page of b is resident.
func resident(t *testing.T, b []byte) bool {
	return notResident(t, b) == 0
}

// notResident counts the pages of b (whole ones, b page-aligned or not)
// that are not resident.
func notResident(t *testing.T, b []byte) int {
	t.Helper()
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	lo := start &^ (pageSize - 1)
	hi := (start + uintptr(len(b)) + pageSize - 1) &^ (pageSize - 1)
	vec := make([]byte, (hi-lo)/pageSize)
	if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, lo, hi-lo, uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatalf("mincore: %v", e)
	}
	n := 0
	for _, v := range vec {
		if v&1 == 0 {
			n++
		}
	}
	return n
}

// A read that finds data, or that starts waiting again between two looks,
// is never released: only a wait that spans a whole sweep interval is.
func TestIdleReadIsReleasedOnlyAfterAWholeInterval(t *testing.T) {
	c, reg, client := idlePair(t)
	buf := make([]byte, 4*pageSize)
	for i := 0; i < 3; i++ {
		fillBytes(buf, 0xAA)
		res := readAsync(t, c, buf)
		reg.sweep()
		if _, err := io.WriteString(client, "x"); err != nil {
			t.Fatal(err)
		}
		if r := <-res; r.err != nil || r.n != 1 {
			t.Fatalf("read %d: %d, %v", i, r.n, r.err)
		}
	}
	// A new wait after the last look: the look after it only notes it.
	fillBytes(buf, 0xAA)
	res := readAsync(t, c, buf)
	reg.sweep()
	if _, err := io.WriteString(client, "y"); err != nil {
		t.Fatal(err)
	}
	if r := <-res; r.err != nil || r.n != 1 {
		t.Fatalf("last read: %d, %v", r.n, r.err)
	}
	if reg.released.Load() != 0 || !allAre(buf[1:], 0xAA) {
		t.Fatalf("released a buffer whose wait had not lasted a whole interval")
	}
	// Not waiting at all: nothing to release, however many looks.
	reg.sweep()
	reg.sweep()
	if reg.released.Load() != 0 {
		t.Fatalf("released a buffer of a connection not in Read")
	}
}

// Data arriving while the sweeper releases the buffer waits for the
// release to end: it is read into the buffer afterwards, not zeroed by it.
func TestIdleReadWaitsOutARelease(t *testing.T) {
	c, reg, client := idlePair(t)
	buf := make([]byte, 4*pageSize)
	fillBytes(buf, 0xAA)
	res := readAsync(t, c, buf)
	reg.sweep()

	entered, proceed := make(chan struct{}), make(chan struct{})
	hook := func(r *idleReader) {
		if r != c.idle {
			return
		}
		close(entered)
		<-proceed
	}
	testHookRelease.Store(&hook)
	defer func() {
		select {
		case <-proceed:
		default:
			close(proceed)
		}
	}()
	t.Cleanup(func() { testHookRelease.Store(nil) })
	swept := make(chan struct{})
	go func() {
		reg.sweep()
		close(swept)
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatalf("the second look did not release the buffer")
	}
	payload := bytes.Repeat([]byte("z"), 3*int(pageSize))
	if _, err := client.Write(payload); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-res:
		t.Fatalf("Read returned (%d, %v) during the release of its buffer", r.n, r.err)
	case <-time.After(200 * time.Millisecond):
	}
	close(proceed)
	<-swept
	r := <-res
	if r.err != nil || !bytes.Equal(buf[:r.n], payload[:r.n]) || r.n == 0 {
		t.Fatalf("read after a release it waited out: %d, %v; the bytes read are not what was sent", r.n, r.err)
	}
}

// A read ended by its deadline or by the connection closing takes its
// buffer back before it returns, and its errors are those of a TCP
// connection's Read: a timeout, net.ErrClosed, io.EOF.
func TestIdleReadErrorsAreTheConnections(t *testing.T) {
	c, reg, _ := idlePair(t)
	buf := make([]byte, 4*pageSize)
	if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("read past its deadline: %#v, want a net.OpError of op read", err)
	}
	if c.idle.state.Load() != readBusy {
		t.Fatalf("a read that timed out left its buffer on offer")
	}
	reg.sweep()
	reg.sweep()
	if reg.released.Load() != 0 {
		t.Fatalf("released the buffer of a read that had returned")
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}

	res := readAsync(t, c, buf)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if !errors.Is(r.err, net.ErrClosed) {
		t.Fatalf("read of a connection closed meanwhile: %v, want net.ErrClosed", r.err)
	}
	if reg.open() != 0 {
		t.Fatalf("a closed connection is still registered")
	}

	c2, _, client2 := idlePair(t)
	res = readAsync(t, c2, buf)
	client2.Close()
	if r := <-res; r.n != 0 || r.err != io.EOF {
		t.Fatalf("read when the peer closed: %d, %v; want io.EOF", r.n, r.err)
	}
}

// Messages sent in pieces, with pauses, over several connections whose
// reads are released as often as the sweeper can: every byte arrives, in
// order. A release that zeroed bytes already read, or read bytes into
// pages being released, would show as a corrupt message.
func TestIdleReleasesNeverCorruptAStream(t *testing.T) {
	const conns, msgs = 4, 60
	reg := &idleRegistry{manual: true}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stop := make(chan struct{})
	var sweeps sync.WaitGroup
	sweeps.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				reg.sweep()
			}
		}
	})
	defer func() { close(stop); sweeps.Wait() }()

	errs := make(chan error, 2*conns)
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		raw, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c := &yieldConn{Conn: raw, yields: true, idle: newIdleReader(raw, reg)}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		_ = client.SetDeadline(time.Now().Add(time.Minute))
		wg.Go(func() { // the reader: a bufio.Reader over the connection, as the server's
			br := bufio.NewReaderSize(c, 4*int(pageSize))
			for m := 0; m < msgs; m++ {
				line, err := br.ReadString('\n')
				if want := message(i, m); err != nil || line != want {
					errs <- fmt.Errorf("conn %d message %d: %q, %v; want %q", i, m, line, err, want)
					return
				}
			}
		})
		wg.Go(func() { // the writer: each message in up to three pieces
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for m := 0; m < msgs; m++ {
				msg := message(i, m)
				a := rng.IntN(len(msg))
				b := a + rng.IntN(len(msg)-a)
				for _, piece := range []string{msg[:a], msg[a:b], msg[b:]} {
					if piece == "" {
						continue
					}
					if _, err := io.WriteString(client, piece); err != nil {
						errs <- err
						return
					}
					time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if reg.released.Load() == 0 {
		t.Errorf("no buffer was released: the test did not exercise releases")
	}
}

// message is message m of connection i: long enough to span pages of the
// reader's buffer, and different in every position.
func message(i, m int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "conn %d message %d:", i, m)
	for b.Len() < 5000+m*37 {
		fmt.Fprintf(&b, " %d.%d", m, b.Len())
	}
	b.WriteByte('\n')
	return b.String()
}

// sweepUntilReleased sweeps g until it has released more than prev
// buffers, and returns the new count.
func sweepUntilReleased(t *testing.T, g *idleRegistry, prev int64) int64 {
	t.Helper()
	waitFor(t, "a read buffer to be released", func() bool {
		g.sweep()
		return g.released.Load() > prev
	})
	return g.released.Load()
}

// Keep-alive connections through the proxy whose read buffers are
// released between requests and in the middle of them (headers of more
// than a page, then a body, each split across a release): every request
// reaches the backend whole, every client gets the answer to its own
// request, and once the clients close no connection stays registered.
func TestIdleReleasesKeepRequestsWholeThroughTheProxy(t *testing.T) {
	t.Run("http", func(t *testing.T) { testIdleReleasesKeepRequestsWhole(t, false) })
	t.Run("https", func(t *testing.T) { testIdleReleasesKeepRequestsWhole(t, true) })
}

func testIdleReleasesKeepRequestsWhole(t *testing.T, https bool) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get("X-Conn")+" "+r.URL.Path)
	})
	ws, _ := wsEcho(t)
	cfg := simpleConfig(be.addr)
	cfg.pools["ws"] = fsm.PoolSpec{Backends: []fsm.Backend{{Addr: ws}}}
	cfg.routes["ws"] = fsm.RouteSpec{Listener: "web", Match: fsm.RouteMatch{Path: fsm.PathMatch{Prefix: "/chat"}},
		Action: fsm.RouteAction{Split: []fsm.WeightedPool{{Pool: "ws", Weight: 1}}}}
	var roots *x509.CertPool
	if https {
		roots = withHTTPS(t, cfg)
	}
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	reg := &d.idleConns
	addr := d.ListenerAddr("web")
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if https {
			tc := tls.Client(c, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
			if err := tc.Handshake(); err != nil {
				t.Fatalf("TLS handshake: %v", err)
			}
			c = tc
		}
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		return c
	}

	type client struct {
		c  net.Conn
		br *bufio.Reader
	}
	clients := make([]client, 3)
	for i := range clients {
		c := dial()
		defer c.Close()
		clients[i] = client{c, bufio.NewReader(c)}
	}
	answer := func(i int, want string) {
		t.Helper()
		resp, err := http.ReadResponse(clients[i].br, nil)
		if err != nil {
			t.Fatalf("conn %d: reading the answer: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("conn %d: answer %d %q, want 200 %q", i, resp.StatusCode, body, want)
		}
	}
	send := func(i int, s string) {
		t.Helper()
		if _, err := io.WriteString(clients[i].c, s); err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
	}
	for i := range clients {
		send(i, fmt.Sprintf("GET /first HTTP/1.1\r\nHost: a\r\nX-Conn: %d\r\n\r\n", i))
		answer(i, fmt.Sprintf("%d /first", i))
	}
	// Every connection waits for its next request: each buffer goes.
	waitFor(t, "the three idle connections' buffers to be released", func() bool {
		reg.sweep()
		return reg.released.Load() >= 3
	})
	released := reg.released.Load()

	big := strings.Repeat("b", 6000) // the first part of a request is more than a page
	var bodies []string
	for round := 0; round < 2; round++ {
		for i := range clients {
			path := fmt.Sprintf("/r%d", round)
			send(i, fmt.Sprintf("POST %s HTTP/1.1\r\nHost: a\r\nX-Conn: %d\r\nX-Big: %d%s", path, i, i, big))
			released = sweepUntilReleased(t, reg, released)
			body := strings.Repeat(fmt.Sprintf("<%d.%d>", i, round), 2000)
			bodies = append(bodies, body)
			send(i, fmt.Sprintf("\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:len(body)/2]))
			released = sweepUntilReleased(t, reg, released)
			send(i, body[len(body)/2:])
			answer(i, fmt.Sprintf("%d %s", i, path))
			released = sweepUntilReleased(t, reg, released)
		}
	}
	// Two pipelined requests after a release.
	send(0, "GET /p1 HTTP/1.1\r\nHost: a\r\nX-Conn: 0\r\n\r\nGET /p2 HTTP/1.1\r\nHost: a\r\nX-Conn: 0\r\n\r\n")
	answer(0, "0 /p1")
	answer(0, "0 /p2")

	for k, r := range be.posts(t, len(bodies)) {
		i := k % len(clients)
		if want := fmt.Sprintf("%d%s", i, big); r.Header.Get("X-Big") != want {
			t.Errorf("POST %d: X-Big of %d bytes is not the %d sent", k, len(r.Header.Get("X-Big")), len(want))
		}
		if r.Body != bodies[k] {
			t.Errorf("POST %d: the body of %d bytes is not the %d sent", k, len(r.Body), len(bodies[k]))
		}
	}

	// A WebSocket tunnel: the client side waits, is released, and echoes.
	wsc := dial()
	defer wsc.Close()
	_, _ = io.WriteString(wsc, "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	wbr := bufio.NewReader(wsc)
	resp, err := http.ReadResponse(wbr, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v, %v", resp, err)
	}
	released = sweepUntilReleased(t, reg, released)
	msg := strings.Repeat("frame ", 2000)
	_, _ = io.WriteString(wsc, msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(wbr, got); err != nil || string(got) != msg {
		t.Fatalf("the tunnel's echo after a release: %v; the bytes differ", err)
	}

	wsc.Close()
	for _, c := range clients {
		c.c.Close()
	}
	waitFor(t, "no client connection to stay registered", func() bool { return reg.open() == 0 })
	waitFor(t, "the sweeper to stop with the last connection", func() bool {
		reg.mu.Lock()
		defer reg.mu.Unlock()
		return reg.timer == nil
	})
}
