package dataplane

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/rafterlb/rafter/dataplane/health"
)

// exchange is per-request scratch memory, pooled so that a request does
// not allocate for routing, header rewriting or picking.
type exchange struct {
	view    requestView
	hostBuf []byte
	uriBuf  []byte
	valBuf  []byte
	keyBuf  []byte
	keys    []span
	tokens  [][]byte
	tried   []int32
	sc      pickScratch
	body    []byte
	stream  bodyReader
	// lease holds the backend connection a streamed response body reads
	// from until the body is done (upstreamBody.CloseWithError).
	lease upstreamLease
	start time.Time
	head  time.Duration // until the handler returned: the response head is ready
	// streaming: the response body streams from the backend through
	// respBody, which finishes the exchange when fasthttp closes it.
	streaming bool
	respBody  upstreamBody
	route     *route
	pool      *pool
	backend   string
	kind      string
	retries   int
	// obs and bobs are the series of the route leg and of the backend
	// that answered (the last one tried).
	obs  *requestObs
	bobs *backendObs
	// The request id (taken from the client or made) and the trace
	// context; tpBuf holds the traceparent sent upstream.
	reqID []byte
	tpBuf []byte
	trace traceContext
	// upstream is the connection the last attempt used (nil if none was
	// reached); connect is the dial time that attempt paid (zero on a
	// reused connection); upstreamTime is from sending the request to
	// the response head, for the last attempt.
	upstream     *upstreamAddr
	connect      time.Duration
	upstreamTime time.Duration
	// span is the request's span while it is handed to Options.Spans.
	span Span
}

func newExchange() *exchange {
	return &exchange{hostBuf: make([]byte, 0, 256), uriBuf: make([]byte, 0, 256), valBuf: make([]byte, 0, 256),
		reqID: make([]byte, 0, MaxRequestIDLen), tpBuf: make([]byte, 0, 64)}
}

// reset readies ex for the next request, which may come from another
// client: every field goes back to its zero value except the buffers, which
// keep their capacity but lose their contents. It is the only place that
// clears an exchange, so a field added to exchange is cleared here or not
// at all (TestExchangeResetClearsEverything checks).
func (ex *exchange) reset() {
	body := ex.body[:0]
	if cap(body) > 4*bufferBodyLimit {
		body = nil
	}
	clear(ex.tokens) // they alias the previous request's header
	clear(ex.sc.mark[:cap(ex.sc.mark)])
	*ex = exchange{
		hostBuf: ex.hostBuf[:0],
		uriBuf:  ex.uriBuf[:0],
		valBuf:  ex.valBuf[:0],
		keyBuf:  ex.keyBuf[:0],
		keys:    ex.keys[:0],
		tokens:  ex.tokens[:0],
		tried:   ex.tried[:0],
		sc:      pickScratch{cand: ex.sc.cand[:0], mark: ex.sc.mark[:0]},
		body:    body,
		reqID:   ex.reqID[:0],
		tpBuf:   ex.tpBuf[:0],
	}
}

// Errors the proxy maps to client statuses.
var (
	errBodyTooLarge  = errors.New("request body too large")
	errClientBody    = errors.New("reading the request body failed")
	errClientTimeout = errors.New("the client sent no request body bytes in time")
)

// dialError marks a failure to connect, which is always safe to retry.
type dialError struct{ err error }

