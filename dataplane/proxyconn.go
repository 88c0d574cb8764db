package dataplane

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/fsm"
)

// DefaultProxyProtocolTimeout bounds the wait for a PROXY header when a
// listener's proxy_protocol.timeout is zero.
const DefaultProxyProtocolTimeout = 5 * time.Second

// Results of reading a PROXY header, as counted in
// rafter_proxy_protocol_connections_total.
const (
	ppHeader         = iota // a trusted source's header: its client address is used
	ppLocal                 // a trusted source's LOCAL/UNKNOWN header: the connection's address stands
	ppNone                  // no header where none is required
	ppRefusedUntrust        // a PROXY signature from an untrusted source: closed
	ppRefusedMissing        // no header from a trusted source of a listener that requires one: closed
	ppRefusedBad            // a malformed or too long header: closed
	ppRefusedIO             // the connection failed or timed out before a header was complete: closed
	ppResults
)

var ppResultNames = [ppResults]string{"header", "local", "none", "refused_untrusted", "refused_missing", "refused_malformed", "refused_io"}

// proxyMetrics counts what PROXY-enabled listeners saw.
type proxyMetrics struct {
	conns *prometheus.CounterVec
}

func newProxyMetrics(reg prometheus.Registerer) (*proxyMetrics, error) {
	m := &proxyMetrics{conns: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rafter_proxy_protocol_connections_total",
		Help: "Connections to listeners with proxy_protocol, by listener and result (header, local, none, refused_untrusted, refused_missing, refused_malformed, refused_io).",
	}, []string{"listener", "result"})}
	if reg != nil {
		if err := reg.Register(m.conns); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// proxyListener reads a PROXY header at the start of each connection it
// accepts. The header is read by the connection's first Read, in the
// goroutine that serves it, so a slow or silent client never holds up
// Accept; for an https listener that is the TLS handshake's first read,
// before any TLS byte is looked at.
type proxyListener struct {
	net.Listener
	name     string
	trusted  []netip.Prefix
	required bool
	timeout  time.Duration
	bufs     sync.Pool // *[proxyBufSize]byte
	counts   [ppResults]prometheus.Counter
	log      *slog.Logger
	lastWarn atomic.Int64 // unix nanoseconds of the last refusal logged at Warn
}

func newProxyListener(ln net.Listener, name string, spec *fsm.ProxyProtocol, m *proxyMetrics, log *slog.Logger) *proxyListener {
	l := &proxyListener{Listener: ln, name: name, required: spec.Required, timeout: spec.Timeout.D(), log: log}
	if l.timeout <= 0 {
		l.timeout = DefaultProxyProtocolTimeout
	}
	for _, s := range spec.Trusted {
		if p, err := fsm.ParseTrusted(s); err == nil {
			l.trusted = append(l.trusted, p)
		}
	}
	for i := range l.counts {
		l.counts[i] = m.conns.WithLabelValues(name, ppResultNames[i])
	}
	l.bufs.New = func() any { return new([proxyBufSize]byte) }
	return l
}

func (l *proxyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &proxyConn{Conn: c, l: l, trusted: l.isTrusted(c.RemoteAddr())}, nil
}

func (l *proxyListener) isTrusted(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, p := range l.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// refused logs a refused connection: at Warn at most every 10s per
// listener (a wrong trusted list refuses every connection), else at Debug.
func (l *proxyListener) refused(c net.Conn, result int, err error) {
	l.counts[result].Inc()
	level := slog.LevelDebug
	now := time.Now().UnixNano()
	if last := l.lastWarn.Load(); now-last > int64(10*time.Second) && l.lastWarn.CompareAndSwap(last, now) {
		level = slog.LevelWarn
	}
	l.log.Log(context.Background(), level, "connection closed: PROXY protocol", "listener", l.name, "source", c.RemoteAddr().String(),
		"result", ppResultNames[result], "err", err,
		"action", "a balancer in front must send a PROXY header and its address be in the listener's proxy_protocol.trusted; others must not send one")
}

// proxyConn is an accepted connection whose first bytes may be a PROXY
// header. Until the header is read, deadlines the server sets are kept
// aside (the header has its own) and set once it is through.
type proxyConn struct {
	net.Conn
	l       *proxyListener
	trusted bool
	// done is set once the header has been dealt with; the fields below
	// it are written before and only read after, except deadline and buf,
	// which only the reading goroutine touches.
	done     atomic.Bool
	err      error
	buf      *[proxyBufSize]byte
	pending  []byte // bytes read past the header, served before the socket's
	deadline time.Time
	remote   net.TCPAddr
	ip       [16]byte
	hasAddr  bool
}

func (c *proxyConn) Read(p []byte) (int, error) {
	if !c.done.Load() {
		c.start()
	}
	if c.err != nil {
		return 0, c.err
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.release()
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// RemoteAddr is the client address of the PROXY header, once one was
// read, and the connection's own otherwise.
func (c *proxyConn) RemoteAddr() net.Addr {
	if c.done.Load() && c.hasAddr {
		return &c.remote
	}
	return c.Conn.RemoteAddr()
}

func (c *proxyConn) SetReadDeadline(t time.Time) error {
	if !c.done.Load() {
		c.deadline = t
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *proxyConn) SetDeadline(t time.Time) error {
	if !c.done.Load() {
		c.deadline = t
		return c.Conn.SetWriteDeadline(t)
	}
	return c.Conn.SetDeadline(t)
}

// ReadFrom keeps the wrapped connection's ReadFrom (splice, sendfile)
// available to writers.
func (c *proxyConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

func (c *proxyConn) release() {
	if c.buf != nil {
		clear(c.buf[:])
		c.l.bufs.Put(c.buf)
		c.buf = nil
	}
	c.pending = nil
}

// start reads the connection's first bytes: the header of a trusted
// source, or just enough of an untrusted one's to see it sends none. It
// reads at most proxyBufSize bytes and waits at most the listener's
// timeout once a header has begun. On refusal the connection is closed
// and every Read fails.
func (c *proxyConn) start() {
	l := c.l
	c.buf = l.bufs.Get().(*[proxyBufSize]byte)
	headerBy := time.Now().Add(l.timeout)
	by := headerBy
	if !c.trusted && !c.deadline.IsZero() {
		// An untrusted client need not send a header: until its first
		// bytes it has the server's own deadline (idle keep-alive opens).
		by = c.deadline
	}
	_ = c.Conn.SetReadDeadline(by)
	n, result := 0, ppNone
	var hdr proxyHeader
	var err error
	for {
		m, rerr := c.Conn.Read(c.buf[n:])
		n += m
		if c.trusted {
			hdr, err = parseProxy(c.buf[:n])
			switch {
			case err == nil:
				result = ppHeader
				if hdr.local {
					result = ppLocal
				}
			case errors.Is(err, errProxyNoHeader):
				err = nil
				if l.required {
					result, err = ppRefusedMissing, errProxyNoHeader
				}
			case errors.Is(err, errProxyNeedMore):
			default:
				result = ppRefusedBad
			}
		} else {
			switch proxySignature(c.buf[:n]) {
			case sigV1, sigV2:
				result, err = ppRefusedUntrust, errProxyUntrusted
			case sigPartial:
				err = errProxyNeedMore
			default:
				err = nil
			}
		}
		if !errors.Is(err, errProxyNeedMore) {
			break
		}
		if rerr != nil || n == len(c.buf) {
			result, err = ppRefusedIO, rerr
			if err == nil {
				err = errProxyTooLong
			}
			break
		}
		if by != headerBy {
			by = headerBy
			_ = c.Conn.SetReadDeadline(by)
		}
	}
	if err != nil {
		// Counted (and logged) before the close the client sees.
		if n == 0 && result == ppRefusedIO {
			// Opened and closed (or left idle) without a byte: a TCP
			// health check or an unused preconnect, not worth a warning.
			l.counts[result].Inc()
		} else {
			l.refused(c, result, err)
		}
		c.err = err
		c.release()
		_ = c.Conn.Close()
		c.done.Store(true)
		return
	}
	if result == ppHeader {
		a := hdr.src.Addr().Unmap()
		if a.Is4() {
			a4 := a.As4()
			copy(c.ip[:], a4[:])
			c.remote.IP = c.ip[:4]
		} else {
			c.ip = a.As16()
			c.remote.IP = c.ip[:16]
		}
		c.remote.Port = int(hdr.src.Port())
		c.hasAddr = true
	}
	c.pending = c.buf[hdr.n:n]
	if len(c.pending) == 0 {
		c.release()
	}
	if err := c.Conn.SetReadDeadline(c.deadline); err != nil {
		c.err = err
	}
	c.done.Store(true)
	l.counts[result].Inc()
}
