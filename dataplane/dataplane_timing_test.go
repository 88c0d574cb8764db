package dataplane

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// bigConfig has n routes on one listener: exact hosts with two paths each,
// some wildcard hosts and some any-host routes.
func bigConfig(n int) config {
	c := config{
		listeners: map[string]fsm.ListenerSpec{"web": {}},
		pools:     map[string]fsm.PoolSpec{"p": {Backends: []fsm.Backend{{Addr: "127.0.0.1:1"}, {Addr: "127.0.0.1:2"}}}},
		routes:    map[string]fsm.RouteSpec{},
	}
	split := fsm.RouteAction{Split: []fsm.WeightedPool{{Pool: "p", Weight: 1}}}
	for i := 0; i < n; i++ {
		var m fsm.RouteMatch
		switch {
		case i%50 == 0:
			m = fsm.RouteMatch{Hosts: []string{fmt.Sprintf("*.zone%d.example.com", i)}}
		case i%100 == 1:
			m = fsm.RouteMatch{Path: fsm.PathMatch{Prefix: fmt.Sprintf("/global/%d", i)}}
		default:
			m = fsm.RouteMatch{Hosts: []string{fmt.Sprintf("svc%d.example.com", i/2)}, Path: fsm.PathMatch{Prefix: fmt.Sprintf("/api/%d", i%2)}}
		}
		c.routes[fmt.Sprintf("r%05d", i)] = fsm.RouteSpec{Listener: "web", Match: m, Action: split}
	}
	return c
}

func BenchmarkLookup10kRoutes(b *testing.B) {
	tab := compile(bigConfig(10000).build(), newRegistry(nil), "")
	lt := tab.listeners["web"]
	var h fasthttp.RequestHeader
	h.DisableNormalizing()
	h.SetRequestURI("/api/1/users/42?x=1")
	h.SetHost("SVC2501.example.com:8080")
	hostBuf := make([]byte, 0, 256)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, path, query := splitRequestURI(h.RequestURI())
		v := requestView{method: h.Method(), host: normalizeHost(hostBuf, h.Host()), path: path, query: query, hdr: &h}
		if r := lt.lookup(&v); r == nil {
			b.Fatal("no route")
		}
	}
}

func BenchmarkCompile10k(b *testing.B) {
	cfg := bigConfig(10000).build()
	reg := newRegistry(nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		compile(cfg, reg, "")
	}
}

// BenchmarkProxy measures one keep-alive request through the proxy to a
// fasthttp backend, all over in-memory listeners.
func BenchmarkProxy(b *testing.B) {
	backendLn := fasthttputil.NewInmemoryListener()
	backend := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }}
	go func() { _ = backend.Serve(backendLn) }()
	b.Cleanup(func() { _ = backend.Shutdown() })
	proxyLn := fasthttputil.NewInmemoryListener()
	cfg := simpleConfig("backend:80")
	d := startDataplane(b, newFakeSource(cfg.build()), func(o *Options) {
		o.Listen = func(string, int, string) (net.Listener, error) { return proxyLn, nil }
		o.ListenShards = 1 // one in-memory listener
		o.Dial = func(string, time.Duration) (net.Conn, error) { return backendLn.Dial() }
	})
	_ = d
	client := &fasthttp.HostClient{Addr: "proxy", Dial: func(string) (net.Conn, error) { return proxyLn.Dial() }}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://app.example.com/x")
		for pb.Next() {
			if err := client.Do(req, resp); err != nil || resp.StatusCode() != 200 {
				b.Fatalf("%v %d", err, resp.StatusCode())
			}
		}
	})
}
