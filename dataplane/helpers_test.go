package dataplane

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

// fakeSource is an in-memory ConfigSource.
type fakeSource struct {
	mu  sync.Mutex
	cfg *fsm.Config
	ch  chan struct{}
}

func newFakeSource(cfg *fsm.Config) *fakeSource {
	return &fakeSource{cfg: cfg, ch: make(chan struct{})}
}

func (s *fakeSource) Snapshot() *fsm.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

func (s *fakeSource) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

func (s *fakeSource) Set(cfg *fsm.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg = cfg
	close(s.ch)
	s.ch = make(chan struct{})
}

// config builds an fsm.Config from its parts.
type config struct {
	listeners map[string]fsm.ListenerSpec
	pools     map[string]fsm.PoolSpec
	routes    map[string]fsm.RouteSpec
	zones     map[string]bool
	index     uint64
}

func (c config) build() *fsm.Config {
	cfg := &fsm.Config{
		Index: c.index, Listeners: map[string]*fsm.Listener{}, Routes: map[string]*fsm.Route{},
		Pools: map[string]*fsm.Pool{}, Zones: map[string]*fsm.ZoneState{},
	}
	for n, s := range c.listeners {
		cfg.Listeners[n] = &fsm.Listener{Name: n, Spec: s}
	}
	for n, s := range c.pools {
		cfg.Pools[n] = &fsm.Pool{Name: n, Spec: s}
	}
	for n, s := range c.routes {
		cfg.Routes[n] = &fsm.Route{Name: n, Spec: s}
	}
	for z, e := range c.zones {
		cfg.Zones[z] = &fsm.ZoneState{Zone: z, Evacuated: e}
	}
	return cfg
}

// simpleConfig: listener "web" (ephemeral port), pool "app" with addrs,
// one catch-all route "app" to it.
func simpleConfig(addrs ...string) config {
	var bs []fsm.Backend
	for _, a := range addrs {
		bs = append(bs, fsm.Backend{Addr: a})
	}
	return config{
		listeners: map[string]fsm.ListenerSpec{"web": {Port: 0}},
		pools:     map[string]fsm.PoolSpec{"app": {Backends: bs}},
		routes: map[string]fsm.RouteSpec{"app": {Listener: "web",
			Action: fsm.RouteAction{Split: []fsm.WeightedPool{{Pool: "app", Weight: 1}}}}},
	}
}

// startDataplane runs a Dataplane on 127.0.0.1 until the test ends.
func startDataplane(t testing.TB, src ConfigSource, mod func(*Options)) *Dataplane {
	t.Helper()
	d, _ := runDataplane(t, src, mod)
	return d
}

// runDataplane is startDataplane, also returning stop: it cancels the data
// plane's Run and fails the test unless Run returns within the given time,
// without error. The test's cleanup stops it too; stop acts once.
func runDataplane(t testing.TB, src ConfigSource, mod func(*Options)) (*Dataplane, func(within time.Duration)) {
	t.Helper()
	opts := DefaultOptions()
	opts.Source = src
	opts.BindIP = "127.0.0.1"
	opts.DrainTimeout = 5 * time.Second
	if mod != nil {
		mod(&opts)
	}
	d, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx) }()
	var once sync.Once
	stop := func(within time.Duration) {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(within):
				t.Errorf("Run did not return %v after cancel", within)
			}
		})
	}
	t.Cleanup(func() { stop(20 * time.Second) })
	select {
	case <-d.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("dataplane not ready")
	}
	return d, stop
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, what, cond)
}

// seen is one request as a backend received it.
type seen struct {
	Method, URI, Proto, Host string
	Header                   http.Header
	Body                     string
}

// backend is a recording net/http server on 127.0.0.1.
type backend struct {
	addr    string
	mu      sync.Mutex
	reqs    []seen
	handler func(w http.ResponseWriter, r *http.Request)
}

func newBackend(t testing.TB, h func(w http.ResponseWriter, r *http.Request)) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	b := &backend{addr: ln.Addr().String(), handler: h}
	srv := &http.Server{Handler: http.HandlerFunc(b.serve), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return b
}

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	b.reqs = append(b.reqs, seen{Method: r.Method, URI: r.RequestURI, Proto: r.Proto, Host: r.Host, Header: r.Header.Clone(), Body: string(body)})
	b.mu.Unlock()
	if b.handler != nil {
		b.handler(w, r)
		return
	}
	w.Header()["X-Backend"] = []string{b.addr}
	_, _ = io.WriteString(w, "ok")
}

func (b *backend) requests() []seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]seen(nil), b.reqs...)
}

// posts is the POST requests b received, in order; the test fails unless
// there are want of them.
func (b *backend) posts(t *testing.T, want int) []seen {
	t.Helper()
	var posts []seen
	for _, r := range b.requests() {
		if r.Method == "POST" {
			posts = append(posts, r)
		}
	}
	if len(posts) != want {
		t.Fatalf("the backend saw %d POSTs, want %d", len(posts), want)
	}
	return posts
}

// rawExchange sends raw request bytes on a new connection and reads one
// response.
func rawExchange(t testing.TB, addr, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response to %q: %v", firstLine(req), err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(body)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\r'); i >= 0 {
		return s[:i]
	}
	return s
}

// serveConns accepts connections on 127.0.0.1 until the test ends and hands
// each, with a reader over it and a deadline of within, to handle on a
// goroutine of its own; the raw backends of the tests are built on it.
func serveConns(tb testing.TB, within time.Duration, handle func(c net.Conn, br *bufio.Reader)) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	tb.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(within))
				handle(c, bufio.NewReader(c))
			})
		}
	})
	return ln.Addr().String()
}

// readHead reads one request head (up to its blank line) from br.
func readHead(br *bufio.Reader) (string, error) {
	var sb strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return sb.String(), err
		}
		sb.WriteString(line)
		if strings.TrimSpace(line) == "" {
			return sb.String(), nil
		}
	}
}