func (e *dialError) Error() string { return "dial: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// bodyReader replays a buffered prefix then continues with the client's
// stream, enforcing the body limit. It records whether anything was read
// from it (then it cannot be replayed on a retry) and why it failed.
type bodyReader struct {
	idle     idleDeadline
	prefix   []byte
	off      int
	rest     io.Reader
	read     int64
	limit    int64
	length   int64 // the announced Content-Length, -1 for chunked
	consumed bool
	err      error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	b.consumed = true
	if b.off < len(b.prefix) {
		n := copy(p, b.prefix[b.off:])
		b.off += n
		b.read += int64(n)
		return n, nil
	}
	if b.rest == nil {
		return 0, io.EOF
	}
	b.idle.arm()
	n, err := b.rest.Read(p)
	b.read += int64(n)
	if b.read > b.limit {
		b.err = errBodyTooLarge
		return n, errBodyTooLarge
	}
	if err == io.EOF && b.length >= 0 && b.read < b.length {
		// A client that disconnects early ends the stream with a plain
		// EOF; the body must not look complete upstream.
		err = io.ErrUnexpectedEOF
	}
	if err != nil && err != io.EOF {
		b.err = errClientBody
		if isTimeout(err) {
			b.err = errClientTimeout
		}
	}
	return n, err
}

// isTimeout reports whether err is a timeout: a net.Error's, or
// fasthttp.ErrTimeout, which is not a net.Error.
func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// idleDeadline applies a route's idle timeout to a streamed request body:
// before each read from the client the read deadline moves to idle from
// now, but never past the listener's read timeout for the whole request.
type idleDeadline struct {
	ctx   *fasthttp.RequestCtx
	idle  time.Duration
	limit time.Time
}

func (i *idleDeadline) arm() {
	if i.idle <= 0 || i.ctx == nil {
		return
	}
	dl := time.Now().Add(i.idle)
	if dl.After(i.limit) {
		dl = i.limit
	}
	_ = i.ctx.SetReadDeadline(dl)
}

// handle serves one request on listener lt's server.
func (d *Dataplane) handle(ctx *fasthttp.RequestCtx, listener string) {
	ex := d.exchanges.Get().(*exchange)
	// The server read the clock when the request head was complete; reuse
	// that instead of reading it again.
	if ex.start = ctx.Time(); ex.start.IsZero() {
		ex.start = time.Now()
	}
	if d.closing.Load() {
		// Runs after done: nothing may take the header back.
		defer ctx.SetConnectionClose()
	}
	d.metrics.inflight.Inc()
	defer d.done(ctx, ex)
	scanTrace(&ctx.Request.Header, ex)
	t := d.table.Load()
	lt := t.listeners[listener]
	if lt == nil {
		ctx.SetConnectionClose()
		d.errorResponse(ctx, ex, fasthttp.StatusServiceUnavailable, "listener_removed")
		return
	}
	hdr := &ctx.Request.Header
	// fasthttp rejects duplicate Host and Content-Length fields itself; a
	// Content-Length beside Transfer-Encoding it accepts (TE wins), but a
	// proxy must refuse it (RFC 9112 6.1) so no backend can disagree about
	// where the request ends.
	if hdr.ContentLength() == -1 && hasRawField(hdr.RawHeaders(), "content-length") {
		ctx.SetConnectionClose()
		d.errorResponse(ctx, ex, fasthttp.StatusBadRequest, "framing")
		return
	}
	// A field line folded onto the next (obs-fold) is refused, as RFC
	// 9112 5.2 allows: fasthttp would join it into a corrupted value.
	if hasObsFold(hdr.RawHeaders()) {
		ctx.SetConnectionClose()
		d.errorResponse(ctx, ex, fasthttp.StatusBadRequest, "obs_fold")
		return
	}
	// The proxy does not tunnel CONNECT, and must not pass it to a backend
	// either: an authority-form CONNECT gets 501 (rafter is no forward proxy), any
	// other target is not valid for CONNECT (400, RFC 9112 3.2.3). The
	// client may already be sending tunnel bytes, so the connection closes.
	if string(hdr.Method()) == fasthttp.MethodConnect {
		ctx.SetConnectionClose()
		if isAuthorityForm(hdr.RequestURI()) {
			d.errorResponse(ctx, ex, fasthttp.StatusNotImplemented, "connect")
		} else {
			d.errorResponse(ctx, ex, fasthttp.StatusBadRequest, "connect")
		}
		return
	}
	authority, path, query := splitRequestURI(hdr.RequestURI())
	host := hdr.Host()
	if len(authority) > 0 {
		host = authority
	}
	if len(host) == 0 && hdr.IsHTTP11() {
		ctx.SetConnectionClose()
		d.errorResponse(ctx, ex, fasthttp.StatusBadRequest, "host")
		return
	}
	ex.view = requestView{
		method: hdr.Method(), host: normalizeHost(ex.hostBuf, host),
		path: path, query: query, hdr: hdr,
	}
	r := lt.lookup(&ex.view)
	if r == nil {
		d.errorResponse(ctx, ex, fasthttp.StatusNotFound, "no_route")
		return
	}
	ex.route = r
	ex.obs = r.obs
	if hook := d.opts.routeHook; hook != nil {
		hook(r.name)
	}
	switch r.action {
	case actionRespond:
		ctx.SetStatusCode(r.respond.status)
		for _, kv := range r.respond.headers {
			ctx.Response.Header.Set(kv.key, kv.value)
		}
		ctx.Response.SetBodyRaw(r.respond.body)
		d.addResponseHeaders(ctx, ex, r)
		return
	case actionRedirect:
		d.redirect(ctx, ex, r, host, path, query)
		return
	}
	if len(r.split) == 0 {
		d.errorResponse(ctx, ex, fasthttp.StatusServiceUnavailable, "no_pool")
		return
	}
	leg := r.split[0]
	if len(r.split) > 1 {
		w := splitPoint(ctx, r)
		for _, l := range r.split {
			if w < l.cum {
				leg = l
				break
			}
		}
	}
	ex.pool = leg.pool
	ex.obs = leg.obs
	maxBody := r.maxBody
	if maxBody <= 0 {
		maxBody = lt.limits.maxBodyBytes
	}
	if cl := hdr.ContentLength(); cl > 0 && int64(cl) > maxBody {
		ctx.SetConnectionClose()
		d.errorResponse(ctx, ex, fasthttp.StatusRequestEntityTooLarge, "body_too_large")
		return
	}
	if scanConnection(hdr, ex) {
		// The upgrade head goes upstream without framing fields and the
		// client's bytes after it are tunnelled raw: a body would reach
		// the backend as the start of another, unrouted request.
		if cl := hdr.ContentLength(); cl > 0 || cl == -1 {
			ctx.SetConnectionClose()
			d.errorResponse(ctx, ex, fasthttp.StatusBadRequest, "upgrade_body")
			return
		}
		d.upgrade(ctx, ex, lt, r, leg.pool, host, path, query)
		return
	}
	d.forward(ctx, ex, lt, r, leg.pool, host, path, query, maxBody)
}

// prepareBody reads up to bufferBodyLimit of the request body. A body that
// ends within it is sent with a Content-Length and can be replayed on a
// retry; a broken chunked body is refused before any backend sees it.
// Longer bodies are streamed.
func (d *Dataplane) prepareBody(ctx *fasthttp.RequestCtx, ex *exchange, maxBody int64, idle idleDeadline) (streamed bool, status int) {
	ex.body = ex.body[:0]
	cl := ctx.Request.Header.ContentLength()
	if cl == 0 || cl == -2 {
		return false, 0
	}
	src := ctx.RequestBodyStream()
	if src == nil {
		ex.body = append(ex.body[:0], ctx.Request.Body()...)
		return false, 0
	}
	if cap(ex.body) < bufferBodyLimit+1 {
		ex.body = make([]byte, 0, bufferBodyLimit+1)
	}
	buf := ex.body[:bufferBodyLimit+1]
	n := 0
	var err error
	for n < len(buf) && err == nil {
		var m int
		idle.arm()
		m, err = src.Read(buf[n:])
		n += m
	}
	ex.body = buf[:n]
	if int64(n) > maxBody {
		return false, fasthttp.StatusRequestEntityTooLarge
	}
	switch {
	case err == io.EOF && cl >= 0 && n != cl:
		// The client went away before sending the Content-Length it
		// announced; the stream reports that as a plain EOF. Forwarding
		// what arrived would hand the backend a truncated body as whole.
		return false, fasthttp.StatusBadRequest
	case err == io.EOF:
		return false, 0
	case err != nil:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false, fasthttp.StatusRequestTimeout
		}
		return false, fasthttp.StatusBadRequest
	}
	ex.stream = bodyReader{idle: idle, prefix: ex.body, rest: src, read: 0, limit: maxBody, length: int64(cl)}
	return true, 0
}

