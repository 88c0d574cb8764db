package dataplane

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// tunnels tracks hijacked Upgrade connections so that a stop can close them
// and wait for their goroutines.
type tunnels struct {
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
	// pending holds, by client connection, the backend connection of an
	// Upgrade answered but not yet handed to its tunnel: if the server
	// closes the client connection instead of handing it over, the
	// backend connection is closed with it (dropPending), and its slot
	// under max_conns_per_backend given back.
	pending map[net.Conn]net.Conn
	// releases holds, by hijacked client connection, what the end of its
	// tunnel gives back to its listener (its place under max_conns and in
	// rafter_client_connections), from the server's report of the hijack
	// until the tunnel ends. fasthttp starts the tunnel before it reports
	// the hijack, so a tunnel that ends first is marked in over for the
	// report to find.
	releases map[net.Conn]func()
	over     map[net.Conn]struct{}
}

func (t *tunnels) add(cs ...net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	if t.conns == nil {
		t.conns = map[net.Conn]struct{}{}
	}
	for _, c := range cs {
		t.conns[c] = struct{}{}
	}
	t.wg.Add(1)
	return true
}

func (t *tunnels) remove(cs ...net.Conn) {
	t.mu.Lock()
	for _, c := range cs {
		delete(t.conns, c)
	}
	t.mu.Unlock()
	t.wg.Done()
}

func (t *tunnels) closeAll() {
	t.mu.Lock()
	t.closed = true
	conns := make([]net.Conn, 0, len(t.conns)+len(t.pending))
	for c := range t.conns {
		conns = append(conns, c)
	}
	for _, b := range t.pending {
		conns = append(conns, b)
	}
	clear(t.pending)
	t.mu.Unlock()
	// Outside the lock and all at once: a TLS connection's Close may wait
	// up to 5 s to send its close alert to a client that does not read.
	var closing sync.WaitGroup
	for _, c := range conns {
		closing.Go(func() { _ = c.Close() })
	}
	closing.Wait()
	t.wg.Wait()
}

// pend records backend as client's until the tunnel takes it (unpend);
// it is false, and backend closed, once the tunnels are closed.
func (t *tunnels) pend(client, backend net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		_ = backend.Close()
		return false
	}
	if t.pending == nil {
		t.pending = map[net.Conn]net.Conn{}
	}
	t.pending[client] = backend
	return true
}

// unpend hands client's pending backend connection to its tunnel; false
// when it was closed meanwhile.
func (t *tunnels) unpend(client net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.pending[client]; !ok {
		return false
	}
	delete(t.pending, client)
	return true
}

// hijacked takes the server's report that client was hijacked: release
// runs when its tunnel ends, at once if it has.
func (t *tunnels) hijacked(client net.Conn, release func()) {
	t.mu.Lock()
	if _, ended := t.over[client]; ended {
		delete(t.over, client)
		t.mu.Unlock()
		release()
		return
	}
	if t.releases == nil {
		t.releases = map[net.Conn]func(){}
	}
	t.releases[client] = release
	t.mu.Unlock()
}

// ended marks the end of client's tunnel, or of its hijack when no tunnel
// started, and gives client's place back to its listener.
func (t *tunnels) ended(client net.Conn) {
	t.mu.Lock()
	release, ok := t.releases[client]
	if ok {
		delete(t.releases, client)
	} else {
		if t.over == nil {
			t.over = map[net.Conn]struct{}{}
		}
		t.over[client] = struct{}{}
	}
	t.mu.Unlock()
	if ok {
		release()
	}
}

// dropPending closes the pending backend connection of a client
// connection the server closed.
func (t *tunnels) dropPending(client net.Conn) {
	t.mu.Lock()
	b, ok := t.pending[client]
	delete(t.pending, client)
	t.mu.Unlock()
	if ok {
		_ = b.Close()
	}
}

// upgrade forwards an Upgrade request to a backend and, once the backend
// has started to answer, hands the client connection over to a byte
// tunnel. The backend's answer (101 or a refusal) reaches the client
// through the tunnel unchanged.
//
// The backend connection comes from the same client as the pool's
// requests (upstreamClient), so that a tunnel counts against
// max_conns_per_backend as long as it is open, as HAProxy counts it
// against a server's maxconn: at the limit an Upgrade waits up to
// max_conn_wait like a request, then gets 503. That client may hand over
// a keep-alive connection a request left idle; one the backend had
// closed meanwhile (no byte of answer) is replaced once by another.
func (d *Dataplane) upgrade(ctx *fasthttp.RequestCtx, ex *exchange, lt *listenerTable, r *route, p *pool, host, path, query []byte) {
	cand := p.candidates(d.health, &ex.sc, nil)
	if len(cand) == 0 {
		d.errorResponse(ctx, ex, fasthttp.StatusServiceUnavailable, "no_healthy_backend")
		return
	}
	b := &p.backends[p.pick(cand, d.hashKey(ctx, p, ex), &ex.sc)]
	ex.backend = b.addr
	ex.bobs = b.st.obs
	out := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(out)
	var upgradeValue []byte
	for k, v := range ctx.Request.Header.AllInOrder() {
		if equalFoldLower(k, "upgrade") {
			upgradeValue = v
		}
	}
	d.buildRequest(ctx, ex, out, lt, r, host, path, query)
	if len(out.Header.Host()) == 0 {
		out.Header.SetHost(b.addr)
	}
	out.Header.Set("Connection", "Upgrade")
	out.Header.SetBytesV("Upgrade", upgradeValue)
	head := out.Header.AppendBytes(nil)

	conn, err := openTunnel(d.upstreamClient(ctx, b.st, r.connectTimeout), head, r, ex)
	if err != nil {
		var body bodyReader // an Upgrade has no body
		kind, status := d.upstreamFailed(ex, p, b, err, &body)
		d.errorResponse(ctx, ex, status, kind)
		return
	}
	client := ctx.Conn()
	if !d.tunnels.pend(client, conn) {
		d.errorResponse(ctx, ex, fasthttp.StatusServiceUnavailable, "shutting_down")
		return
	}
	ctx.SetStatusCode(fasthttp.StatusSwitchingProtocols)
	ctx.HijackSetNoResponse(true)
	idle := r.tunnelIdle
	ctx.Hijack(func(c net.Conn) {
		defer d.tunnels.ended(client)
		if d.tunnels.unpend(client) {
			d.tunnel(hijackedConn{Conn: c, conn: client}, conn, idle)
		}
	})
}

