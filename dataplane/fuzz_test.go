package dataplane

import (
	"bufio"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// rawBackend reads request heads and answers each with an empty 200 and a
// closed connection; it counts heads carrying both Content-Length and
// Transfer-Encoding.
func rawBackend(tb testing.TB) (string, *atomic.Int64) {
	var both atomic.Int64
	addr := serveConns(tb, 5*time.Second, func(c net.Conn, br *bufio.Reader) {
		head, err := readHead(br)
		if err != nil {
			return
		}
		raw := []byte(head)
		if hasRawField(raw, "content-length") && hasRawField(raw, "transfer-encoding") {
			both.Add(1)
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	})
	return addr, &both
}

func FuzzProxyRequest(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
		"GET /a/../b?x HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"GET http://x/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	addr, both := rawBackend(f)
	d := startDataplane(f, newFakeSource(simpleConfig(addr).build()), func(o *Options) {})
	proxy := d.ListenerAddr("web")
	f.Fuzz(func(t *testing.T, req []byte) {
		c, err := net.Dial("tcp", proxy)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
		_, _ = c.Write(req)
		// Half-close so the proxy answers what it has and then closes.
		_ = c.(*net.TCPConn).CloseWrite()
		_, _ = io.Copy(io.Discard, c)
		if n := both.Load(); n != 0 {
			t.Fatalf("backend saw %d requests with both Content-Length and Transfer-Encoding", n)
		}
	})
}