func (d *Dataplane) forward(ctx *fasthttp.RequestCtx, ex *exchange, lt *listenerTable, r *route, p *pool, host, path, query []byte, maxBody int64) {
	streamed, status := d.prepareBody(ctx, ex, maxBody,
		idleDeadline{ctx: ctx, idle: r.idleTimeout, limit: ex.start.Add(lt.limits.readTimeout)})
	if status != 0 {
		ctx.SetConnectionClose()
		d.errorResponse(ctx, ex, status, "client_body")
		return
	}
	out := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(out)
	d.buildRequest(ctx, ex, out, lt, r, host, path, query)
	idempotent := isIdempotentMethod(ex.view.method)
	key := d.hashKey(ctx, p, ex)
	ps := p.state
	ps.active.Add(1)
	defer ps.active.Add(-1)

	// The backend answers into resp, not ctx.Response, so that its body
	// stream can be handed to the client through ex.respBody, which sees
	// how the body ends.
	resp := fasthttp.AcquireResponse()
	defer func() {
		if !ex.streaming {
			fasthttp.ReleaseResponse(resp)
			ex.lease.end(false)
		}
	}()
	for try := 0; try <= r.retry.attempts; try++ {
		if try > 0 {
			budget := max(minRetryConcurrency, ps.active.Load()*int64(r.retry.budgetPercent)/100)
			if ps.retries.Add(1) > budget {
				ps.retries.Add(-1)
				d.metrics.retryBudget.WithLabelValues(p.name).Inc()
				break
			}
			ex.retries++
			d.metrics.retries.WithLabelValues(p.name).Inc()
		}
		cand := p.candidates(d.health, &ex.sc, ex.tried)
		if len(cand) == 0 {
			if try > 0 {
				ps.retries.Add(-1)
				break
			}
			d.errorResponse(ctx, ex, fasthttp.StatusServiceUnavailable, "no_healthy_backend")
			return
		}
		idx := p.pick(cand, key, &ex.sc)
		b := &p.backends[idx]
		ex.tried = append(ex.tried, idx)
		ex.backend = b.addr
		if len(out.Header.Host()) == 0 {
			out.Header.SetHost(b.addr)
		}
		if streamed {
			out.SetBodyStream(&ex.stream, ctx.Request.Header.ContentLength())
		} else if len(ex.body) > 0 {
			out.SetBodyRaw(ex.body)
		}
		ex.bobs = b.st.obs
		b.st.active.Add(1)
		sent := time.Now()
		err := upstreamRoundTrip(d.upstreamClient(ctx, b.st, r.connectTimeout), out, resp, sent, r.requestTimeout, &ex.lease)
		ex.upstreamTime = time.Since(sent)
		b.st.active.Add(-1)
		ex.upstream, ex.connect = nil, 0
		if ua, ok := resp.RemoteAddr().(*upstreamAddr); ok {
			ex.upstream, ex.connect = ua, ua.claimDial()
		}
		if try > 0 {
			ps.retries.Add(-1)
		}
		if err == nil {
			code := resp.StatusCode()
			b.st.obs.response(code, ex.upstreamTime)
			if code >= 500 {
				d.health.Observe(p.name, b.addr, health.Status5xx)
			} else {
				d.health.Observe(p.name, b.addr, health.Success)
			}
			replayable := !streamed || !ex.stream.consumed
			if try < r.retry.attempts && idempotent && replayable && retryStatus(r.retry.statuses, code) {
				_ = resp.CloseBodyStream()
				ex.lease.end(false)
				continue
			}
			d.takeResponse(ctx, ex, resp)
			d.finishResponse(ctx, ex, r)
			return
		}
		kind, status := d.upstreamFailed(ex, p, b, err, &ex.stream)
		if status == fasthttp.StatusRequestEntityTooLarge || kind == "client_body" {
			resp.Reset()
			ctx.SetConnectionClose()
			d.errorResponse(ctx, ex, status, kind)
			return
		}
		replayable := !streamed || !ex.stream.consumed
		retry := false
		switch kind {
		case "connect", "conn_limit":
			retry = r.retry.onConnect && replayable
		case "timeout":
			retry = r.retry.onTimeout && idempotent && replayable
		case "reset":
			retry = r.retry.onReset && idempotent && replayable
		}
		if !retry || try == r.retry.attempts {
			resp.Reset()
			d.errorResponse(ctx, ex, status, kind)
			return
		}
		resp.Reset()
	}
	resp.Reset()
	if ex.kind == "" {
		ex.kind = "retry_budget"
	}
	d.errorResponse(ctx, ex, fasthttp.StatusBadGateway, ex.kind)
}

