package dataplane

import (
	"io"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/rafterlb/rafter/dataplane/health"
)

// tunnels tracks hijacked Upgrade connections so that a stop can close them
// and wait for their goroutines.
type tunnels struct {
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
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
	for c := range t.conns {
		_ = c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// upgrade forwards an Upgrade request on a new backend connection, then
// hands the client connection over to a byte tunnel. The backend's answer
// (101 or a refusal) reaches the client through the tunnel unchanged.
func (d *Dataplane) upgrade(ctx *fasthttp.RequestCtx, ex *exchange, lt *listenerTable, r *route, p *pool, host, path, query []byte) {
	cand := p.candidates(d.health, &ex.sc, nil)
	if len(cand) == 0 {
		d.errorResponse(ctx, ex, fasthttp.StatusServiceUnavailable, "no_healthy_backend")
		return
	}
	b := &p.backends[p.pick(cand, d.hashKey(ctx, p, ex), &ex.sc)]
	ex.backend = b.addr
	ex.bobs = b.st.obs
	dialStart := time.Now()
	conn, err := d.dial(b.addr, r.connectTimeout)
	if err == nil {
		conn, err = b.st.prepare(conn, r.connectTimeout, proxyHeaderFor(b.st.settings.sendProxy, ctx.RemoteAddr(), ctx.LocalAddr()))
	}
	ex.connect = time.Since(dialStart)
	if err != nil {
		d.health.Observe(p.name, b.addr, health.ConnectError)
		d.metrics.upstreamErrors.WithLabelValues(p.name, "connect").Inc()
		b.st.obs.failure("connect")
		d.errorResponse(ctx, ex, fasthttp.StatusBadGateway, "connect")
		return
	}
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
	_ = conn.SetWriteDeadline(time.Now().Add(r.connectTimeout))
	if _, err := conn.Write(head); err != nil {
		_ = conn.Close()
		d.metrics.upstreamErrors.WithLabelValues(p.name, "reset").Inc()
		b.st.obs.failure("reset")
		d.errorResponse(ctx, ex, fasthttp.StatusBadGateway, "reset")
		return
	}
	_ = conn.SetWriteDeadline(time.Time{})
	b.st.obs.connected(ex.connect)
	ctx.SetStatusCode(fasthttp.StatusSwitchingProtocols)
	ctx.HijackSetNoResponse(true)
	idle := r.idleTimeout
	ctx.Hijack(func(c net.Conn) { d.tunnel(c, conn, idle) })
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
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer d.recoverTunnel(client, backend)
		copyIdle(backend, client, idle)
		_ = backend.Close()
		_ = client.Close()
	}()
	copyIdle(client, backend, idle)
	_ = backend.Close()
	_ = client.Close()
	<-done
}

func copyIdle(dst, src net.Conn, idle time.Duration) {
	if idle <= 0 {
		_, _ = io.Copy(dst, src)
		return
	}
	buf := make([]byte, 32<<10)
	for {
		_ = src.SetReadDeadline(time.Now().Add(idle))
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
