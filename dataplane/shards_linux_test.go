package dataplane

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// shardRecorder opens a listener's sockets with ListenShared and counts
// the connections each one accepted.
type shardRecorder struct {
	mu       sync.Mutex
	sockets  map[int]net.Listener
	accepted map[int]int
}

func newShardRecorder() *shardRecorder {
	return &shardRecorder{sockets: map[int]net.Listener{}, accepted: map[int]int{}}
}

func (r *shardRecorder) listen(name string, shard int, addr string) (net.Listener, error) {
	ln, err := ListenShared(name, shard, addr)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sockets[shard] = ln
	return &countingListener{Listener: ln, r: r, shard: shard}, nil
}

// counts returns how many connections each shard accepted so far.
func (r *shardRecorder) counts() map[int]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[int]int, len(r.accepted))
	for k, v := range r.accepted {
		out[k] = v
	}
	return out
}

type countingListener struct {
	net.Listener
	r     *shardRecorder
	shard int
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.r.mu.Lock()
		l.r.accepted[l.shard]++
		l.r.mu.Unlock()
	}
	return c, err
}

// oneRequest opens a connection to addr, sends one keep-alive GET and
// returns the connection (open) with the response's status; status 0
// means the connection was refused or closed without an answer.
func oneRequest(t *testing.T, addr string) (net.Conn, int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")); err != nil {
		return c, 0
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return c, 0
	}
	resp.Body.Close()
	return c, resp.StatusCode
}

// Every socket of a listener accepts and serves: the kernel spreads new
// connections over them, all on the one port the listener reports.
func TestListenerShardsAllServe(t *testing.T) {
	const shards = 4
	rec := newShardRecorder()
	d := startDataplane(t, newFakeSource(respondConfig("ok").build()), func(o *Options) {
		o.Listen, o.ListenShards = rec.listen, shards
	})
	addr := d.ListenerAddr("web")
	rec.mu.Lock()
	for i := range shards {
		if ln := rec.sockets[i]; ln == nil || ln.Addr().String() != addr {
			t.Errorf("shard %d: socket %v, want one on %s", i, ln, addr)
		}
	}
	rec.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for n := 0; n < 400 && time.Now().Before(deadline); n++ {
		c, status := oneRequest(t, addr)
		c.Close()
		if status != http.StatusOK {
			t.Fatalf("connection %d: status %d, want 200", n, status)
		}
		if len(rec.counts()) == shards {
			break
		}
	}
	if got := rec.counts(); len(got) != shards {
		t.Fatalf("connections accepted per socket %v: want every one of the %d sockets to accept", got, shards)
	}
}

// max_conns caps a listener's connections over all of its sockets, and a
// closed connection gives its place back.
func TestListenerShardsShareMaxConns(t *testing.T) {
	const maxConns = 3
	rec := newShardRecorder()
	cfg := respondConfig("ok")
	cfg.listeners["web"] = fsm.ListenerSpec{Limits: fsm.ListenerLimits{MaxConns: maxConns}}
	d := startDataplane(t, newFakeSource(cfg.build()), func(o *Options) {
		o.Listen, o.ListenShards = rec.listen, 2
	})
	addr := d.ListenerAddr("web")
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	served := 0
	// Until each socket has seen more connections than the limit, so that
	// a limit counted per socket would have let more than maxConns in.
	for n := 0; n < 64; n++ {
		c, status := oneRequest(t, addr)
		switch status {
		case http.StatusOK:
			served++
			open = append(open, c)
		case 0, http.StatusServiceUnavailable:
			c.Close()
		default:
			c.Close()
			t.Fatalf("connection %d: status %d", n, status)
		}
		if got := rec.counts(); got[0] > maxConns && got[1] > maxConns {
			break
		}
	}
	if got := rec.counts(); got[0] <= maxConns || got[1] <= maxConns {
		t.Fatalf("connections per socket %v: the kernel did not spread them", got)
	}
	if served != maxConns {
		t.Fatalf("%d connections served at once, want max_conns %d over both sockets", served, maxConns)
	}
	for _, c := range open {
		c.Close()
	}
	open = nil
	waitFor(t, "a closed connection's place to be given back", func() bool {
		c, status := oneRequest(t, addr)
		c.Close()
		return status == http.StatusOK
	})
}

// Stopping the data plane closes every socket of every listener.
func TestStopClosesEveryShard(t *testing.T) {
	const shards = 3
	rec := newShardRecorder()
	opts := DefaultOptions()
	opts.Source = newFakeSource(respondConfig("ok").build())
	opts.BindIP = "127.0.0.1"
	opts.DrainTimeout = 5 * time.Second
	opts.Listen, opts.ListenShards = rec.listen, shards
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx) }()
	select {
	case <-d.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("dataplane not ready")
	}
	addr := d.ListenerAddr("web")
	c, status := oneRequest(t, addr)
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	c.Close()
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.sockets) != shards {
		t.Fatalf("%d sockets opened, want %d", len(rec.sockets), shards)
	}
	for i, ln := range rec.sockets {
		_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(time.Second))
		if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("shard %d after the stop: Accept = %v, want closed", i, err)
		}
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after the stop", addr)
	}
}

// tableCheckListener notes, at each Accept, whether the table being served
// routes the listener: a connection accepted before would be answered
// from a table that lacks it (503 listener_removed).
type tableCheckListener struct {
	net.Listener
	d       *atomic.Pointer[Dataplane]
	unknown *atomic.Int64
}

func (l tableCheckListener) Accept() (net.Conn, error) {
	if d := l.d.Load(); d == nil || d.Table().listeners["web"] == nil {
		l.unknown.Add(1)
	}
	return l.Listener.Accept()
}

// A listener's sockets accept only once the table that routes it is
// served, so a connection already waiting on them (as in sockets handed
// over by an upgrade) is answered by its route, never with a 503.
func TestListenerAcceptsOnlyOnceRouted(t *testing.T) {
	var unknown atomic.Int64
	for run := range 20 {
		var dp atomic.Pointer[Dataplane]
		opts := DefaultOptions()
		opts.Source = newFakeSource(respondConfig("ok").build())
		opts.BindIP = "127.0.0.1"
		opts.DrainTimeout = 5 * time.Second
		opts.ListenShards = 2
		opts.Listen = func(name string, shard int, addr string) (net.Listener, error) {
			ln, err := ListenShared(name, shard, addr)
			if err != nil {
				return nil, err
			}
			return tableCheckListener{Listener: ln, d: &dp, unknown: &unknown}, nil
		}
		d, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		dp.Store(d)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- d.Run(ctx) }()
		select {
		case <-d.Ready():
		case <-time.After(10 * time.Second):
			t.Fatal("dataplane not ready")
		}
		c, status := oneRequest(t, d.ListenerAddr("web"))
		c.Close()
		cancel()
		if err := <-errc; err != nil {
			t.Fatalf("run %d: Run: %v", run, err)
		}
		if status != http.StatusOK {
			t.Fatalf("run %d: status %d", run, status)
		}
	}
	if n := unknown.Load(); n > 0 {
		t.Fatalf("%d accepts while the table served did not route the listener yet", n)
	}
}
