package dataplane

import (
	"fmt"
	"runtime/debug"
	"time"

	"github.com/valyala/fasthttp"
)

// done ends one request: a panic anywhere in its handling becomes a 500 for
// this request alone (logged with its stack and counted), then the request
// is recorded and its exchange returned to the pool. It must be deferred
// directly so that recover sees the handler's panic.
func (d *Dataplane) done(ctx *fasthttp.RequestCtx, ex *exchange) {
	if v := recover(); v != nil {
		d.panicked("request", v, ctx)
		// The error response replaces a body stream set up already;
		// closing it must not finish the exchange, done does.
		ex.streaming = false
		// A tunnel the handler may have set up before it failed must not
		// start: the answer is the 500.
		ctx.Hijack(nil)
		ctx.HijackSetNoResponse(false)
		ex.kind = ""
		d.errorResponse(ctx, ex, fasthttp.StatusInternalServerError, "panic")
	}
	d.metrics.inflight.Dec()
	if len(ex.reqID) > 0 {
		ctx.Response.Header.SetBytesV("X-Request-Id", ex.reqID)
	}
	ex.head = time.Since(ex.start)
	if ex.streaming {
		return // ex.respBody finishes the exchange once the body is written
	}
	d.complete(ctx, ex)
}

// complete records a request and returns its exchange to the pool.
func (d *Dataplane) complete(ctx *fasthttp.RequestCtx, ex *exchange) {
	defer func() {
		// Recording the request failed: drop the exchange rather than
		// pool one in an unknown state.
		if v := recover(); v != nil {
			d.panicked("finish", v, ctx)
		}
	}()
	d.finish(ctx, ex)
	// Every path that streams a body ends its lease; one still held here
	// would keep a backend connection slot forever.
	ex.lease.end(false)
	ex.reset()
	d.exchanges.Put(ex)
}

// panicked logs and counts a recovered panic.
func (d *Dataplane) panicked(where string, v any, ctx *fasthttp.RequestCtx) {
	d.metrics.panics.WithLabelValues(where).Inc()
	args := []any{"where", where, "panic", fmt.Sprint(v), "stack", string(debug.Stack())}
	if ctx != nil {
		args = append(args, "method", string(ctx.Method()), "uri", string(ctx.Request.Header.RequestURI()))
	}
	d.log.Error("panic recovered", append(args, "action", "a bug in rafter: report this line with the request that caused it; the node keeps serving")...)
}

// recoverTunnel closes both ends of a tunnel whose copying panicked; it
// must be deferred directly.
func (d *Dataplane) recoverTunnel(client, backend interface{ Close() error }) {
	if v := recover(); v != nil {
		d.panicked("tunnel", v, nil)
		_ = client.Close()
		_ = backend.Close()
	}
}
