package hardening

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/rafterlb/rafter/dataplane"
	"github.com/rafterlb/rafter/fsm"
)

// waitTimeout bounds every poll: generous, for -race on a loaded machine.
const waitTimeout = 20 * time.Second

// poll calls cond until it returns true or waitTimeout passes.
func poll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, waitTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// swapSource serves the configuration last set, signalling each change.
type swapSource struct {
	mu  sync.Mutex
	cfg *fsm.Config
	ch  chan struct{}
}

func newSwapSource() *swapSource { return &swapSource{cfg: fsm.Empty(), ch: make(chan struct{})} }

func (s *swapSource) Snapshot() *fsm.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

func (s *swapSource) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

func (s *swapSource) set(cfg *fsm.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg = cfg
	close(s.ch)
	s.ch = make(chan struct{})
}

// skipLog records the objects the data plane's compiler left out: after
// validation accepted them, every one is a disagreement between fsm and
// the data plane.
type skipLog struct {
	mu      sync.Mutex
	skipped []string
}

func (l *skipLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *skipLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *skipLog) WithGroup(string) slog.Handler            { return l }
func (l *skipLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "configuration object skipped" {
		return nil
	}
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool {
		msg += " " + a.String()
		return true
	})
	l.mu.Lock()
	l.skipped = append(l.skipped, msg)
	l.mu.Unlock()
	return nil
}

// take returns the skipped objects recorded so far and forgets them.
func (l *skipLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.skipped
	l.skipped = nil
	return out
}

// servingPlane is a data plane on in-memory listeners whose upstream
// dials all fail, so it sends traffic nowhere.
type servingPlane struct {
	dp   *dataplane.Dataplane
	log  *skipLog
	mu   sync.Mutex
	lns  map[string]*fasthttputil.InmemoryListener // by listener name, the latest
	stop func()
}

var errNoUpstream = errors.New("hardening: upstream connections are not made in this test")

// startPlane runs a data plane over src until the test ends.
func startPlane(t testing.TB, src dataplane.ConfigSource) *servingPlane {
	t.Helper()
	p := &servingPlane{log: &skipLog{}, lns: map[string]*fasthttputil.InmemoryListener{}}
	opts := dataplane.DefaultOptions()
	opts.Source = src
	opts.BindIP = "127.0.0.1"
	opts.Zone = "zone-1"
	opts.Logger = slog.New(p.log)
	opts.DrainTimeout = time.Second
	opts.ListenShards = 1 // one in-memory listener per name
	opts.Listen = func(name string, _ int, _ string) (net.Listener, error) {
		ln := fasthttputil.NewInmemoryListener()
		p.mu.Lock()
		p.lns[name] = ln
		p.mu.Unlock()
		return ln, nil
	}
	opts.Dial = func(string, time.Duration) (net.Conn, error) { return nil, errNoUpstream }
	dp, err := dataplane.New(opts)
	if err != nil {
		t.Fatalf("dataplane.New: %v", err)
	}
	p.dp = dp
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- dp.Run(ctx) }()
	var once sync.Once
	p.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("dataplane.Run: %v", err)
			}
		})
	}
	t.Cleanup(p.stop)
	return p
}

// waitIndex waits until the plane serves a table compiled from index.
func (p *servingPlane) waitIndex(t testing.TB, index uint64) {
	t.Helper()
	poll(t, fmt.Sprintf("data plane at index %d", index), func() bool {
		select {
		case <-p.dp.Ready():
			return p.dp.Table().Index() >= index
		default:
			return false
		}
	})
}

// check fails the test for every object the compiler skipped, then sends
// one request through every bound listener of cfg and waits for an answer.
func (p *servingPlane) check(t testing.TB, cfg *fsm.Config) {
	t.Helper()
	if s := p.log.take(); len(s) > 0 {
		t.Errorf("the data plane skipped %d objects validation accepted:\n%v", len(s), s)
	}
	names := make([]string, 0, len(cfg.Listeners))
	for name := range cfg.Listeners {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if p.dp.ListenerAddr(name) == "" {
			continue // https without certificate files on this machine
		}
		p.mu.Lock()
		ln := p.lns[name]
		p.mu.Unlock()
		if ln == nil {
			continue
		}
		if err := roundTrip(ln, cfg); err != nil {
			t.Errorf("listener %s: %v", name, err)
		}
	}
}

// roundTrip sends one request with a host and path some route may match.
func roundTrip(ln *fasthttputil.InmemoryListener, cfg *fsm.Config) error {
	host, path := "a.example.com", "/"
	for _, name := range sortedRouteNames(cfg) {
		r := cfg.Routes[name].Spec
		if len(r.Match.Hosts) > 0 && r.Match.Hosts[0][0] != '*' {
			host = r.Match.Hosts[0]
		}
		if r.Match.Path.Prefix != "" {
			path = r.Match.Path.Prefix
		}
		break
	}
	c, err := ln.Dial()
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(waitTimeout)); err != nil {
		return err
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nX-A: b\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusInternalServerError {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func sortedRouteNames(cfg *fsm.Config) []string {
	out := make([]string, 0, len(cfg.Routes))
	for name := range cfg.Routes {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
