package dataplane

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// failingListener fails its first Accepts with errs.
type failingListener struct {
	net.Listener
	mu   sync.Mutex
	errs []error
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// An accept that fails for want of descriptors or memory is retried; any
// other failure stops the listener, as before.
func TestAcceptRetriesWhenOutOfDescriptors(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &failingListener{Listener: inner, errs: []error{
		&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)},
		&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ENFILE)},
	}}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("served") }}
	pl := &parkListener{Listener: ln, lot: &parkLot{srv: srv, ended: func(net.Conn) {}, gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})},
		log: slog.New(slog.DiscardHandler), name: "web"}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(pl) }()
	resp, body := rawExchange(t, inner.Addr().String(), "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp.StatusCode != 200 || body != "served" {
		t.Fatalf("after EMFILE and ENFILE: %d %q, want 200 served", resp.StatusCode, body)
	}
	if err := srv.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve after Shutdown: %v", err)
	}

	boom := errors.New("accept: something else")
	inner2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inner2.Close()
	srv2 := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {}, Logger: fasthttpLogger{slog.New(slog.DiscardHandler)}}
	pl2 := &parkListener{Listener: &failingListener{Listener: inner2, errs: []error{boom}}, lot: &parkLot{srv: srv2},
		log: slog.New(slog.DiscardHandler), name: "web"}
	if err := srv2.Serve(pl2); !errors.Is(err, boom) {
		t.Fatalf("Serve with another accept failure returned %v, want it", err)
	}
}