// upstreamFailed records a failed exchange with backend b of pool p (the
// exchange's error kind, the error metric, the backend's failure count and
// passive health) and returns the kind and the status for the client.
func (d *Dataplane) upstreamFailed(ex *exchange, p *pool, b *poolBackend, err error, body *bodyReader) (kind string, status int) {
	kind, status, outcome := classify(err, body)
	ex.kind = kind
	d.metrics.upstreamErrors.WithLabelValues(p.name, kind).Inc()
	b.st.obs.failure(kind)
	if outcome != health.Success {
		d.health.Observe(p.name, b.addr, outcome)
	}
	return kind, status
}

// classify maps an upstream error to a metric kind, the client status and
// the passive health outcome.
func classify(err error, body *bodyReader) (kind string, status int, o health.Outcome) {
	var de *dialError
	switch {
	case body.err == errBodyTooLarge:
		return "body_too_large", fasthttp.StatusRequestEntityTooLarge, health.Success
	case body.err == errClientTimeout:
		return "client_body", fasthttp.StatusRequestTimeout, health.Success
	case body.err != nil:
		return "client_body", fasthttp.StatusBadRequest, health.Success
	case errors.As(err, &de):
		var ne net.Error
		if errors.As(de.err, &ne) && ne.Timeout() {
			return "connect", fasthttp.StatusGatewayTimeout, health.ConnectError
		}
		return "connect", fasthttp.StatusBadGateway, health.ConnectError
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return "conn_limit", fasthttp.StatusServiceUnavailable, health.Success
	case errors.Is(err, fasthttp.ErrTimeout):
		return "timeout", fasthttp.StatusGatewayTimeout, health.Timeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout", fasthttp.StatusGatewayTimeout, health.Timeout
	}
	return "reset", fasthttp.StatusBadGateway, health.Reset
}

