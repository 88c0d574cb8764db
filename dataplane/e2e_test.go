package dataplane

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	_ = ln.Close()
	return a
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func TestFailureStatuses(t *testing.T) {
	live := newBackend(t, nil)
	var flaky atomic.Int64
	failing := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		flaky.Add(1)
		w.WriteHeader(503)
	})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	dead1, dead2 := deadAddr(t), deadAddr(t)
	split := func(p string) fsm.RouteAction {
		return fsm.RouteAction{Split: []fsm.WeightedPool{{Pool: p, Weight: 1}}}
	}
	cfg := config{
		listeners: map[string]fsm.ListenerSpec{"web": {}},
		pools: map[string]fsm.PoolSpec{
			"retry":    {Backends: []fsm.Backend{{Addr: dead1}, {Addr: live.addr}}},
			"status":   {Backends: []fsm.Backend{{Addr: failing.addr}, {Addr: live.addr}}},
			"dead":     {Backends: []fsm.Backend{{Addr: dead1}, {Addr: dead2}}},
			"slow":     {Backends: []fsm.Backend{{Addr: slow.addr}}},
			"empty":    {},
			"nostatus": {Backends: []fsm.Backend{{Addr: failing.addr}}},
		},
		routes: map[string]fsm.RouteSpec{
			"retry":  {Listener: "web", Match: fsm.RouteMatch{Path: fsm.PathMatch{Prefix: "/retry"}}, Action: split("retry")},
			"status": {Listener: "web", Match: fsm.RouteMatch{Path: fsm.PathMatch{Prefix: "/status"}}, Action: split("status"), Retries: &fsm.RetryPolicy{Attempts: 1, On: []string{"503"}}},
			"dead":   {Listener: "web", Match: fsm.RouteMatch{Path: fsm.PathMatch{Prefix: "/dead"}}, Action: split("dead")},
			"slow":   {Listener: "web", Match: fsm.RouteMatch{Path: fsm.PathMatch{Prefix: "/slow"}}, Action: split("slow"), Timeouts: fsm.RouteTimeouts{Request: fsm.Duration(200 * time.Millisecond)}},
			"empty":  {Listener: "web", Match: fsm.RouteMatch{Path: fsm.PathMatch{Prefix: "/empty"}}, Action: split("empty")},
		},
	}
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	base := "http://" + d.ListenerAddr("web")
	c := newClient(t)

	t.Run("connect failure retried on the other backend", func(t *testing.T) {
		before := len(live.requests())
		for i := 0; i < 20; i++ {
			if code, _ := get(t, c, base+"/retry"); code != 200 {
				t.Fatalf("request %d: status %d", i, code)
			}
		}
		if n := len(live.requests()) - before; n != 20 {
			t.Errorf("live backend saw %d of 20", n)
		}
	})
	t.Run("configured status retried for GET, not for POST", func(t *testing.T) {
		for i := 0; i < 10; i++ {
			if code, _ := get(t, c, base+"/status"); code != 200 {
				t.Fatalf("GET %d: status %d", i, code)
			}
		}
		failed := 0
		for i := 0; i < 10; i++ {
			resp, err := c.Post(base+"/status", "text/plain", strings.NewReader("x"))
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 503 {
				failed++
			}
		}
		if failed == 0 {
			t.Errorf("POST was retried on a 503")
		}
	})
	cases := []struct {
		path string
		want int
	}{
		{"/dead", 502},
		{"/slow", 504},
		{"/empty", 503},
		{"/nothing-routes-here-but-catch-none", 404},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			if code, _ := get(t, c, base+tc.path); code != tc.want {
				t.Errorf("status = %d, want %d", code, tc.want)
			}
		})
	}
}

func TestAllBackendsUnhealthyFast503(t *testing.T) {
	be := newBackend(t, nil)
	d := startDataplane(t, newFakeSource(simpleConfig(be.addr).build()), func(o *Options) {
		o.Health = fakeHealth{map[string]bool{be.addr: true}}
	})
	c := newClient(t)
	for i := 0; i < 5; i++ {
		if code, _ := get(t, c, "http://"+d.ListenerAddr("web")+"/"); code != 503 {
			t.Fatalf("status = %d, want 503", code)
		}
	}
	if n := len(be.requests()); n != 0 {
		t.Errorf("unhealthy backend got %d requests", n)
	}
}

