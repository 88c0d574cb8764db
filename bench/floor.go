package bench

import (
	"net"
	"runtime/debug"
	"time"

	"github.com/valyala/fasthttp"
)

// The fasthttp floor is the least a reverse proxy built on fasthttp does,
// run as the proxy Floor: read the request, send it to the backend on a
// pooled keep-alive connection, pass the answer back, and add
// X-Forwarded-For as the HAProxy configuration does. No routing, no header
// hygiene beyond dropping the client's Connection field, no metrics,
// retries or health. It measures what the HTTP library and the Go runtime
// cost on this machine, so that rafter's distance from HAProxy splits into
// the library's share (floor ÷ HAProxy) and rafter's own (rafter ÷ floor).

// FloorHandler proxies every request to backend (host:port).
func FloorHandler(backend string, timeout time.Duration, maxConns int) fasthttp.RequestHandler {
	hc := &fasthttp.HostClient{
		Addr:                          backend,
		MaxConns:                      maxConns,
		ReadTimeout:                   timeout,
		WriteTimeout:                  timeout,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		NoDefaultUserAgentHeader:      true,
	}
	return func(ctx *fasthttp.RequestCtx) {
		req := &ctx.Request
		req.Header.Del("Connection")
		if ta, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
			req.Header.Add("X-Forwarded-For", ta.IP.String())
		}
		if err := hc.Do(req, &ctx.Response); err != nil {
			ctx.Response.Reset()
			ctx.Error("bad gateway", fasthttp.StatusBadGateway)
			return
		}
		ctx.Response.Header.Del("Connection")
	}
}

// FloorServer serves FloorHandler with the client timeouts the other
// proxies are given.
func FloorServer(backend string, timeout, idle time.Duration, maxConns int) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                       FloorHandler(backend, timeout, maxConns),
		ReadTimeout:                   timeout,
		WriteTimeout:                  timeout,
		IdleTimeout:                   idle,
		Concurrency:                   maxConns,
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 true,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: true,
	}
}

// floorVersion names the fasthttp the floor is built with: the harness's
// own, since both build from this module.
func floorVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/valyala/fasthttp" {
				return "fasthttp " + m.Version
			}
		}
	}
	return "fasthttp"
}
