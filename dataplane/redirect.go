package dataplane

import (
	"bytes"
	"strconv"

	"github.com/rafterlb/rafter/fsm"
	"github.com/valyala/fasthttp"
)

// acmeChallengePrefix is where ACME http-01 challenges are answered; an
// https_redirect listener passes these requests on instead of redirecting
// them, so certificates can be issued behind it.
const acmeChallengePrefix = "/.well-known/acme-challenge/"

// listenerHandler is the request handler of listener name: the proxy,
// behind an http->https redirect or followed by HSTS when spec asks.
func (d *Dataplane) listenerHandler(name string, spec *fsm.ListenerSpec) fasthttp.RequestHandler {
	h := func(ctx *fasthttp.RequestCtx) { d.handle(ctx, name) }
	if r := spec.HTTPSRedirect; r != nil {
		proxy := h
		redirect := httpsRedirect(r)
		h = func(ctx *fasthttp.RequestCtx) {
			if bytes.HasPrefix(ctx.Path(), []byte(acmeChallengePrefix)) {
				proxy(ctx)
				return
			}
			redirect(ctx)
		}
	}
	if t := spec.TLS; t != nil && t.HSTS != nil {
		proxy := h
		value := []byte(t.HSTS.HeaderValue())
		h = func(ctx *fasthttp.RequestCtx) {
			proxy(ctx)
			if !ctx.Hijacked() {
				ctx.Response.Header.SetCanonical([]byte("Strict-Transport-Security"), value)
			}
		}
	}
	return h
}

// httpsRedirect answers every request with a redirect to the same host,
// path and query over https.
func httpsRedirect(r *fsm.HTTPSRedirect) fasthttp.RequestHandler {
	code := r.Code
	if code == 0 {
		code = fasthttp.StatusMovedPermanently
	}
	portSuffix := ""
	if r.Port != 0 && r.Port != 443 {
		portSuffix = ":" + strconv.Itoa(r.Port)
	}
	return func(ctx *fasthttp.RequestCtx) {
		host, ok := redirectHost(ctx.Host())
		if !ok {
			ctx.Response.Header.SetNoDefaultContentType(true)
			ctx.Error("Bad Request\n", fasthttp.StatusBadRequest)
			return
		}
		loc := make([]byte, 0, len("https://")+len(host)+len(portSuffix)+len(ctx.RequestURI()))
		loc = append(loc, "https://"...)
		loc = append(loc, host...)
		loc = append(loc, portSuffix...)
		loc = append(loc, ctx.URI().RequestURI()...)
		ctx.Response.Header.SetNoDefaultContentType(true)
		ctx.Response.Header.SetBytesV("Location", loc)
		ctx.SetStatusCode(code)
	}
}

// redirectHost is the Host header without its port, if it is a plain
// host name or IP literal (so a Location header is never built from
// anything else).
func redirectHost(h []byte) ([]byte, bool) {
	if len(h) == 0 || len(h) > 255 {
		return nil, false
	}
	if h[0] == '[' { // an IPv6 literal, with an optional port
		end := bytes.IndexByte(h, ']')
		if end < 0 {
			return nil, false
		}
		for _, c := range h[1:end] {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.') {
				return nil, false
			}
		}
		return h[:end+1], true
	}
	if i := bytes.IndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	if len(h) == 0 {
		return nil, false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return nil, false
		}
	}
	return h, true
}
