package dataplane

import (
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// yieldConn wraps the proxy's connections, clients' and backends'. On a
// client connection (yields set) it lets the other goroutines run before
// a read that follows a write: the read of the next request right after a
// response, when the client cannot have sent it yet. Without the yield
// that read fails with EAGAIN, the goroutine parks and the read is made
// again once the poller wakes it; with it, the work of other connections
// runs in between, so that under load the next request is usually there:
// one read syscall instead of two and no park. When nothing else is
// runnable the yield costs one pass through the scheduler.
//
// A backend connection does not yield before reading the response. The
// scheduler polls the network only when its run queues are empty, and a
// yield goes to the back of a run queue: when both reads of every request
// yielded, a connection whose reads always found data cycled through the
// queues without parking, the queues seldom emptied, and a connection
// parked on the poller waited for them (up to the monitor thread's 10 ms
// poll) while others were served: p99 at saturation was 1.4-1.9x
// HAProxy's at 0 B. Parking on the response read drains the queues once
// per request, which bounds that wait, for about 1.5 % more CPU per
// request (measured side by side: rafter-bench --rafter-b).
type yieldConn struct {
	net.Conn
	// yields is set on client connections: see yieldConn.
	yields bool
	// wrote is set by Write and cleared by the next Read. It is atomic
	// because a tunnel reads and writes a connection from two goroutines.
	wrote atomic.Bool
	// readDL and writeDL are the deadlines last applied, in Unix
	// nanoseconds (0: none); see SetReadDeadline.
	readDL, writeDL atomic.Int64
	// idle reads a client connection so that its read buffer can be
	// released while it waits (idlemem.go); nil on backend connections.
	idle *idleReader
}

func (c *yieldConn) Write(p []byte) (int, error) {
	if c.yields && !c.wrote.Load() {
		c.wrote.Store(true)
	}
	return c.Conn.Write(p)
}

func (c *yieldConn) Read(p []byte) (int, error) {
	if c.wrote.Load() {
		c.wrote.Store(false)
		runtime.Gosched()
	}
	if c.idle != nil {
		return c.idle.read(c.Conn, p)
	}
	return c.Conn.Read(p)
}

func (c *yieldConn) Close() error {
	if c.idle != nil {
		c.idle.reg.remove(c.idle)
	}
	return c.Conn.Close()
}

// ReadFrom keeps the wrapped connection's ReadFrom (a TCP connection's
// splice and sendfile paths) available to io.Copy and bufio.Writer for
// the readers it can use them with. Any other reader (a response body
// streaming from a backend) is copied through a pooled buffer: the TCP
// connection's own fallback would allocate 32 KiB per call, that is per
// response larger than the server's write buffer.
func (c *yieldConn) ReadFrom(r io.Reader) (int64, error) {
	if c.yields && !c.wrote.Load() {
		c.wrote.Store(true)
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok && spliceable(r) {
		return rf.ReadFrom(r)
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	// io.CopyBuffer would need its arguments wrapped (to hide WriteTo and
	// ReadFrom), and the wrappers would escape: the loop is written out.
	buf := *bp
	var n int64
	for {
		nr, rerr := r.Read(buf)
		if nr > 0 {
			nw, werr := c.Conn.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
			if nw != nr {
				return n, io.ErrShortWrite
			}
		}
		switch {
		case rerr == io.EOF:
			return n, nil
		case rerr != nil:
			return n, rerr
		}
	}
}

// copyBufs hold the buffers of ReadFrom. A buffer keeps the bytes of the
// last copy, but a copy writes only what it has just read into it.
//
// The size is the most a single write to the client carries. On loopback
// and fast links a write's fixed cost (the syscall, the receiver's TCP
// path run inline, the wake-up of the reader) dominates, so fewer, larger
// writes cost less CPU per byte: 64 KiB measured about 5-9 % less CPU per
// request than 32 KiB on 64 KiB responses (16 KiB, HAProxy's buffer size,
// about 25 % more). A buffer is held only while a body is being copied.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// copyBufSize is the size of a copyBufs buffer.
const copyBufSize = 64 << 10

// spliceable reports whether a TCP connection's ReadFrom can move r's
// bytes in the kernel (splice, sendfile) rather than through a buffer.
func spliceable(r io.Reader) bool {
	if lr, ok := r.(*io.LimitedReader); ok {
		r = lr.R
	}
	switch r.(type) {
	case *net.TCPConn, *net.UnixConn, *os.File:
		return true
	}
	return false
}

// yieldListener wraps every accepted connection in a yieldConn that yields
// and whose read buffers idle registers (idlemem.go).
type yieldListener struct {
	net.Listener
	idle *idleRegistry
}

func (l yieldListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &yieldConn{Conn: c, yields: true, idle: newIdleReader(c, l.idle)}, nil
}

// upstreamConn is a pooled connection to a backend. Its RemoteAddr is an
// *upstreamAddr, which fasthttp hands back with every response
// (Response.RemoteAddr) without allocating: that is how a request learns
// which address it reached and whether it paid for the connection's dial.
type upstreamConn struct {
	yieldConn
	addr upstreamAddr
	// held is the request written by the response read (sendread.go).
	held heldRequest
	// sent and got count the bytes written and read since the round trip
	// of the current exchange set them to zero.
	sent, got int
}

// upstreamAddr is a backend connection's remote address plus how long the
// connection took to open. fresh is true until the first request on the
// connection claims the dial time.
type upstreamAddr struct {
	net.Addr
	dial  time.Duration
	fresh atomic.Bool
	// armed is the read and write deadline last set on the connection
	// (armDeadline); only the request holding the connection uses it.
	armed time.Time
}

func newUpstreamConn(c net.Conn, dial time.Duration) *upstreamConn {
	uc := &upstreamConn{yieldConn: yieldConn{Conn: c}}
	uc.addr.Addr = c.RemoteAddr()
	uc.addr.dial = dial
	uc.addr.fresh.Store(true)
	uc.initHold()
	return uc
}

// RemoteAddr returns the connection's *upstreamAddr.
func (c *upstreamConn) RemoteAddr() net.Addr { return &c.addr }

// claimDial returns the connection's dial time to the first caller and
// zero to every later one (a request on a reused connection paid none).
func (a *upstreamAddr) claimDial() time.Duration {
	if a.fresh.CompareAndSwap(true, false) {
		return a.dial
	}
	return 0
}

// Deadlines of accepted connections. The server sets the read deadline
// twice per request (the idle wait, then the read timeout from the first
// byte) and the write deadline once, each to a fixed time from now; every
// call re-arms a runtime timer. A deadline that would move later by at
// most 1/deadlineSlack of the time it has left is kept instead: requests
// in quick succession then re-arm the timers about once per timeout/64,
// and a timeout never grows nor shrinks by more than that 64th. A deadline
// earlier than the one set, or none (the zero time), is always applied.

func (c *yieldConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetDeadline(t); err != nil {
		return err
	}
	c.readDL.Store(deadlineNanos(t))
	c.writeDL.Store(deadlineNanos(t))
	return nil
}

func (c *yieldConn) SetReadDeadline(t time.Time) error {
	return setDeadlineLazily(&c.readDL, t, c.Conn.SetReadDeadline)
}

func (c *yieldConn) SetWriteDeadline(t time.Time) error {
	return setDeadlineLazily(&c.writeDL, t, c.Conn.SetWriteDeadline)
}

// deadlineNanos is t as kept in yieldConn; 0 stands for no deadline.
func deadlineNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// setDeadlineLazily calls set(t) unless the deadline in armed is at most
// 1/deadlineSlack of t's time left earlier than t; armed records what was
// applied.
func setDeadlineLazily(armed *atomic.Int64, t time.Time, set func(time.Time) error) error {
	want := deadlineNanos(t)
	if cur := armed.Load(); cur != 0 && want >= cur {
		if ahead := time.Duration(want - cur); ahead <= time.Until(t)/deadlineSlack {
			return nil
		}
	}
	if err := set(t); err != nil {
		return err
	}
	armed.Store(want)
	return nil
}
