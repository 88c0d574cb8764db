package dataplane

import (
	"errors"
	"io"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/rafterlb/rafter/dataplane/health"
)

// upstreamBody streams a backend's response body to the client and records
// how it ended: a backend that closes mid-body, or sends only a head, is
// counted (rafter_upstream_errors_total kind "truncated"), reported to
// passive health and logged as such, and the failed read makes fasthttp
// close the client connection, so the client sees the truncation instead
// of a short body that looks whole. It lives in the exchange and keeps the
// exchange out of the pool until fasthttp closes it, after writing the
// response or failing to.
type upstreamBody struct {
	d      *Dataplane
	ctx    *fasthttp.RequestCtx
	ex     *exchange
	up     *fasthttp.Response // the backend's response; owns src
	src    io.Reader
	n      int64
	failed bool
	eof    bool       // src reported the end of the body
	idle   *idleTimer // nil without the route's idle timeout
}

// idleTimer ends a streamed response body whose backend stays silent for a
// route's idle timeout. It is allocated apart from the exchange so that a
// timer firing late never touches a recycled exchange.
type idleTimer struct {
	d     time.Duration
	t     *time.Timer
	fired atomic.Bool
	// expired is set by the reader when a read outlived the timer, whose
	// function then closes (or has closed) the connection: it must not
	// go back to the pool.
	expired bool
}

// errUpstreamIdle ends a backend body that was silent too long.
var errUpstreamIdle = errors.New("backend response body idle past the route's idle timeout")

// takeResponse makes the backend's response up the client's. The status
// and fields are copied one by one, not with Header.CopyTo, so the client
// response keeps the server's own settings: HTTP/1.1 framing whatever
// version the backend spoke (a chunked body in an "HTTP/1.0" status line
// cannot be framed by the client), no default Content-Type or Date. A body
// that streams from the backend passes through ex.respBody.
func (d *Dataplane) takeResponse(ctx *fasthttp.RequestCtx, ex *exchange, up *fasthttp.Response) {
	h := &ctx.Response.Header
	h.SetStatusCode(up.StatusCode())
	if m := up.Header.StatusMessage(); len(m) > 0 {
		h.SetStatusMessage(m)
	}
	// Without this, All reports a default Content-Type the backend never sent.
	up.Header.SetNoDefaultContentType(true)
	for k, v := range up.Header.All() {
		// The client gets the request id the proxy sent (done sets it),
		// not a second one the backend echoes.
		if len(k) == 12 && equalFoldLower(k, "x-request-id") {
			continue
		}
		h.AddBytesKV(k, v)
	}
	src := up.BodyStream()
	if src == nil {
		if len(up.Body()) > 0 {
			// The buffers trade places instead of the body being copied:
			// the client response takes the backend's, the backend
			// response (released after the exchange) the client's.
			up.SwapBody(ctx.Response.SwapBody(up.SwapBody(nil)))
		}
		return
	}
	ex.respBody = upstreamBody{d: d, ctx: ctx, ex: ex, up: up, src: src}
	if idle := ex.route.idleTimeout; idle > 0 {
		it := &idleTimer{d: idle}
		closer, _ := src.(fasthttp.ReadCloserWithError)
		conn := ex.lease.conn()
		it.t = time.AfterFunc(time.Hour, func() {
			it.fired.Store(true)
			// Interrupts the blocked read on the backend connection.
			switch {
			case conn != nil:
				_ = conn.Close()
			case closer != nil:
				_ = closer.CloseWithError(errUpstreamIdle)
			}
		})
		it.t.Stop()
		ex.respBody.idle = it
	}
	ex.streaming = true
	ctx.Response.SetBodyStream(&ex.respBody, up.Header.ContentLength())
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	if b.idle != nil {
		b.idle.t.Reset(b.idle.d)
	}
	n, err := b.src.Read(p)
	if b.idle != nil && !b.idle.t.Stop() {
		b.idle.expired = true
	}
	b.n += int64(n)
	if err == io.EOF {
		b.eof = true
	}
	if err != nil && err != io.EOF && !b.failed {
		b.failed = true
		ex := b.ex
		kind, outcome := "truncated", health.Reset
		if b.idle != nil && b.idle.fired.Load() {
			kind, outcome = "idle_timeout", health.Timeout
		}
		ex.kind = kind
		b.d.metrics.upstreamErrors.WithLabelValues(ex.pool.name, kind).Inc()
		ex.bobs.failure(kind)
		b.d.health.Observe(ex.pool.name, ex.backend, outcome)
	}
	return n, err
}

// CloseWithError is called by fasthttp once the response is written, with
// the write error if any (fasthttp.ReadCloserWithError).
func (b *upstreamBody) CloseWithError(werr error) error {
	if b.idle != nil {
		b.idle.t.Stop()
	}
	if c, ok := b.src.(fasthttp.ReadCloserWithError); ok {
		// A write error makes the backend connection be discarded.
		_ = c.CloseWithError(werr)
	} else if c, ok := b.src.(io.Closer); ok {
		_ = c.Close()
	}
	// The backend connection is reused only after a body read to its
	// end, written whole, with no idle timer having touched it.
	reuse := b.eof && !b.failed && werr == nil && (b.idle == nil || !b.idle.expired && !b.idle.fired.Load()) &&
		!b.up.ConnectionClose() && b.up.Header.ContentLength() != -2
	ex := b.ex
	fasthttp.ReleaseResponse(b.up)
	ex.lease.end(reuse)
	if !ex.streaming {
		return nil // replaced by an error response; done finishes ex
	}
	if werr != nil && ex.kind == "" {
		ex.kind = "client_write" // the client went away mid-body
	}
	b.d.complete(b.ctx, ex)
	return nil
}
