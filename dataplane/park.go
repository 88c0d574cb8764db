package dataplane

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// Idle keep-alive connections are parked: no serving goroutine waits
// for their next request.
//
// fasthttp serves a connection on one goroutine from its accept to its
// close. While that goroutine waits for a keep-alive connection's next
// request it holds its stack, 8 KiB once a request has run the proxy
// path (the garbage collector never shrinks it: the wait uses more than
// a quarter of it), and the server's request context. HAProxy and nginx
// keep about 1 KiB for such a connection. rafter ends the serving
// goroutine of a connection that has waited through a whole sweep of
// the idle registry (idlemem.go), and watches the socket from a
// goroutine of its own, whose stack stays small, instead:
//
//   - fasthttp reports a connection idle (ConnState StateIdle) once its
//     response is out and before it waits for the next request's first
//     byte, and active (StateActive) once that byte is in. A wait that
//     begins while idle is the wait for a next request, with nothing of
//     it read: fasthttp's reader is empty, or it would not read.
//   - The sweeper, as it releases the buffer of such a wait, ends the
//     wait with a read deadline in the past. The read returns io.EOF to
//     fasthttp, which takes an end of input before any byte of a request
//     as the client leaving: it gives back its request context and read
//     buffer and closes the connection. parkConn turns that close into
//     the park (parkLot.park) when fasthttp reports the connection closed.
//   - The waiter waits until the socket is readable (MSG_PEEK), under the
//     read deadline the wait had: the idle timeout holds as before. Then
//     it serves the connection (Server.ServeConn) on its own goroutine,
//     as a connection just accepted; a client's close or the listener's
//     close ends the connection as before.
//
// A connection parked counts as open: in max_conns (limitListener) and in
// rafter_connections, until it closes.

// Park states of a parkConn.
const (
	parkNone    uint32 = iota
	parkEnding         // a read ended the wait with io.EOF for a park
	parkClosing        // the server closed the connection: the park's close
)

// parkConn is an accepted client connection as the server sees it.
type parkConn struct {
	net.Conn
	// sock is the socket's wrapper underneath, whose idleReader the
	// sweeper sees.
	sock *yieldConn
	lot  *parkLot
	// served is the connection as the server serves it: this parkConn or
	// the wrapper holding it (parkTLSConn, parkRFConn). A woken
	// connection is served as it was first, so that it stays TLS and
	// keeps the identity its private clients are held under.
	served net.Conn
	// idle is set between fasthttp's StateIdle and StateActive.
	idle atomic.Bool
	// wake is set by the sweeper when it ends a wait; savedDL is the read
	// deadline the wait had (yieldConn.readDL's form), stored before.
	wake    atomic.Bool
	savedDL atomic.Int64
	state   atomic.Uint32
}

// parkTLSConn is a parkConn over a TLS connection: fasthttp finds a
// connection's TLS state through these methods.
type parkTLSConn struct{ parkConn }

func (c *parkTLSConn) Handshake() error { return c.Conn.(*tls.Conn).Handshake() }

func (c *parkTLSConn) ConnectionState() tls.ConnectionState {
	return c.Conn.(*tls.Conn).ConnectionState()
}

// parkRFConn is a parkConn over a connection with ReadFrom (splice,
// sendfile and the pooled copy of yieldConn.ReadFrom).
type parkRFConn struct{ parkConn }

func (c *parkRFConn) ReadFrom(r io.Reader) (int64, error) {
	return c.Conn.(io.ReaderFrom).ReadFrom(r)
}

// asParkConn returns c's parkConn, or nil.
func asParkConn(c net.Conn) *parkConn {
	switch c := c.(type) {
	case *parkRFConn:
		return &c.parkConn
	case *parkTLSConn:
		return &c.parkConn
	case *parkConn:
		return c
	}
	return nil
}

// longAgo is the deadline that ends a wait at once.
var longAgo = time.Unix(1, 0)

func (c *parkConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.wake.Load() {
		c.wake.Store(false)
		if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) && c.idle.Load() {
			c.state.Store(parkEnding)
			return 0, io.EOF
		}
		// The wait ended by itself: its deadline comes back.
		_ = c.sock.SetReadDeadline(deadlineTime(c.savedDL.Load()))
	}
	return n, err
}

// Close is the server's: after a read that ended for a park it leaves the
// connection open, for the park.
func (c *parkConn) Close() error {
	if c.state.CompareAndSwap(parkEnding, parkClosing) {
		return nil
	}
	return c.Conn.Close()
}

// endWait is the sweeper's, on a connection whose read has waited since
// its previous look and is held (readSweeping): if the wait is for the
// next request, it ends it for a park, and reports whether it did.
func (c *parkConn) endWait() bool {
	if !c.idle.Load() {
		return false
	}
	c.savedDL.Store(c.sock.readDL.Load())
	c.wake.Store(true)
	return c.sock.SetReadDeadline(longAgo) == nil
}

// parked reports whether the server's close of c was the park's, and if
// so parks it. fasthttp reports the close (StateClosed) right after it.
func (c *parkConn) parked() bool {
	if !c.state.CompareAndSwap(parkClosing, parkNone) {
		return false
	}
	c.lot.park(c)
	return true
}

