package dataplane

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
	"github.com/valyala/fasthttp"
)

// BenchmarkProxyCores measures keep-alive requests over loopback TCP the
// way a load generator sends them: every client goroutine has its own
// connection and nothing shared with the others, so the only state the
// goroutines share is the proxy's. Run it with -cpu=1,2,1 (A-B-A):
//
//   - ns/op at -cpu=2 over ns/op at -cpu=1 is the throughput ratio. The
//     client (and for "proxy" the backend) run in this process on the same
//     cores, so on a 2-core machine the ratio is a lower bound of the
//     proxy's own scaling;
//   - req/cpu-s (requests per second of process CPU) shows whether the
//     CPU per request grows with parallelism: with no contention between
//     cores it stays the same at -cpu=2 as at -cpu=1.
//
// "respond" is a route answering itself, so only the proxy's parse,
// routing and response path runs; "respond-close" opens a connection per
// request (the accept path); "proxy" forwards to a loopback fasthttp
// backend (balancer, backend connection pool, upstream metrics).
func BenchmarkProxyCores(b *testing.B) {
	for _, tc := range []struct {
		name  string
		cfg   func(b *testing.B) config
		close bool // one connection per request
	}{
		{"respond", func(*testing.B) config { return respondConfig("ok") }, false},
		{"respond-close", func(*testing.B) config { return respondConfig("ok") }, true},
		{"proxy", func(b *testing.B) config { return simpleConfig(loopbackBackend(b, []byte("ok"))) }, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			d := startDataplane(b, newFakeSource(tc.cfg(b).build()), nil)
			addr := d.ListenerAddr("web")
			if addr == "" {
				b.Fatal("listener web not bound")
			}
			b.SetParallelism(8) // 8 connections per core, like wrk -c
			b.ReportAllocs()
			b.ResetTimer()
			start, cpu0 := time.Now(), processCPU(b)
			b.RunParallel(func(pb *testing.PB) {
				req := []byte("GET /x HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
				if tc.close {
					req = []byte("GET /x HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n")
				}
				br := bufio.NewReader(nil)
				var resp fasthttp.Response
				var c net.Conn
				defer func() {
					if c != nil {
						c.Close()
					}
				}()
				for pb.Next() {
					if c == nil {
						var err error
						if c, err = net.Dial("tcp", addr); err != nil {
							b.Errorf("dial: %v", err)
							return
						}
						_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
						br.Reset(c)
					}
					if _, err := c.Write(req); err != nil {
						b.Errorf("write: %v", err)
						return
					}
					if err := resp.Read(br); err != nil {
						b.Errorf("read: %v", err)
						return
					}
					if resp.StatusCode() != fasthttp.StatusOK || string(resp.Body()) != "ok" {
						b.Errorf("status %d, body %q", resp.StatusCode(), resp.Body())
						return
					}
					if tc.close {
						c.Close()
						c = nil
					}
				}
			})
			wall, cpu := time.Since(start), processCPU(b)-cpu0
			b.ReportMetric(float64(b.N)/cpu.Seconds(), "req/cpu-s")
			b.ReportMetric(float64(b.N)/wall.Seconds(), "req/s")
		})
	}
}

// respondConfig: listener "web" (ephemeral port) whose one route answers
// 200 with body itself.
func respondConfig(body string) config {
	return config{
		listeners: map[string]fsm.ListenerSpec{"web": {Port: 0}},
		routes: map[string]fsm.RouteSpec{"app": {Listener: "web",
			Action: fsm.RouteAction{Respond: &fsm.Respond{Status: 200, Body: body}}}},
	}
}