func retryStatus(statuses []int, code int) bool {
	for _, s := range statuses {
		if s == code {
			return true
		}
	}
	return false
}

func isIdempotentMethod(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE":
		return true
	}
	return false
}

func (d *Dataplane) hashKey(ctx *fasthttp.RequestCtx, p *pool, ex *exchange) []byte {
	if p.balancer != "hash" {
		return nil
	}
	switch {
	case p.hash.Header != "":
		if v, ok := peekHeader(&ctx.Request.Header, p.hash.Header); ok {
			return v
		}
	case p.hash.Cookie != "":
		if v := ctx.Request.Header.Cookie(p.hash.Cookie); len(v) > 0 {
			return v
		}
	case p.hash.ClientIP:
		ex.valBuf = appendClientIP(ex.valBuf[:0], ctx)
		return ex.valBuf
	}
	return nil
}

func appendClientIP(dst []byte, ctx *fasthttp.RequestCtx) []byte {
	if ta, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap().AppendTo(dst)
		}
	}
	if a, ok := netip.AddrFromSlice(ctx.RemoteIP()); ok {
		return a.Unmap().AppendTo(dst)
	}
	return append(dst, ctx.RemoteIP().String()...)
}

// finishResponse makes the backend's response the client's: hop-by-hop
// fields out, the route's changes in, Via added.
func (d *Dataplane) finishResponse(ctx *fasthttp.RequestCtx, ex *exchange, r *route) {
	h := &ctx.Response.Header
	cleanResponseHeader(h, ex, r.respRemove)
	d.addResponseHeaders(ctx, ex, r)
	ex.valBuf = ex.valBuf[:0]
	if v := peekResponseHeader(h, "via"); len(v) > 0 {
		ex.valBuf = append(append(ex.valBuf, v...), ", "...)
		h.Del("Via")
		h.Del("via")
	}
	ex.valBuf = append(ex.valBuf, "1.1 rafter"...)
	h.SetBytesV("Via", ex.valBuf)
}