// deadlineTime is the time of a deadline kept as Unix nanoseconds.
func deadlineTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// parkLot holds the parked connections of one listening socket.
type parkLot struct {
	// srv serves the connections that wake; set before the socket serves.
	srv *fasthttp.Server
	// ended does what fasthttp's close of a connection calls for (the
	// listener's ConnState), for a parked connection that ends.
	ended func(net.Conn)
	// gauge counts the parked connections (rafter_client_connections_parked).
	gauge prometheus.Gauge
	// serving counts the connections handed to the server (Accept's, and
	// parked ones that woke) that it has not served to their end. A
	// connection counts in the server's own open count only once
	// Server.ServeConn has begun, so the server's Shutdown can miss one
	// on its way there; the listener's shutdown waits for these as well
	// (drain).
	serving atomic.Int64
	mu      sync.Mutex
	closed  bool
	parked  map[*parkConn]struct{}
}

// park watches c from a goroutine of its own, until it has a request to
// serve or ends.
func (l *parkLot) park(c *parkConn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.end(c)
		return
	}
	if l.parked == nil {
		l.parked = make(map[*parkConn]struct{})
	}
	l.parked[c] = struct{}{}
	l.gauge.Inc()
	l.mu.Unlock()
	go l.wait(c)
}

func (l *parkLot) wait(c *parkConn) {
	c.idle.Store(false)
	err := c.sock.SetReadDeadline(deadlineTime(c.savedDL.Load()))
	if err == nil {
		err = c.sock.idle.waitReadable()
	}
	l.mu.Lock()
	delete(l.parked, c)
	l.gauge.Dec()
	closed := l.closed
	if err == nil && !closed {
		// Counted before close can see the lot closed, so that drain
		// waits for it.
		l.serving.Add(1)
	}
	l.mu.Unlock()
	if err != nil || closed {
		l.end(c)
		return
	}
	if err := c.sock.SetReadDeadline(time.Time{}); err != nil {
		l.serving.Add(-1)
		l.end(c)
		return
	}
	l.serve(c.served)
}

// serve serves c until it closes, parks or is hijacked; c counts in
// serving until then.
func (l *parkLot) serve(c net.Conn) {
	defer l.serving.Add(-1)
	if hook := testHookServe.Load(); hook != nil {
		(*hook)(c)
	}
	// ServeConn closes c and reports it (ConnState) before it returns,
	// except when it refuses c, which limitListener's count makes rare:
	// fasthttp gives a place back after the connection's report.
	if err := l.srv.ServeConn(c); errors.Is(err, fasthttp.ErrConcurrencyLimit) {
		l.ended(c)
	}
}

// testHookServe, when set by a test, runs as a connection is handed to
// the server, before it is served.
var testHookServe atomic.Pointer[func(net.Conn)]

func (l *parkLot) end(c *parkConn) {
	_ = c.Conn.Close()
	l.ended(c.served)
}

// close ends the parked connections and every later park: their sockets
// close, which ends their waits.
func (l *parkLot) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for c := range l.parked {
		_ = c.sock.Conn.Close()
	}
}

// drain waits until the connections handed to the server are served to
// their end, or ctx ends. After close and once Accept has returned, no
// more are handed over.
func (l *parkLot) drain(ctx context.Context) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for l.serving.Load() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// len is how many connections are parked.
func (l *parkLot) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.parked)
}

// parkListener is the outermost listener of one listening socket, what
// the server serves. Its Accept serves every connection it accepts on a
// goroutine of its own (Server.ServeConn), and returns only when it
// fails: the goroutine of a connection that parks then ends, where a
// worker of fasthttp's pool would wait for the next connection with the
// stack it grew. fasthttp's Serve still runs the loop, so that Shutdown
// closes the listener and waits for the connections served. Its Close
// closes the lot.
type parkListener struct {
	net.Listener
	lot  *parkLot
	log  *slog.Logger
	name string
}

// Accept serves what it accepts; it returns the listener's error.
func (l *parkListener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !acceptRetry(err) {
				return nil, err
			}
			// Out of descriptors or memory for now: wait for connections
			// to close, as HAProxy and net/http do, rather than stop
			// listening.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("accept failed; retrying", "listener", l.name, "err", err, "retry_in", backoff,
				"action", "raise the open files limit (LimitNOFILE) or lower the listeners' max_conns")
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		c = l.wrap(c)
		if hook := l.lot.srv.ConnState; hook != nil {
			hook(c, fasthttp.StateNew)
		}
		l.lot.serving.Add(1)
		go l.lot.serve(c)
	}
}

// acceptRetry reports whether an accept failed for want of a resource
// that closing connections gives back.
func acceptRetry(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// wrap returns c as the server serves it: in a parkConn when its socket
// can park.
func (l *parkListener) wrap(c net.Conn) net.Conn {
	sock := socketOf(c)
	if sock == nil || sock.idle == nil {
		return c
	}
	var pc *parkConn
	var out net.Conn
	switch c.(type) {
	case *tls.Conn:
		w := &parkTLSConn{parkConn{Conn: c}}
		pc, out = &w.parkConn, w
	case io.ReaderFrom:
		w := &parkRFConn{parkConn{Conn: c}}
		pc, out = &w.parkConn, w
	default:
		pc = &parkConn{Conn: c}
		out = pc
	}
	pc.sock, pc.lot, pc.served = sock, l.lot, out
	sock.idle.park.Store(pc)
	return out
}

// Close closes the lot before the listener: once Accept has returned,
// no connection is handed to the server that drain does not see.
func (l *parkListener) Close() error {
	l.lot.close()
	return l.Listener.Close()
}

// socketOf is the yieldConn under an accepted connection's wrappers.
func socketOf(c net.Conn) *yieldConn {
	for {
		switch t := c.(type) {
		case *yieldConn:
			return t
		case *tls.Conn:
			c = t.NetConn()
		case *proxyConn:
			c = t.Conn
		default:
			return nil
		}
	}
}
