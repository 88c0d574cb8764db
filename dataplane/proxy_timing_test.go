package dataplane

import (
	"context"
	"net"
	"runtime/pprof"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// loopbackBackend is a fasthttp server on 127.0.0.1 answering every
// request with body. Its goroutines carry the pprof label side=backend so
// that a CPU profile can be split between backend, proxy and client.
func loopbackBackend(b testing.TB, body []byte) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatalf("listen: %v", err)
	}
	srv := &fasthttp.Server{
		Handler:               func(ctx *fasthttp.RequestCtx) { ctx.Response.SetBodyRaw(body) },
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
	}
	done := make(chan struct{})
	pprof.Do(context.Background(), pprof.Labels("side", "backend"), func(context.Context) {
		go func() {
			defer close(done)
			_ = srv.Serve(ln)
		}()
	})
	b.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	return ln.Addr().String()
}

// BenchmarkProxyLoopback measures keep-alive requests through the proxy
// over real loopback TCP: clients -> proxy -> fasthttp backend, all in this
// process. The proxy's goroutines carry the pprof label side=proxy, so
// `go tool pprof -tagfocus=side=proxy` shows the proxy's own share. Run it
// with -cpu=1 to compare with a single-threaded proxy.
func BenchmarkProxyLoopback(b *testing.B) {
	cases := []struct {
		name     string
		method   string
		reqBody  int
		respBody int
	}{
		{"get-0B", fasthttp.MethodGet, 0, 0},
		{"get-1KiB", fasthttp.MethodGet, 0, 1024},
		{"get-64KiB", fasthttp.MethodGet, 0, 64 << 10},
		{"post-1KiB", fasthttp.MethodPost, 1024, 1024},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			backendAddr := loopbackBackend(b, make([]byte, tc.respBody))
			var d *Dataplane
			pprof.Do(context.Background(), pprof.Labels("side", "proxy"), func(context.Context) {
				d = startDataplane(b, newFakeSource(simpleConfig(backendAddr).build()), nil)
			})
			proxyAddr := d.ListenerAddr("web")
			if proxyAddr == "" {
				b.Fatal("listener web not bound")
			}
			client := &fasthttp.HostClient{Addr: proxyAddr, MaxConns: 64, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
			b.Cleanup(client.CloseIdleConnections)
			reqBody := make([]byte, tc.reqBody)
			b.SetBytes(int64(tc.reqBody + tc.respBody))
			b.SetParallelism(8) // like a load generator's keep-alive connections
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU(b)
			b.RunParallel(func(pb *testing.PB) {
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(resp)
				req.Header.SetMethod(tc.method)
				req.SetRequestURI("http://app.example.com/bench/" + strconv.Itoa(tc.respBody))
				if tc.reqBody > 0 {
					req.SetBodyRaw(reqBody)
				}
				for pb.Next() {
					if err := client.Do(req, resp); err != nil {
						b.Errorf("request: %v", err)
						return
					}
					if resp.StatusCode() != fasthttp.StatusOK || len(resp.Body()) != tc.respBody {
						b.Errorf("status %d, %d body bytes", resp.StatusCode(), len(resp.Body()))
						return
					}
				}
			})
			// CPU time of the whole process (clients, proxy and backend
			// together) per request: the figure to compare, as wall time
			// on a shared machine moves with its neighbours.
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the user plus system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkKeepAliveDeadlines sets the three deadlines the server sets
// per keep-alive request (idle wait, read timeout, write timeout, here
// all 60 s) on a loopback TCP connection, raw and as the proxy wraps it.
func BenchmarkKeepAliveDeadlines(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = c.Read(make([]byte, 1))
			_ = c.Close()
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	for _, tc := range []struct {
		name string
		c    net.Conn
	}{{"raw", raw}, {"proxy", &yieldConn{Conn: raw}}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				_ = tc.c.SetReadDeadline(time.Now().Add(time.Minute))
				_ = tc.c.SetReadDeadline(time.Now().Add(time.Minute))
				_ = tc.c.SetWriteDeadline(time.Now().Add(time.Minute))
			}
		})
	}
}
