package httpapi

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// serveWithTimeouts serves an API over a fake store through NewServer with
// the given timeouts and returns its address.
func serveWithTimeouts(t *testing.T, to Timeouts) (string, *fakeStore) {
	t.Helper()
	st := newFakeStore("n1")
	cfg := DefaultConfig()
	cfg.Store = st
	cfg.NodeID = "n1"
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Timeouts = to
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(h, cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().String(), st
}

func TestNewServerSetsEveryTimeout(t *testing.T) {
	d := DefaultTimeouts()
	srv := NewServer(http.NotFoundHandler(), Config{})
	if srv.ReadHeaderTimeout != d.ReadHeader || srv.ReadTimeout != d.Read || srv.WriteTimeout != d.Write || srv.IdleTimeout != d.Idle {
		t.Fatalf("server timeouts = %v/%v/%v/%v, want %+v", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, d)
	}
	if d.ReadHeader <= 0 || d.Read <= 0 || d.Write <= 0 || d.Idle <= 0 || d.Transfer < d.Write {
		t.Fatalf("default timeouts %+v", d)
	}
	if d.Write+maxWait > 10*time.Minute {
		t.Fatalf("a blocking read may take %v", d.Write+maxWait)
	}
}

// A client that drips its body a byte at a time is cut off at the read
// timeout instead of holding the connection for as long as it drips.
func TestDrippedBodyIsCut(t *testing.T) {
	addr, _ := serveWithTimeouts(t, Timeouts{Read: 300 * time.Millisecond, Write: 300 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const body = `{"port": 8080}`
	if _, err := io.WriteString(c, "PUT /v1/listeners/web HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body)*100)+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cut := make(chan error, 1)
	go func() {
		// The server answers or closes; either ends this read.
		_, err := bufio.NewReader(c).ReadByte()
		cut <- err
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for i := 0; ; i++ {
		select {
		case <-cut:
			if el := time.Since(start); el > 10*time.Second {
				t.Fatalf("dripping client cut only after %v", el)
			}
			return
		case <-deadline:
			t.Fatal("a dripping client still holds the connection after 20s")
		case <-tick.C:
			// Errors once the server has closed; the reader reports that.
			_, _ = c.Write([]byte{body[i%len(body)]})
		}
	}
}

// A blocking read outlives the server's read and write timeouts: it gets
// its wait on top of them.
func TestBlockingReadOutlivesTimeouts(t *testing.T) {
	addr, st := serveWithTimeouts(t, Timeouts{Read: 200 * time.Millisecond, Write: 200 * time.Millisecond})
	idx := st.put(t, "listener", "web", validSpecs["listener"])
	start := time.Now()
	r, err := send(t.Context(), "http://"+addr, "GET", "/v1/listeners?index="+strconv.FormatUint(idx, 10)+"&wait=1s", "", "", nil)
	if err != nil {
		t.Fatalf("blocking read cut: %v", err)
	}
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if el := time.Since(start); el < time.Second {
		t.Fatalf("blocking read answered after %v, before its wait", el)
	}
	// The connection is still usable afterwards.
	if r, err := send(t.Context(), "http://"+addr, "GET", "/v1/listeners", "", "", nil); err != nil || r.status != http.StatusOK {
		t.Fatalf("read after a blocking read: %v %v", r.status, err)
	}
}
