package dataplane

import (
	"encoding/hex"
	"math/rand/v2"
	"time"

	"github.com/valyala/fasthttp"
)

// MaxRequestIDLen bounds a client's X-Request-Id: a longer one, or one with
// a byte outside [A-Za-z0-9._:/+=@-], is replaced by one the proxy makes.
const MaxRequestIDLen = 128

// Span is one proxied request as a trace span: the proxy hop of a W3C
// trace. Its strings come from the compiled table or are constants, so
// building one does not allocate.
type Span struct {
	TraceID [16]byte
	SpanID  [8]byte
	// ParentID is the client's span; zero when the trace started here.
	ParentID [8]byte
	Start    time.Time
	End      time.Time
	Method   string // an HTTP method, or "_OTHER"
	Route    string
	Pool     string
	Backend  string
	Status   int
	// Error is the failure kind ("connect", "timeout", "no_route", ...),
	// empty on success.
	Error string
}

// SpanSink receives the span of every sampled request (the traceparent's
// sampled flag, set on traces the proxy starts). ExportSpan is called on
// the request path: it must neither block nor keep s, and reports false
// when it had to drop the span.
type SpanSink interface {
	ExportSpan(s *Span) bool
}

// traceContext is one request's W3C trace context.
type traceContext struct {
	traceID [16]byte
	// parentID is the client's span id (zero when the trace started here);
	// spanID is the proxy hop's own.
	parentID [8]byte
	spanID   [8]byte
	flags    byte
	// incoming: the client sent a valid traceparent, so its tracestate
	// goes on with it; otherwise tracestate is dropped.
	incoming bool
}

// sampled reports the traceparent's sampled flag.
func (tc *traceContext) sampled() bool { return tc.flags&1 == 1 }

// scanTrace reads the client's X-Request-Id and traceparent in one pass
// over the header and fills ex.reqID and ex.trace: each taken when
// present and well formed, made otherwise. A request id the proxy makes is
// the trace id, so the two correlate in logs.
func scanTrace(h *fasthttp.RequestHeader, ex *exchange) {
	var tp, id []byte
	tps, ids := 0, 0
	for k, v := range h.All() {
		switch len(k) {
		case 11:
			if equalFoldLower(k, "traceparent") {
				tp = v
				tps++
			}
		case 12:
			if equalFoldLower(k, "x-request-id") {
				id = v
				ids++
			}
		}
	}
	// More than one traceparent is invalid (W3C Trace Context 3.2); of
	// several request ids none can be told to be the right one.
	if tps == 1 && parseTraceparent(tp, &ex.trace) {
		ex.trace.incoming = true
	} else {
		ex.trace = traceContext{flags: 1}
		fillRandom(ex.trace.traceID[:])
	}
	fillRandom(ex.trace.spanID[:])
	if ids == 1 && validRequestID(id) {
		ex.reqID = append(ex.reqID[:0], id...)
	} else {
		ex.reqID = hex.AppendEncode(ex.reqID[:0], ex.trace.traceID[:])
	}
}

// validRequestID: 1 to MaxRequestIDLen bytes, each a letter, a digit or
// one of ._:/+=@- (what UUIDs, ULIDs, base64 and the usual generators
// produce; nothing that could split a header or a log line).
func validRequestID(v []byte) bool {
	if len(v) == 0 || len(v) > MaxRequestIDLen {
		return false
	}
	for _, c := range v {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == ':' || c == '/' || c == '+' || c == '=' || c == '@':
		default:
			return false
		}
	}
	return true
}

// parseTraceparent parses a W3C traceparent
// (version "-" trace-id "-" parent-id "-" flags, lower-case hex) into tc.
// Version 00 must be exactly 55 bytes; a later version may carry more
// fields after a dash (forward compatibility), version ff is invalid, and
// all-zero ids are invalid.
func parseTraceparent(v []byte, tc *traceContext) bool {
	if len(v) < 55 || (len(v) > 55 && v[55] != '-') || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return false
	}
	var ver [1]byte
	if !decodeLowerHex(ver[:], v[0:2]) || ver[0] == 0xff || (ver[0] == 0 && len(v) != 55) {
		return false
	}
	var flags [1]byte
	if !decodeLowerHex(tc.traceID[:], v[3:35]) || !decodeLowerHex(tc.parentID[:], v[36:52]) ||
		!decodeLowerHex(flags[:], v[53:55]) {
		return false
	}
	if isZero(tc.traceID[:]) || isZero(tc.parentID[:]) {
		return false
	}
	tc.flags = flags[0]
	return true
}

// decodeLowerHex decodes src (lower-case hex only, as W3C requires) into
// dst, which must be half its length.
func decodeLowerHex(dst, src []byte) bool {
	for i := range dst {
		hi, ok1 := lowerHexVal(src[2*i])
		lo, ok2 := lowerHexVal(src[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func lowerHexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// fillRandom fills b with random bytes, never all zero (an invalid id).
func fillRandom(b []byte) {
	for {
		for i := 0; i < len(b); i += 8 {
			r := rand.Uint64()
			for j := i; j < len(b) && j < i+8; j++ {
				b[j] = byte(r)
				r >>= 8
			}
		}
		if !isZero(b) {
			return
		}
	}
}

// appendTraceparent appends the traceparent sent upstream: the request's
// trace id and flags with parent, the span id the backend's span will
// name as its parent.
func appendTraceparent(dst []byte, tc *traceContext, parent *[8]byte) []byte {
	dst = append(dst, "00-"...)
	dst = hex.AppendEncode(dst, tc.traceID[:])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, parent[:])
	dst = append(dst, '-')
	flags := [1]byte{tc.flags}
	return hex.AppendEncode(dst, flags[:])
}

// upstreamParent is the span id a backend sees as its parent: the proxy
// hop's span when it is exported (then it exists in the trace), else the
// client's own span (the proxy names no span nobody will see); for a trace
// started here, the proxy hop's.
func (d *Dataplane) upstreamParent(tc *traceContext) *[8]byte {
	if tc.incoming && (d.opts.Spans == nil || !tc.sampled()) {
		return &tc.parentID
	}
	return &tc.spanID
}

// methodName returns the method as a constant string so that a span does
// not allocate for it.
func methodName(m []byte) string {
	switch string(m) {
	case fasthttp.MethodGet:
		return fasthttp.MethodGet
	case fasthttp.MethodHead:
		return fasthttp.MethodHead
	case fasthttp.MethodPost:
		return fasthttp.MethodPost
	case fasthttp.MethodPut:
		return fasthttp.MethodPut
	case fasthttp.MethodPatch:
		return fasthttp.MethodPatch
	case fasthttp.MethodDelete:
		return fasthttp.MethodDelete
	case fasthttp.MethodOptions:
		return fasthttp.MethodOptions
	case fasthttp.MethodTrace:
		return fasthttp.MethodTrace
	case fasthttp.MethodConnect:
		return fasthttp.MethodConnect
	}
	return "_OTHER"
}
