package bench

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// The floor passes requests and answers through a keep-alive connection,
// adds X-Forwarded-For as HAProxy's option forwardfor does, drops the
// client's Connection field, and answers 502 when the backend is gone.
func TestFloorProxies(t *testing.T) {
	b := startFloorBackend(t, func(ctx *fasthttp.RequestCtx) {
		fmt.Fprintf(ctx, "path %s body %d", ctx.Path(), len(ctx.Request.Body()))
	})
	seen, backend, bln := b.seen, b.srv, b.ln

	fln := listenLoopback(t)
	floor := FloorServer(bln.Addr().String(), 5*time.Second, 5*time.Second, 16)
	go func() { _ = floor.Serve(fln) }()
	t.Cleanup(func() { _ = floor.Shutdown() })

	c, br := dialFloor(t, fln)
	for i, req := range []string{
		"GET /1024 HTTP/1.1\r\nHost: app\r\nConnection: keep-alive\r\n\r\n",
		"POST /post HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\n\r\nhello",
	} {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := []string{"path /1024 body 0", "path /post body 5"}[i]
		if resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("request %d: %d %q, want 200 %q", i, resp.StatusCode, body, want)
		}
		h := <-seen
		if got := h.Get("X-Forwarded-For"); got != "127.0.0.1" {
			t.Errorf("request %d: X-Forwarded-For %q, want 127.0.0.1", i, got)
		}
		if got := h.Get("Connection"); strings.EqualFold(got, "keep-alive") {
			t.Errorf("request %d: the client's Connection field reached the backend", i)
		}
	}

	_ = backend.Shutdown()
	_ = bln.Close()
	if _, err := io.WriteString(c, "GET /0 HTTP/1.1\r\nHost: app\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 {
		t.Errorf("with the backend gone: %d, want 502", resp.StatusCode)
	}
}

// floorBackend is a fasthttp backend that reports each request's header.
type floorBackend struct {
	srv  *fasthttp.Server
	ln   net.Listener
	seen chan http.Header
}

func startFloorBackend(t *testing.T, answer fasthttp.RequestHandler) *floorBackend {
	t.Helper()
	b := &floorBackend{ln: listenLoopback(t), seen: make(chan http.Header, 16)}
	b.srv = &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		h := http.Header{}
		for k, v := range ctx.Request.Header.All() {
			h.Add(string(k), string(v))
		}
		b.seen <- h
		answer(ctx)
	}}
	go func() { _ = b.srv.Serve(b.ln) }()
	t.Cleanup(func() { _ = b.srv.Shutdown() })
	return b
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// dialFloor opens a client connection to ln with a deadline for the test.
func dialFloor(t *testing.T, ln net.Listener) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}