func (d *Dataplane) addResponseHeaders(ctx *fasthttp.RequestCtx, ex *exchange, r *route) {
	for _, kv := range r.respAdd {
		ctx.Response.Header.Set(kv.key, kv.value)
	}
}

func peekResponseHeader(h *fasthttp.ResponseHeader, lname string) []byte {
	for k, v := range h.All() {
		if equalFoldLower(k, lname) {
			return v
		}
	}
	return nil
}

// errorResponse answers with a short plain-text error the proxy generated.
func (d *Dataplane) errorResponse(ctx *fasthttp.RequestCtx, ex *exchange, status int, kind string) {
	if ex.kind == "" {
		ex.kind = kind
	}
	// Reset clears a Connection: close set before the error was chosen
	// (framing errors, cut bodies); keep it.
	closeConn := ctx.Response.ConnectionClose()
	ctx.Response.Reset()
	if closeConn {
		ctx.Response.SetConnectionClose()
	}
	ctx.Response.Header.SetNoDefaultContentType(true)
	ctx.SetStatusCode(status)
	ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
	ctx.Response.SetBodyString(fasthttp.StatusMessage(status) + "\n")
}

func (d *Dataplane) redirect(ctx *fasthttp.RequestCtx, ex *exchange, r *route, host, path, query []byte) {
	rd := &r.redirect
	b := ex.uriBuf[:0]
	switch {
	case rd.Scheme != "":
		b = append(b, rd.Scheme...)
	case ctx.IsTLS():
		b = append(b, "https"...)
	default:
		b = append(b, "http"...)
	}
	b = append(b, "://"...)
	if rd.Host != "" {
		b = append(b, rd.Host...)
	} else {
		h := host
		if rd.Port != 0 {
			if i := lastColonOutsideBrackets(h); i >= 0 {
				h = h[:i]
			}
		}
		b = append(b, h...)
	}
	if rd.Port != 0 {
		b = append(b, ':')
		b = fasthttp.AppendUint(b, rd.Port)
	}
	if rd.Path != "" {
		b = append(b, rd.Path...)
	} else {
		b = append(b, path...)
	}
	if len(query) > 0 {
		b = append(append(b, '?'), query...)
	}
	ex.uriBuf = b
	ctx.Response.Header.SetBytesV("Location", b)
	ctx.SetStatusCode(rd.Code)
	d.addResponseHeaders(ctx, ex, r)
}

func lastColonOutsideBrackets(h []byte) int {
	for i := len(h) - 1; i >= 0; i-- {
		switch h[i] {
		case ':':
			return i
		case ']':
			return -1
		}
	}
	return -1
}
