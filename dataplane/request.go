package dataplane

import (
	"github.com/valyala/fasthttp"
)

// buildRequest fills out, the request sent upstream, from the client's
// request: the raw path (rewritten only by an explicit prefix rewrite),
// every end-to-end field in the order received with its original case, the
// X-Forwarded-* fields and Via. Nothing is added that the client did not
// send (no default Content-Type or User-Agent). ex.tokens must hold the
// client's Connection tokens (scanConnection).
func (d *Dataplane) buildRequest(ctx *fasthttp.RequestCtx, ex *exchange, out *fasthttp.Request, lt *listenerTable, r *route, host, path, query []byte) {
	in := &ctx.Request.Header
	out.Header.DisableNormalizing()
	out.Header.SetNoDefaultContentType(true)
	out.UseHostHeader = true
	out.Header.SetMethodBytes(in.Method())

	u := ex.uriBuf[:0]
	if r.rewrite {
		rest := path[len(r.path):]
		u = append(u, r.rewritePrefix...)
		if len(u) > 0 && u[len(u)-1] == '/' && len(rest) > 0 && rest[0] == '/' {
			rest = rest[1:]
		}
		u = append(u, rest...)
	} else {
		u = append(u, path...)
	}
	if len(u) == 0 {
		u = append(u, '/')
	}
	if len(query) > 0 {
		u = append(append(u, '?'), query...)
	}
	ex.uriBuf = u
	out.Header.SetRequestURIBytes(u)

	switch {
	case r.rewriteHost != "":
		out.Header.SetHost(r.rewriteHost)
	case len(host) > 0:
		out.Header.SetHostBytes(host)
	}

	edge := lt.spec.Edge
	xff := ex.valBuf[:0]
	var via []byte
	haveProto, haveHost := false, false
	for k, v := range in.AllInOrder() {
		kind := requestFieldKind(k)
		if kind == fieldDrop ||
			(len(ex.tokens) > 0 && containsFold(ex.tokens, k)) ||
			(len(r.reqRemove) > 0 && containsLower(r.reqRemove, k)) {
			continue
		}
		switch kind {
		case fieldXFF:
			if !edge {
				if len(xff) > 0 {
					xff = append(xff, ", "...)
				}
				xff = append(xff, v...)
			}
			continue
		case fieldXFProto:
			if edge {
				continue
			}
			haveProto = true
		case fieldXFHost:
			if edge {
				continue
			}
			haveHost = true
		case fieldVia:
			via = v
			continue
		case fieldForwardedAlias:
			if edge {
				continue
			}
		case fieldTrace:
			continue
		case fieldTraceState:
			if !ex.trace.incoming {
				continue
			}
		}
		out.Header.AddBytesKV(k, v)
	}
	// None of the fields below was copied above, so adding them appends
	// exactly as setting them would, without searching the header.
	if len(xff) > 0 {
		xff = append(xff, ", "...)
	}
	xff = appendClientIP(xff, ctx)
	ex.valBuf = xff
	out.Header.AddBytesV("X-Forwarded-For", xff)
	if !haveProto {
		if ctx.IsTLS() {
			out.Header.Add("X-Forwarded-Proto", "https")
		} else {
			out.Header.Add("X-Forwarded-Proto", "http")
		}
	}
	if !haveHost && len(host) > 0 {
		out.Header.AddBytesV("X-Forwarded-Host", host)
	}
	if len(via) > 0 {
		b := append(ex.keyBuf[:0], via...)
		b = append(b, ", 1.1 rafter"...)
		ex.keyBuf = b
		out.Header.AddBytesV("Via", b)
	} else {
		out.Header.Add("Via", "1.1 rafter")
	}
	out.Header.AddBytesV("X-Request-Id", ex.reqID)
	ex.tpBuf = appendTraceparent(ex.tpBuf[:0], &ex.trace, d.upstreamParent(&ex.trace))
	out.Header.AddBytesV("traceparent", ex.tpBuf)
	for _, kv := range r.reqAdd {
		out.Header.Set(kv.key, kv.value)
	}
}

