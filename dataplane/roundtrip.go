package dataplane

import (
	"bufio"
	"errors"
	"io"
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// pooledConn is what a HostClient's pooled connection (a type fasthttp
// does not export) offers; transport is generic over it so that it can
// hold one without naming its type.
type pooledConn interface {
	comparable
	Conn() net.Conn
	LastUseTime() time.Time
}

// transport sends one attempt of a request over a backend HostClient's
// pooled connections. It does what fasthttp's own transport does for a
// streamed response body, minus that transport's allocations per response
// (a body wrapper and three closures): a body still to be read keeps its
// connection in an upstreamLease, a value the exchange holds, which puts
// the connection back in the pool or closes it once the body is done. It
// also sets the connection's read and write deadlines with one call, and
// not at all when the previous request on the connection left them
// within deadlineSlack of the time wanted.
//
// It is the HostClient's Transport so that anything calling the client's
// Do still works (through fasthttp's transport); the proxy calls
// roundTrip.
type transport[C pooledConn] struct {
	hc      *fasthttp.HostClient
	acquire func(timeout time.Duration, connectionClose bool) (C, error)
	release func(C)
	discard func(C)
	// stale, unless nil, counts a request sent again because its
	// connection had been closed by the backend.
	stale func()
}

// newTransport is called as newTransport(hc, hc.AcquireConn,
// hc.ReleaseConn, hc.CloseConn): the method values fix C.
func newTransport[C pooledConn](hc *fasthttp.HostClient, acquire func(time.Duration, bool) (C, error), release, discard func(C)) *transport[C] {
	return &transport[C]{hc: hc, acquire: acquire, release: release, discard: discard}
}

// RoundTrip implements fasthttp.RoundTripper for callers of the
// HostClient's Do, which the proxy does not use.
func (t *transport[C]) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (bool, error) {
	return fasthttp.DefaultTransport.RoundTrip(hc, req, resp)
}

// leaseTripper is the round trip of transport, whatever its C.
type leaseTripper interface {
	roundTrip(req *fasthttp.Request, resp *fasthttp.Response, start time.Time, timeout time.Duration, lease *upstreamLease) error
}

// upstreamRoundTrip sends req to hc's backend and reads the response head
// into resp, with timeout for the whole exchange counted from start (the
// caller's clock reading, the wait for a free connection included, as
// with HostClient.Do). A response body left to
// stream holds its connection in lease until lease.end.
func upstreamRoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response, start time.Time, timeout time.Duration, lease *upstreamLease) error {
	if t, ok := hc.Transport.(leaseTripper); ok {
		return t.roundTrip(req, resp, start, timeout, lease)
	}
	req.SetTimeout(timeout)
	return hc.Do(req, resp)
}

// deadlineSlack is the fraction of a timeout by which a connection's
// deadline may fall short of the time wanted and be left as it is:
// requests in quick succession on one connection then set it once per
// timeout/64 instead of twice per request.
const deadlineSlack = 64

func (t *transport[C]) roundTrip(req *fasthttp.Request, resp *fasthttp.Response, start time.Time, timeout time.Duration, lease *upstreamLease) error {
	// A lease left from an earlier attempt would otherwise be lost with
	// its connection slot.
	lease.end(false)
	for stale := 0; ; stale++ {
		again, err := t.try(req, resp, start, timeout, lease, stale < staleTries)
		if !again || stale == staleTries {
			return err
		}
		if t.stale != nil {
			t.stale()
		}
		if stale == 0 {
			// The pool's other idle connections are likely as old, or
			// the backend restarted: let the next try dial.
			t.hc.CloseIdleConnections()
		}
	}
}

// staleTries is how many times a request is sent again because the
// connection it went on had been ended by the backend while it sat in the
// pool (see try).
const staleTries = 2

