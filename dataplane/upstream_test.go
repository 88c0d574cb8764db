package dataplane

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// scriptedBackend answers every request head it reads with answer, then
// closes the connection when closeAfter is set.
func scriptedBackend(tb testing.TB, answer string, closeAfter bool) string {
	tb.Helper()
	return serveConns(tb, 10*time.Second, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, err := readHead(br); err != nil {
				return
			}
			if _, err := io.WriteString(c, answer); err != nil || closeAfter {
				return
			}
		}
	})
}

// A backend that closes mid-body, or after the head, must not look like a
// complete 200: the client's connection is cut so it sees the truncation,
// the access log names it and rafter_upstream_errors_total counts it.
func TestTruncatedUpstreamBodyIsReported(t *testing.T) {
	for _, tc := range []struct{ name, answer string }{
		{"mid-body", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b"},
		{"head only", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"},
		{"chunked cut", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := scriptedBackend(t, tc.answer, true)
			var logBuf testutil.SyncBuffer
			d := startDataplane(t, newFakeSource(simpleConfig(addr).build()), func(o *Options) {
				o.AccessLog = slog.New(slog.NewJSONHandler(&logBuf, nil))
			})
			c, err := net.Dial("tcp", d.ListenerAddr("web"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil {
				var body []byte
				body, err = io.ReadAll(resp.Body)
				if err == nil {
					t.Fatalf("client got a complete response: %d %q", resp.StatusCode, body)
				}
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
				t.Errorf("client error %v, want the connection cut", err)
			}
			waitFor(t, "the truncation to be counted", func() bool {
				return counterValue(t, d.metrics.upstreamErrors.WithLabelValues("app", "truncated")) == 1
			})
			waitFor(t, "the access log line", func() bool { return strings.Contains(logBuf.String(), `"error":"truncated"`) })
		})
	}
}

// An HTTP/1.0 backend ends its response by closing its connection; that
// closes only the backend connection, not the client's keep-alive one.
func TestHTTP10BackendCloseKeepsClientConnection(t *testing.T) {
	addr := scriptedBackend(t, "HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nhello", true)
	d := startDataplane(t, newFakeSource(simpleConfig(addr).build()), nil)
	k := dialKeepAlive(t, d.ListenerAddr("web"))
	for i := 0; i < 3; i++ {
		resp, body := k.do("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		if resp.StatusCode != 200 || body != "hello" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		if resp.Close {
			t.Fatalf("request %d: the proxy closes the client connection (Connection: %q)", i, resp.Header.Get("Connection"))
		}
	}
}