func TestRouteSwapUnderLoad(t *testing.T) {
	a := newBackend(t, nil)
	b := newBackend(t, nil)
	cfg := simpleConfig(a.addr)
	cfg.pools["other"] = fsm.PoolSpec{Backends: []fsm.Backend{{Addr: b.addr}}}
	src := newFakeSource(cfg.build())
	d := startDataplane(t, src, nil)
	stateBefore := d.Table().pools["app"].backends[0].st
	base := "http://" + d.ListenerAddr("web")
	c := newClient(t)

	var failures, total atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(base + "/x")
				total.Add(1)
				if err != nil {
					failures.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
				}
			}
		}()
	}
	for i := 1; i <= 20; i++ {
		next := simpleConfig(a.addr)
		next.index = uint64(i)
		next.pools["other"] = fsm.PoolSpec{Backends: []fsm.Backend{{Addr: b.addr}}}
		pool := "app"
		if i%2 == 1 {
			pool = "other"
		}
		next.routes["app"] = fsm.RouteSpec{Listener: "web", Action: fsm.RouteAction{Split: []fsm.WeightedPool{{Pool: pool, Weight: 1}}}}
		next.listeners[fmt.Sprintf("extra%d", i)] = fsm.ListenerSpec{}
		src.Set(next.build())
		want := uint64(i)
		waitFor(t, "table swap", func() bool { return d.Table().Index() == want })
	}
	close(stop)
	wg.Wait()
	if f := failures.Load(); f != 0 {
		t.Errorf("%d of %d requests failed during swaps", f, total.Load())
	}
	if len(a.requests()) == 0 || len(b.requests()) == 0 {
		t.Errorf("traffic did not follow the route: a=%d b=%d", len(a.requests()), len(b.requests()))
	}
	if got := d.Table().pools["app"].backends[0].st; got != stateBefore {
		t.Errorf("backend state replaced by a swap that kept the backend")
	}
	if d.ListenerAddr("extra20") == "" || d.ListenerAddr("extra1") != "" {
		t.Errorf("listeners not reconciled: extra20=%q extra1=%q", d.ListenerAddr("extra20"), d.ListenerAddr("extra1"))
	}
}

// wsEcho is a minimal Upgrade server: it answers 101 and echoes bytes.
func wsEcho(t *testing.T) (string, *atomic.Value) {
	var head atomic.Value
	addr := serveConns(t, 10*time.Second, func(c net.Conn, br *bufio.Reader) {
		h, err := readHead(br)
		if err != nil {
			return
		}
		head.Store(h)
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_, _ = io.Copy(c, br)
	})
	return addr, &head
}

func TestWebSocketTunnel(t *testing.T) {
	addr, head := wsEcho(t)
	d := startDataplane(t, newFakeSource(simpleConfig(addr).build()), nil)
	c, err := net.Dial("tcp", d.ListenerAddr("web"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, "GET /chat HTTP/1.1\r\nHost: ws.example\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read 101: %v", err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	for i := 0; i < 3; i++ {
		msg := fmt.Sprintf("frame-%d", i)
		_, _ = io.WriteString(c, msg)
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo = %q, %v", buf, err)
		}
	}
	h, _ := head.Load().(string)
	if !strings.Contains(h, "Upgrade: websocket") || !strings.Contains(h, "Connection: Upgrade") || !strings.Contains(h, "Sec-WebSocket-Key:") {
		t.Errorf("backend saw head %q", h)
	}
}

func TestSlowlorisCutByReadTimeout(t *testing.T) {
	be := newBackend(t, nil)
	cfg := simpleConfig(be.addr)
	cfg.listeners["web"] = fsm.ListenerSpec{Limits: fsm.ListenerLimits{ReadTimeout: fsm.Duration(300 * time.Millisecond)}}
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	addr := d.ListenerAddr("web")
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	cut := make(chan struct{})
	go func() {
		defer close(cut)
		req := "GET / HTTP/1.1\r\nHost: a\r\nX-Trickle: " + strings.Repeat("a", 200)
		for i := 0; i < len(req); i++ {
			if _, err := slow.Write([]byte{req[i]}); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	if resp, _ := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode != 200 {
		t.Errorf("other client got %d", resp.StatusCode)
	}
	_ = slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(slow) // the proxy answers 408 and/or closes
	if len(b) > 0 && !strings.Contains(string(b), "408") {
		t.Errorf("slow client got %q", b)
	}
	select {
	case <-cut:
	case <-time.After(10 * time.Second):
		t.Errorf("trickling client never cut off")
	}
	if n := len(be.requests()); n != 1 {
		t.Errorf("backend saw %d requests, want only the other client's", n)
	}
}
