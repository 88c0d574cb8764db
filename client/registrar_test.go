package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// leaseAPI is a one-node lease API: it grants leases, registers backends,
// answers keepalives until a lease is "lost", and records every request.
type leaseAPI struct {
	srv *httptest.Server

	mu     sync.Mutex
	next   uint64
	live   map[uint64]bool
	seen   []string
	refuse string // when set, registrations answer 404 naming this field
}

func newLeaseAPI(t *testing.T) *leaseAPI {
	t.Helper()
	a := &leaseAPI{next: 10, live: map[uint64]bool{}}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *leaseAPI) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen = append(a.seen, strings.TrimSpace(r.Method+" "+r.URL.EscapedPath()+" "+string(body)))
	w.Header().Set("Content-Type", "application/json")
	fail := func(status int, body string) {
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
	const lost = `{"error":{"code":"not_found","message":"lease not found","field":"id"}}`
	var id uint64
	rest, isLease := strings.CutPrefix(r.URL.Path, "/v1/leases/")
	if isLease {
		idText, _, _ := strings.Cut(rest, "/")
		id, _ = strconv.ParseUint(idText, 10, 64)
	}
	switch {
	case r.Method == "POST" && r.URL.Path == "/v1/leases":
		a.next++
		a.live[a.next] = true
		fmt.Fprintf(w, `{"id":%d,"ttl":"2s","index":%d}`, a.next, a.next)
	case r.Method == "PUT" && strings.HasPrefix(r.URL.Path, "/v1/pools/"):
		if a.refuse != "" {
			fail(404, fmt.Sprintf(`{"error":{"code":"not_found","message":"not found","field":%q}}`, a.refuse))
			return
		}
		io.WriteString(w, `{"index":100}`)
	case r.Method == "PUT" && isLease && strings.HasSuffix(rest, "/keepalive"):
		if !a.live[id] {
			fail(404, lost)
			return
		}
		fmt.Fprintf(w, `{"id":%d,"ttl":"2s"}`, id)
	case r.Method == "DELETE" && isLease:
		if !a.live[id] {
			fail(404, lost)
			return
		}
		delete(a.live, id)
		io.WriteString(w, `{"index":101}`)
	default:
		fail(404, `{"error":{"code":"not_found","message":"no endpoint"}}`)
	}
}

func (a *leaseAPI) requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.seen...)
}

func (a *leaseAPI) count(prefix string) int {
	n := 0
	for _, r := range a.requests() {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

func (a *leaseAPI) lose(id uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.live, id)
}

// deadAddr is a loopback address nobody listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, 15*time.Second, what, cond)
}

// running is a Registrar's Run in a goroutine; err is set when done closes.
type running struct {
	done chan struct{}
	err  error
}

func startRegistrar(t *testing.T, cfg RegistrarConfig) (*Registrar, context.CancelFunc, *running) {
	t.Helper()
	r, err := NewRegistrar(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &running{done: make(chan struct{})}
	go func() {
		defer close(run.done)
		run.err = r.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-run.done })
	return r, cancel, run
}

// TestRegistrarLifecycle: register through the first address that works,
// keep alive, register again when the lease is lost, revoke on stop.
func TestRegistrarLifecycle(t *testing.T) {
	api := newLeaseAPI(t)
	r, stop, done := startRegistrar(t, RegistrarConfig{
		Clients:  []*Client{New(deadAddr(t), "", nil), New(api.srv.URL, "", nil)},
		Pool:     "app",
		Addr:     "10.0.0.5:8080",
		Zone:     "a",
		TTL:      2 * time.Second,
		Interval: 50 * time.Millisecond,
	})
	waitFor(t, "registration", func() bool { return r.Lease() != 0 })
	first := r.Lease()
	reqs := api.requests()
	if len(reqs) < 2 || reqs[0] != `POST /v1/leases {"ttl":"2s"}` ||
		reqs[1] != fmt.Sprintf(`PUT /v1/pools/app/backends/10.0.0.5:8080 {"lease":%d,"weight":1,"zone":"a"}`, first) {
		t.Fatalf("requests %q", reqs)
	}
	waitFor(t, "keepalives", func() bool { return api.count(fmt.Sprintf("PUT /v1/leases/%d/keepalive", first)) >= 3 })

	api.lose(first)
	waitFor(t, "registration under a new lease", func() bool { return r.Lease() != 0 && r.Lease() != first })
	second := r.Lease()
	if api.count("POST /v1/leases") != 2 {
		t.Fatalf("requests %q", api.requests())
	}

	stop()
	<-done.done
	if done.err != nil {
		t.Fatalf("Run: %v", done.err)
	}
	if api.count(fmt.Sprintf("DELETE /v1/leases/%d", second)) != 1 {
		t.Fatalf("no revoke of lease %d: %q", second, api.requests())
	}
}

// TestRegistrarRefused: an unknown pool ends Run with ErrRefused naming
// the field; the lease granted for it is revoked.
func TestRegistrarRefused(t *testing.T) {
	api := newLeaseAPI(t)
	api.refuse = "pool"
	_, _, done := startRegistrar(t, RegistrarConfig{
		Clients: []*Client{New(api.srv.URL, "", nil)}, Pool: "nope", Addr: "10.0.0.5:8080", TTL: 2 * time.Second,
	})
	waitFor(t, "Run to end", func() bool {
		select {
		case <-done.done:
			return true
		default:
			return false
		}
	})
	err := done.err
	var ae *APIError
	if !errors.Is(err, ErrRefused) || !errors.As(err, &ae) || ae.Field != "pool" {
		t.Fatalf("Run = %v, want ErrRefused naming pool", err)
	}
	if api.count("DELETE /v1/leases/11") != 1 {
		t.Fatalf("granted lease not revoked: %q", api.requests())
	}
}

func TestRegistrarConfigValidate(t *testing.T) {
	c := []*Client{New("127.0.0.1:1", "", nil)}
	tests := []struct {
		field string
		cfg   RegistrarConfig
	}{
		{"clients", RegistrarConfig{Pool: "p", Addr: "a:1", TTL: 10 * time.Second}},
		{"pool", RegistrarConfig{Clients: c, Addr: "a:1", TTL: 10 * time.Second}},
		{"addr", RegistrarConfig{Clients: c, Pool: "p", TTL: 10 * time.Second}},
		{"ttl", RegistrarConfig{Clients: c, Pool: "p", Addr: "a:1", TTL: time.Second}},
		{"ttl", RegistrarConfig{Clients: c, Pool: "p", Addr: "a:1", TTL: 25 * time.Hour}},
		{"weight", RegistrarConfig{Clients: c, Pool: "p", Addr: "a:1", TTL: 10 * time.Second, Weight: -1}},
		{"interval", RegistrarConfig{Clients: c, Pool: "p", Addr: "a:1", TTL: 10 * time.Second, Interval: 10 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			err := tt.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.field+":") {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.field)
			}
		})
	}
}
