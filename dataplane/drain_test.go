package dataplane

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// After CloseConnections every response closes its connection, proxied
// and error answers alike, and the server closes it after the response.
func TestCloseConnectionsEndsKeepAlive(t *testing.T) {
	b := newBackend(t, nil)
	d := startDataplane(t, newFakeSource(simpleConfig(b.addr).build()), nil)
	addr := d.ListenerAddr("web")
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	exchange := func(path string) *http.Response {
		t.Helper()
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if r := exchange("/"); r.StatusCode != 200 || r.Close {
		t.Fatalf("before: %d close=%v, want 200 on a kept-alive connection", r.StatusCode, r.Close)
	}
	d.CloseConnections()
	if r := exchange("/"); r.StatusCode != 200 || !r.Close {
		t.Fatalf("after: %d close=%v, want 200 with Connection: close", r.StatusCode, r.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("the connection stays open after Connection: close (read: %v)", err)
	}
	for _, req := range []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "GET / HTTP/1.1\r\n\r\n"} {
		if r, _ := rawExchange(t, addr, req); !r.Close {
			t.Fatalf("%q answered %d without Connection: close", firstLine(req), r.StatusCode)
		}
	}
}
