package dataplane

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/rafterlb/rafter/fsm"
)

// A pool with send_proxy_protocol starts every backend connection with a
// PROXY header naming the client. A backend connection then belongs to
// one client connection, as HAProxy's send-proxy connections and Envoy's
// upstream PROXY pools do: it is never reused for another client, whose
// address it would claim. Each (client connection, backend) pair gets a
// HostClient of its own, dropped with its idle connections when the
// client connection closes. Pools without send_proxy_protocol never reach
// this file.

// maxPrivatePerConn bounds the private clients (so backend connections)
// one client connection holds at a time.
const maxPrivatePerConn = 4

// privateKey names one private client of a client connection.
type privateKey struct {
	b  *backendState
	ct time.Duration
}

// privateClients holds the HostClients of client connections to pools
// with send_proxy_protocol.
type privateClients struct {
	n      atomic.Int64 // client connections with private clients, to skip drop cheaply
	mu     sync.Mutex
	byConn map[net.Conn]map[privateKey]*fasthttp.HostClient
}

// upstreamClient is the HostClient a request on ctx uses to reach b.
func (d *Dataplane) upstreamClient(ctx *fasthttp.RequestCtx, b *backendState, ct time.Duration) *fasthttp.HostClient {
	if b.settings.sendProxy == "" {
		return b.client(ct)
	}
	return d.private.client(ctx, b, ct)
}

func (p *privateClients) client(ctx *fasthttp.RequestCtx, b *backendState, ct time.Duration) *fasthttp.HostClient {
	if ct <= 0 {
		ct = DefaultConnectTimeout
	}
	conn, k := ctx.Conn(), privateKey{b, ct}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byConn == nil {
		p.byConn = map[net.Conn]map[privateKey]*fasthttp.HostClient{}
	}
	cs := p.byConn[conn]
	if cs == nil {
		cs = map[privateKey]*fasthttp.HostClient{}
		p.byConn[conn] = cs
		p.n.Add(1)
	}
	hc := cs[k]
	if hc == nil && len(cs) >= maxPrivatePerConn {
		// A client connection has one request in flight (this one), so
		// the others are idle: start over rather than hold a connection
		// to every backend a long-lived client was balanced to.
		for _, old := range cs {
			old.CloseIdleConnections()
		}
		clear(cs)
	}
	if hc == nil {
		hc = b.newPrivateClient(ct, proxyHeaderFor(b.settings.sendProxy, ctx.RemoteAddr(), ctx.LocalAddr()))
		cs[k] = hc
	}
	return hc
}

// newPrivateClient is a HostClient for one client connection to b: its
// connections start with proxyHdr and each holds a slot of b.limit (see
// privateLimit) from before its dial until it closes.
func (b *backendState) newPrivateClient(ct time.Duration, proxyHdr []byte) *fasthttp.HostClient {
	hc := b.newClient(ct, proxyHdr)
	// One request at a time comes from a client connection; a second
	// connection covers a backend that closed the first mid-way.
	hc.MaxConns = 2
	l, s := b.limit, b.settings
	// DialTimeout rather than Dial: fasthttp passes it the request's
	// timeout, which bounds the wait for a slot as it bounds the shared
	// client's wait for a connection.
	hc.Dial = nil
	hc.DialTimeout = func(addr string, reqTimeout time.Duration) (net.Conn, error) {
		if err := l.acquire(s.maxConns, s.maxWait, reqTimeout); err != nil {
			return nil, err
		}
		return b.connect(addr, ct, proxyHdr, hc)
	}
	hc.Transport = newTransport(hc, hc.AcquireConn, releaseUnlessWanted(l, hc.ReleaseConn, hc.CloseConn), hc.CloseConn)
	return hc
}

// drop forgets the private clients of a client connection that closed
// (or was handed to a tunnel) and closes their idle connections.
func (p *privateClients) drop(conn net.Conn) {
	if p.n.Load() == 0 {
		return
	}
	p.mu.Lock()
	cs := p.byConn[conn]
	if cs != nil {
		delete(p.byConn, conn)
		p.n.Add(-1)
	}
	p.mu.Unlock()
	for _, hc := range cs {
		hc.CloseIdleConnections()
	}
}

// closeAll closes every private client's idle connections (at shutdown).
func (p *privateClients) closeAll() {
	p.mu.Lock()
	all := p.byConn
	p.byConn = nil
	p.n.Store(0)
	p.mu.Unlock()
	for _, cs := range all {
		for _, hc := range cs {
			hc.CloseIdleConnections()
		}
	}
}

// proxyHeaderFor is the PROXY header of version v ("v1", "v2") for a
// client connection from src to dst; nil for "".
func proxyHeaderFor(v string, src, dst net.Addr) []byte {
	if v == "" {
		return nil
	}
	s, t := addrPort(src), addrPort(dst)
	if v == fsm.ProxyProtocolV1 {
		return appendProxyV1(nil, s, t)
	}
	return appendProxyV2(nil, s, t)
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok && ta.Port >= 0 && ta.Port <= 65535 {
			return netip.AddrPortFrom(ip.Unmap(), uint16(ta.Port))
		}
	}
	return netip.AddrPort{}
}

// prepare readies a new backend connection: the PROXY header first (in
// the clear, as the protocol wants), then the pool's TLS handshake.
func (b *backendState) prepare(c net.Conn, timeout time.Duration, proxyHdr []byte) (net.Conn, error) {
	if len(proxyHdr) > 0 {
		if timeout <= 0 {
			timeout = DefaultConnectTimeout
		}
		_ = c.SetWriteDeadline(time.Now().Add(timeout))
		if _, err := c.Write(proxyHdr); err != nil {
			_ = c.Close()
			return nil, &dialError{err}
		}
		_ = c.SetWriteDeadline(time.Time{})
	}
	return b.startTLS(c, timeout)
}
