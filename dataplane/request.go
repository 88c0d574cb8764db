package dataplane

import (
	"github.com/valyala/fasthttp"
)

// buildRequest fills out, the request sent upstream, from the client's
// request: the raw path (rewritten only by an explicit prefix rewrite),
// every end-to-end field in the order received with its original case, the
// X-Forwarded-* fields and Via. Nothing is added that the client did not
// send (no default Content-Type or User-Agent).
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

	ex.tokens = ex.tokens[:0]
	for k, v := range in.AllInOrder() {
		if equalFoldLower(k, "connection") {
			ex.tokens = connectionTokens(ex.tokens, v)
		}
	}
	edge := lt.spec.Edge
	xff := ex.valBuf[:0]
	var via []byte
	haveProto, haveHost := false, false
	for k, v := range in.AllInOrder() {
		switch {
		case equalFoldLower(k, "host"), equalFoldLower(k, "content-length"), equalFoldLower(k, "expect"):
			continue
		case isHopByHop(k), containsFold(ex.tokens, k), containsLower(r.reqRemove, k):
			continue
		case equalFoldLower(k, "x-forwarded-for"):
			if !edge {
				if len(xff) > 0 {
					xff = append(xff, ", "...)
				}
				xff = append(xff, v...)
			}
			continue
		case equalFoldLower(k, "x-forwarded-proto"):
			if edge {
				continue
			}
			haveProto = true
		case equalFoldLower(k, "x-forwarded-host"):
			if edge {
				continue
			}
			haveHost = true
		case equalFoldLower(k, "via"):
			via = v
			continue
		}
		out.Header.AddBytesKV(k, v)
	}
	if len(xff) > 0 {
		xff = append(xff, ", "...)
	}
	xff = appendClientIP(xff, ctx)
	ex.valBuf = xff
	out.Header.SetBytesV("X-Forwarded-For", xff)
	if !haveProto {
		if ctx.IsTLS() {
			out.Header.Set("X-Forwarded-Proto", "https")
		} else {
			out.Header.Set("X-Forwarded-Proto", "http")
		}
	}
	if !haveHost && len(host) > 0 {
		out.Header.SetBytesV("X-Forwarded-Host", host)
	}
	if len(via) > 0 {
		b := append(ex.keyBuf[:0], via...)
		b = append(b, ", 1.1 rafter"...)
		ex.keyBuf = b
		out.Header.SetBytesV("Via", b)
	} else {
		out.Header.Set("Via", "1.1 rafter")
	}
	for _, kv := range r.reqAdd {
		out.Header.Set(kv.key, kv.value)
	}
}

// isUpgrade reports whether the client asks for a protocol upgrade
// (WebSocket): an Upgrade field named in Connection.
func isUpgrade(h *fasthttp.RequestHeader, ex *exchange) bool {
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
