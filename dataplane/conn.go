package dataplane

import (
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"time"
)

// yieldConn lets the other goroutines run before a read that follows a
// write. A proxy reads right after it writes (the next request after a
// response, the response after a request sent upstream), when the peer
// cannot have answered yet: the read fails with EAGAIN, the goroutine parks
// and the read is made again once the poller wakes it. Yielding first lets
// the work of other connections run in between, so that under load the
// answer is usually there when the read happens: one read syscall instead
// of two and no park. When nothing else is runnable the yield costs one
// pass through the scheduler.
type yieldConn struct {
	net.Conn
	// wrote is set by Write and cleared by the next Read. It is atomic
	// because a tunnel reads and writes a connection from two goroutines.
	wrote atomic.Bool
}

func (c *yieldConn) Write(p []byte) (int, error) {
	if !c.wrote.Load() {
		c.wrote.Store(true)
	}
	return c.Conn.Write(p)
}

func (c *yieldConn) Read(p []byte) (int, error) {
	if c.wrote.Load() {
		c.wrote.Store(false)
		runtime.Gosched()
	}
	return c.Conn.Read(p)
}

// ReadFrom keeps the wrapped connection's ReadFrom (a TCP connection's
// splice and sendfile paths) available to io.Copy and bufio.Writer.
func (c *yieldConn) ReadFrom(r io.Reader) (int64, error) {
	if !c.wrote.Load() {
		c.wrote.Store(true)
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// yieldListener wraps every accepted connection in a yieldConn.
type yieldListener struct{ net.Listener }

func (l yieldListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &yieldConn{Conn: c}, nil
}

// upstreamConn is a pooled connection to a backend. Its RemoteAddr is an
// *upstreamAddr, which fasthttp hands back with every response
// (Response.RemoteAddr) without allocating: that is how a request learns
// which address it reached and whether it paid for the connection's dial.
type upstreamConn struct {
	yieldConn
	addr upstreamAddr
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