// scanConnection collects the client's Connection tokens into ex.tokens
// (for buildRequest) and reports whether the client asks for a protocol
// upgrade (WebSocket): an Upgrade field named in Connection.
func scanConnection(h *fasthttp.RequestHeader, ex *exchange) (upgrade bool) {
	ex.tokens = ex.tokens[:0]
	hasUpgrade := false
	for k, v := range h.AllInOrder() {
		switch {
		case equalFoldLower(k, "connection"):
			ex.tokens = connectionTokens(ex.tokens, v)
		case equalFoldLower(k, "upgrade"):
			hasUpgrade = len(v) > 0
		}
	}
	return hasUpgrade && containsFold(ex.tokens, []byte("upgrade"))
}

// What buildRequest does with a client field, by name.
const (
	fieldCopy    = iota // end-to-end: forwarded unless Connection or the route removes it
	fieldDrop           // hop-by-hop or re-framed: never forwarded as received
	fieldXFF            // X-Forwarded-For: merged
	fieldXFProto        // X-Forwarded-Proto
	fieldXFHost         // X-Forwarded-Host
	fieldVia            // Via: extended
	// Forwarded (RFC 7239) and X_Forwarded_* spellings, which many
	// frameworks read as X-Forwarded-*: dropped on edge listeners, where
	// the client cannot be trusted to supply them.
	fieldForwardedAlias
	// X-Request-Id and traceparent: replaced by the values the proxy
	// took or made (scanTrace).
	fieldTrace
	// tracestate: forwarded only beside a valid client traceparent.
	fieldTraceState
)

// requestFieldKind classifies a field name whatever its case. The switch
// on length keeps the usual field to one or two comparisons.
func requestFieldKind(k []byte) int {
	switch len(k) {
	case 2:
		if equalFoldLower(k, "te") {
			return fieldDrop
		}
	case 3:
		if equalFoldLower(k, "via") {
			return fieldVia
		}
	case 4:
		if equalFoldLower(k, "host") {
			return fieldDrop
		}
	case 6:
		if equalFoldLower(k, "expect") {
			return fieldDrop
		}
	case 7:
		if equalFoldLower(k, "trailer") || equalFoldLower(k, "upgrade") {
			return fieldDrop
		}
	case 10:
		if equalFoldLower(k, "connection") || equalFoldLower(k, "keep-alive") {
			return fieldDrop
		}
		if equalFoldLower(k, "tracestate") {
			return fieldTraceState
		}
	case 11:
		if equalFoldLower(k, "traceparent") {
			return fieldTrace
		}
	case 12:
		if equalFoldLower(k, "x-request-id") {
			return fieldTrace
		}
	case 14:
		if equalFoldLower(k, "content-length") {
			return fieldDrop
		}
	case 9:
		if equalFoldLower(k, "forwarded") {
			return fieldForwardedAlias
		}
	case 15:
		switch {
		case equalFoldLower(k, "x-forwarded-for"):
			return fieldXFF
		case equalFoldDash(k, "x-forwarded-for"):
			return fieldForwardedAlias
		}
	case 16:
		switch {
		case equalFoldLower(k, "proxy-connection"):
			return fieldDrop
		case equalFoldLower(k, "x-forwarded-host"):
			return fieldXFHost
		case equalFoldDash(k, "x-forwarded-host"):
			return fieldForwardedAlias
		}
	case 17:
		switch {
		case equalFoldLower(k, "transfer-encoding"):
			return fieldDrop
		case equalFoldLower(k, "x-forwarded-proto"):
			return fieldXFProto
		case equalFoldDash(k, "x-forwarded-proto"):
			return fieldForwardedAlias
		}
	case 18:
		if equalFoldLower(k, "proxy-authenticate") {
			return fieldDrop
		}
	case 19:
		if equalFoldLower(k, "proxy-authorization") {
			return fieldDrop
		}
	}
	return fieldCopy
}

// equalFoldDash is equalFoldLower with '_' in b matching '-' in lower.
func equalFoldDash(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
