package dataplane

import (
	"io"

	"github.com/valyala/fasthttp"
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
}

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
		h.AddBytesKV(k, v)
	}
	src := up.BodyStream()
	if src == nil {
		if b := up.Body(); len(b) > 0 {
			ctx.Response.SetBody(b)
		}
		return
	}
	ex.respBody = upstreamBody{d: d, ctx: ctx, ex: ex, up: up, src: src}
	ex.streaming = true
	ctx.Response.SetBodyStream(&ex.respBody, up.Header.ContentLength())
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	n, err := b.src.Read(p)
	b.n += int64(n)
	if err != nil && err != io.EOF && !b.failed {
		b.failed = true
		ex := b.ex
		ex.kind = "truncated"
		b.d.metrics.upstreamErrors.WithLabelValues(ex.pool.name, "truncated").Inc()
		b.d.health.Observe(ex.pool.name, ex.backend, OutcomeReset)
	}
	return n, err
}

// CloseWithError is called by fasthttp once the response is written, with
// the write error if any (fasthttp.ReadCloserWithError).
func (b *upstreamBody) CloseWithError(werr error) error {
	if c, ok := b.src.(fasthttp.ReadCloserWithError); ok {
		// A write error makes the backend connection be discarded.
		_ = c.CloseWithError(werr)
	} else if c, ok := b.src.(io.Closer); ok {
		_ = c.Close()
	}
	fasthttp.ReleaseResponse(b.up)
	ex := b.ex
	if !ex.streaming {
		return nil // replaced by an error response; done finishes ex
	}
	if werr != nil && ex.kind == "" {
		ex.kind = "client_write" // the client went away mid-body
	}
	b.d.complete(b.ctx, ex)
	return nil
}