// try is one round trip on one connection. again reports a failure on a
// connection from the pool that the backend had ended meanwhile (its idle
// timeout is shorter than the pool's, or it restarted), before any byte
// of an answer came, when the request may be sent again on another: an
// idempotent method with a body held in memory, or any request whose
// first write the connection refused (then the backend has none of it).
// That is what net/http's transport does; HAProxy watches its idle
// connections and drops the ones a server closes.
//
// A 408 read on a connection from the pool is taken the same way, for any
// request with its body in memory, unless resend is false (the last try,
// whose 408 the client gets): backends send one unasked on a connection
// they time out (Node.js, Apache), and it lies in the socket before the
// request that reads it. A 408 also says the request was not acted on
// (RFC 9110, 15.5.9), so that request may go again even when it was a
// real answer.
func (t *transport[C]) try(req *fasthttp.Request, resp *fasthttp.Response, start time.Time, timeout time.Duration, lease *upstreamLease, resend bool) (again bool, err error) {
	hc := t.hc
	resp.Reset()
	resp.StreamBody = true
	closeConn := req.ConnectionClose()
	cc, err := t.acquire(timeout, closeConn)
	if err != nil {
		return false, err
	}
	conn := cc.Conn()
	resp.ParseNetConn(conn)
	if err := armDeadline(conn, start, timeout); err != nil {
		t.discard(cc)
		return false, err
	}
	uc, _ := conn.(*upstreamConn)
	lastUse := cc.LastUseTime()
	// A streamed body cannot be sent again; writing the request closes
	// the stream, so it is looked at before.
	streamed := req.IsBodyStream()
	stale := func(err error) bool {
		if uc == nil || lastUse.IsZero() || streamed || uc.got > 0 || isTimeout(err) {
			return false
		}
		return uc.sent == 0 || isIdempotentMethod(req.Header.Method())
	}
	hold := false
	if uc != nil {
		uc.sent, uc.got = 0, 0
		hold = !streamed && uc.startHold(start, lastUse, timeout)
	}
	bw := hc.AcquireWriter(conn)
	err = req.Write(bw)
	if err == nil {
		if hold {
			// A request written in one piece goes out with the
			// response's read (sendread.go).
			uc.holdFlush()
		}
		err = bw.Flush()
		if hold {
			uc.held.hold = false // in case the flush wrote nothing
		}
	}
	hc.ReleaseWriter(bw)
	if err != nil {
		t.discard(cc)
		return stale(err), timeoutAsErrTimeout(err)
	}
	if req.Header.IsHead() {
		resp.SkipBody = true
	}
	resp.Header.DisableNormalizing()
	br := hc.AcquireReader(conn)
	if err := resp.ReadLimitBody(br, hc.MaxResponseBodySize); err != nil {
		hc.ReleaseReader(br)
		t.discard(cc)
		again := stale(err)
		if err == io.EOF {
			return again, fasthttp.ErrConnectionClosed
		}
		return again, timeoutAsErrTimeout(err)
	}
	if resend && resp.StatusCode() == fasthttp.StatusRequestTimeout && !lastUse.IsZero() && !streamed {
		_ = resp.CloseBodyStream()
		hc.ReleaseReader(br)
		t.discard(cc)
		return true, errUnasked408
	}
	reuse := !closeConn && !resp.ConnectionClose()
	if resp.BodyStream() != nil && resp.Header.ContentLength() != 0 {
		*lease = upstreamLease{owner: t, cc: cc, br: br, reuse: reuse}
		return false, nil
	}
	// No body, or an empty one: nothing is left to read, so the
	// connection goes back now and the response carries no stream.
	_ = resp.CloseBodyStream()
	hc.ReleaseReader(br)
	if reuse {
		t.release(cc)
	} else {
		t.discard(cc)
	}
	return false, nil
}

// errUnasked408 is try's error for a 408 on a connection from the pool; the
// request then goes again, so no caller sees it.
var errUnasked408 = errors.New("backend answered 408 on a pooled connection")

func timeoutAsErrTimeout(err error) error {
	if x, ok := err.(interface{ Timeout() bool }); ok && x.Timeout() {
		return fasthttp.ErrTimeout
	}
	return err
}

// armDeadline sets conn's read and write deadlines to timeout after start,
// unless the deadline set last is at most timeout/deadlineSlack earlier
// than that (never later: a shorter timeout is always applied).
func armDeadline(conn net.Conn, start time.Time, timeout time.Duration) error {
	ua, _ := conn.RemoteAddr().(*upstreamAddr)
	var want time.Time
	if timeout > 0 {
		want = start.Add(timeout)
	}
	if ua != nil {
		if want.IsZero() && ua.armed.IsZero() {
			return nil
		}
		if !want.IsZero() && !ua.armed.IsZero() {
			if ahead := want.Sub(ua.armed); ahead >= 0 && ahead <= timeout/deadlineSlack {
				return nil
			}
		}
	}
	if err := conn.SetDeadline(want); err != nil {
		return err
	}
	if ua != nil {
		ua.armed = want
	}
	return nil
}

func (t *transport[C]) endLease(l *upstreamLease, reuse bool) {
	t.hc.ReleaseReader(l.br)
	cc := l.cc.(C)
	if reuse && l.reuse {
		t.release(cc)
	} else {
		t.discard(cc)
	}
}

// upstreamLease is a backend connection held by a response body being
// streamed to the client. Its zero value holds nothing.
type upstreamLease struct {
	owner leaseOwner
	cc    any
	br    *bufio.Reader
	// reuse is false when either side asked to close the connection.
	reuse bool
}

// leaseOwner is the transport a lease's connection came from.
type leaseOwner interface {
	endLease(l *upstreamLease, reuse bool)
}

// end gives the connection back: to the pool when reuse is true (the body
// was read to its end and nothing failed), else it is closed. The
// response whose body read from it must have closed its body stream
// first. end on a lease that holds nothing does nothing.
func (l *upstreamLease) end(reuse bool) {
	if l.owner == nil {
		return
	}
	owner := l.owner
	owner.endLease(l, reuse)
	*l = upstreamLease{}
}

// conn is the leased connection (nil when none is held).
func (l *upstreamLease) conn() net.Conn {
	if c, ok := l.cc.(interface{ Conn() net.Conn }); ok && l.owner != nil {
		return c.Conn()
	}
	return nil
}
