package dataplane

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// A client that sends its headers at once and then trickles the body is cut
// off by the listener's read timeout; meanwhile other clients are served and
// the backend never sees the half-sent request.
func TestSlowBodyCutByReadTimeout(t *testing.T) {
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
	const bodyLen = 1000
	if _, err := slow.Write([]byte("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	cut := make(chan struct{})
	go func() {
		defer close(cut)
		for i := 0; i < bodyLen; i++ {
			if _, err := slow.Write([]byte{'x'}); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	for i := 0; i < 3; i++ {
		if resp, _ := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode != 200 {
			t.Errorf("other client got %d", resp.StatusCode)
		}
	}
	_ = slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(slow) // the proxy answers 408 and/or closes
	if len(b) > 0 && !strings.Contains(string(b), "408") {
		t.Errorf("slow client got %q", b)
	}
	select {
	case <-cut:
	case <-time.After(15 * time.Second):
		t.Errorf("slow body never cut off (a full body takes %s)", bodyLen*20*time.Millisecond)
	}
	for _, r := range be.requests() {
		if strings.Contains(r.URI, "/upload") {
			t.Errorf("backend saw the half-sent request %s", r.URI)
		}
	}
	if n := len(be.requests()); n != 3 {
		t.Errorf("backend saw %d requests, want the other client's 3", n)
	}
}
