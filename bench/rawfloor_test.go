package bench

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// The raw floor carries keep-alive GETs and HEADs, pipelined or not, with
// answers larger than its buffer, adds X-Forwarded-For, and refuses what it
// does not do: a request body (501), an answer without Content-Length and
// a gone backend (502).
func TestRawFloor(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 200<<10/16) // 200 KiB: over three reads
	b := startFloorBackend(t, func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/big":
			ctx.SetBody(big)
		case "/chunked":
			ctx.SetBodyStreamWriter(func(w *bufio.Writer) { _, _ = w.WriteString("unframed") })
		default:
			ctx.WriteString("path " + string(ctx.Path()))
		}
	})
	ln := listenLoopback(t)
	go func() { _ = ServeRawFloor(ln, b.ln.Addr().String(), 5*time.Second, 5*time.Second) }()

	c, br := dialFloor(t, ln)
	read := func(method string) (*http.Response, string) {
		t.Helper()
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp, string(body)
	}
	send := func(s string) {
		t.Helper()
		if _, err := io.WriteString(c, s); err != nil {
			t.Fatal(err)
		}
	}

	send("GET /a HTTP/1.1\r\nHost: app\r\n\r\n")
	if resp, body := read("GET"); resp.StatusCode != 200 || body != "path /a" {
		t.Fatalf("GET /a: %d %q", resp.StatusCode, body)
	}
	if got := (<-b.seen).Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For %q, want 127.0.0.1", got)
	}
	send("GET /big HTTP/1.1\r\nHost: app\r\n\r\nHEAD /b HTTP/1.1\r\nHost: app\r\n\r\nGET /c HTTP/1.1\r\nHost: app\r\n\r\n")
	if resp, body := read("GET"); resp.StatusCode != 200 || body != string(big) {
		t.Fatalf("GET /big: %d, %d bytes, want %d", resp.StatusCode, len(body), len(big))
	}
	if resp, body := read("HEAD"); resp.StatusCode != 200 || body != "" {
		t.Fatalf("HEAD /b: %d %q", resp.StatusCode, body)
	}
	if resp, body := read("GET"); resp.StatusCode != 200 || body != "path /c" {
		t.Fatalf("pipelined GET /c: %d %q", resp.StatusCode, body)
	}

	for _, tc := range []struct{ req, want string }{
		{"POST /p HTTP/1.1\r\nHost: app\r\ncontent-length: 5\r\n\r\nhello", "501"},
		{"POST /p HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "501"},
		{"GET /chunked HTTP/1.1\r\nHost: app\r\n\r\n", "502"},
		{"GARBAGE\r\n\r\n", "400"},
	} {
		c, br = dialFloor(t, ln)
		send(tc.req)
		if resp, _ := read("GET"); resp.Status[:3] != tc.want || !resp.Close {
			t.Errorf("%q: %s (close %v), want %s and the connection closed", strings.SplitN(tc.req, "\r\n", 2)[0], resp.Status, resp.Close, tc.want)
		}
	}

	_ = b.srv.Shutdown()
	c, br = dialFloor(t, ln)
	send("GET /gone HTTP/1.1\r\nHost: app\r\n\r\n")
	if resp, _ := read("GET"); resp.StatusCode != 502 {
		t.Errorf("with the backend gone: %d, want 502", resp.StatusCode)
	}
}

// An answer the backend cuts short reaches the client as it came, and the
// connection closes: no error reply is written after part of an answer.
func TestRawFloorCutAnswer(t *testing.T) {
	const cut = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"
	bln := listenLoopback(t)
	go func() {
		c, err := bln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		if _, err := c.Read(buf); err == nil {
			_, _ = io.WriteString(c, cut)
		}
	}()
	ln := listenLoopback(t)
	go func() { _ = ServeRawFloor(ln, bln.Addr().String(), 5*time.Second, 5*time.Second) }()
	c, br := dialFloor(t, ln)
	if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: app\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != cut {
		t.Fatalf("client got %q, want the cut answer %q and the end", got, cut)
	}
}