// hijackedConn is a tunnel's client side. It reads through the connection
// fasthttp hands to the Hijack callback, which holds the bytes read past
// the Upgrade request, and its Close closes the client connection itself:
// fasthttp's Close of that connection does nothing (fasthttp closes the
// connection once the callback returns), so neither a backend that ended
// nor a stop could end a tunnel whose client stays silent.
type hijackedConn struct {
	net.Conn
	conn net.Conn
}

func (c hijackedConn) Close() error { return c.conn.Close() }

// openTunnel sends head, an Upgrade request, on a connection of hc and
// waits (up to the route's request timeout) for the first byte of the
// answer. A connection reused from hc's idle ones that ends without a
// byte is replaced once by another.
func openTunnel(hc *fasthttp.HostClient, head []byte, r *route, ex *exchange) (*tunnelConn, error) {
	for attempt := 0; ; attempt++ {
		cc, err := hc.AcquireConn(r.requestTimeout, false)
		if err != nil {
			return nil, err
		}
		c := cc.Conn()
		ex.connect = 0
		reused := true
		if uc, ok := c.(*upstreamConn); ok {
			if ex.connect = uc.addr.claimDial(); ex.connect > 0 {
				reused = false
			}
		}
		tc := &tunnelConn{Conn: c, release: func() { hc.CloseConn(cc) }}
		now := time.Now()
		_ = c.SetWriteDeadline(now.Add(r.connectTimeout))
		_ = c.SetReadDeadline(now.Add(r.requestTimeout))
		if _, err = c.Write(head); err == nil {
			tc.br = bufio.NewReader(c)
			_, err = tc.br.Peek(1)
		}
		if err == nil {
			if err = c.SetDeadline(time.Time{}); err == nil {
				return tc, nil
			}
		}
		_ = tc.Close()
		var ne net.Error
		if reused && attempt == 0 && !(errors.As(err, &ne) && ne.Timeout()) {
			continue
		}
		return nil, err
	}
}

// tunnelConn is a tunnel's backend connection: it reads through the
// reader that saw the answer's first byte, and its Close gives the
// connection back to its HostClient (closed, its slot freed) once.
type tunnelConn struct {
	net.Conn
	br      *bufio.Reader
	release func()
	once    sync.Once
}

func (c *tunnelConn) Read(p []byte) (int, error) { return c.br.Read(p) }

func (c *tunnelConn) Close() error {
	c.once.Do(c.release)
	return nil
}

// tunnel copies bytes both ways until either side ends, then closes both.
// With an idle timeout, a direction that sees no bytes for that long ends.
func (d *Dataplane) tunnel(client, backend net.Conn, idle time.Duration) {
	if !d.tunnels.add(client, backend) {
		_ = backend.Close()
		return
	}
	defer d.tunnels.remove(client, backend)
	defer d.recoverTunnel(client, backend)
	var last atomic.Int64 // the tunnel's last read, in Unix nanoseconds
	last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer d.recoverTunnel(client, backend)
		copyIdle(backend, client, idle, &last)
		_ = backend.Close()
		_ = client.Close()
	}()
	copyIdle(client, backend, idle, &last)
	_ = backend.Close()
	_ = client.Close()
	<-done
}

// copyIdle copies src to dst until either ends, or until the tunnel has
// been idle for idle, as HAProxy's timeout tunnel: a read that waited
// idle ends the copy only if the other direction's reads (last) have been
// silent as long, and otherwise waits out the rest. A write that waits
// idle for a peer that does not read ends it too: when neither peer
// reads, both directions block in writes and no read would time out.
// idle is positive: a route's tunnels always have one (compileRoute).
func copyIdle(dst, src net.Conn, idle time.Duration, last *atomic.Int64) {
	buf := make([]byte, 32<<10)
	wait := idle
	for {
		_ = src.SetReadDeadline(time.Now().Add(wait))
		n, err := src.Read(buf)
		if n > 0 {
			now := time.Now()
			last.Store(now.UnixNano())
			wait = idle
			_ = dst.SetWriteDeadline(now.Add(idle))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return
			}
			quiet := time.Since(time.Unix(0, last.Load()))
			if quiet >= idle {
				return
			}
			wait = idle - quiet
		}
	}
}
