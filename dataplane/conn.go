package dataplane

import (
	"io"
	"net"
	"runtime"
	"sync/atomic"
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
