package systemtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// testBackend is a net/http server on 127.0.0.1:0 that answers
// "NAME rev=R route=X" where R and X are the X-Rev and X-Route request
// headers the proxy added, so a client can tell which route version and
// which pool served it.
type testBackend struct {
	name string
	srv  *httptest.Server

	hits       atomic.Int64 // proxied requests (health checks excluded)
	healthFail atomic.Bool  // /healthz answers 500 while set

	// /hold: arrived gets one value per held request; the answer is sent
	// once release is closed and holdMin passed (or after holdCap, so
	// nothing hangs).
	arrived chan struct{}
	release chan struct{}
	once    sync.Once
}

// A held request lasts at least holdMin and at most holdCap.
const (
	holdMin = 1500 * time.Millisecond
	holdCap = 10 * time.Second
)

// holdBody is the body /hold answers: large enough to span many writes,
// recognisable so a truncated copy is caught.
var holdBody = bytes.Repeat([]byte("0123456789abcdef"), 16<<10)

func startBackend(t *testing.T, name string) *testBackend {
	t.Helper()
	b := &testBackend{name: name, arrived: make(chan struct{}, 16), release: make(chan struct{})}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.stop)
	return b
}

func (b *testBackend) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz":
		if b.healthFail.Load() {
			http.Error(w, "failing on purpose", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
		return
	case "/hold":
		b.hits.Add(1)
		b.arrived <- struct{}{}
		// Held at least minHold, and until released (at most holdCap).
		minHold := time.NewTimer(holdMin)
		defer minHold.Stop()
		select {
		case <-b.release:
		case <-time.After(holdCap):
		case <-r.Context().Done():
			return
		}
		select {
		case <-minHold.C:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(holdBody)))
		w.Write(holdBody)
		return
	}
	b.hits.Add(1)
	fmt.Fprintf(w, "%s rev=%s route=%s", b.name, r.Header.Get("X-Rev"), r.Header.Get("X-Route"))
}

// Addr is the backend's host:port.
func (b *testBackend) Addr() string { return b.srv.Listener.Addr().String() }

// Release lets every held request (and every later one) answer.
func (b *testBackend) Release() { b.once.Do(func() { close(b.release) }) }

func (b *testBackend) stop() {
	b.Release()
	b.srv.Close()
}

// deadAddr is a loopback address nothing listens on: a port the kernel
// handed out and that was closed again.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("reserving a port: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// dataPort is a port free on the given agents' addresses, for a listener
// every node binds at its own --bind IP.
func dataPort(t *testing.T, agents []*Agent) int {
	t.Helper()
	var ips []string
	for _, a := range agents {
		ips = append(ips, a.IP)
	}
	ports, err := testutil.FreePorts(ips, 1)
	if err != nil {
		t.Fatalf("data-plane port: %v", err)
	}
	return ports[0]
}

// proxyURL is the URL of path on agent a's listener at port.
func proxyURL(a *Agent, port int, path string) string {
	return "http://" + net.JoinHostPort(a.IP, strconv.Itoa(port)) + path
}

// newProxyClient is a keep-alive client that counts the connections it
// opens: a connection the proxy drops shows up as an extra dial even when
// net/http silently retries the request on a fresh one.
func newProxyClient(dials *atomic.Int64) *http.Client {
	d := &net.Dialer{Timeout: 2 * time.Second}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dials != nil {
				dials.Add(1)
			}
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// get sends GET url and returns the status and body.
func get(client *http.Client, url string) (int, string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, string(b), fmt.Errorf("reading body: %w", err)
	}
	return resp.StatusCode, string(b), nil
}

// write sends one admin write to agent a, retrying while the cluster has
// no leader or the connection fails, and returns the index it applied at.
func (c *Cluster) write(t *testing.T, a *Agent, method, path string, body []byte) uint64 {
	t.Helper()
	var last string
	deadline := time.Now().Add(15 * time.Second)
	for attempt := 0; attempt < 100 && time.Now().Before(deadline); attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := c.Do(ctx, a, method, path, body)
		cancel()
		switch {
		case err != nil:
			last = err.Error()
		case r.Status == http.StatusOK:
			var ack struct {
				Index uint64 `json:"index"`
			}
			if err := json.Unmarshal(r.Body, &ack); err != nil || ack.Index == 0 {
				t.Fatalf("%s %s on %s: answer without an index: %s", method, path, a.ID, r.Body)
			}
			return ack.Index
		case r.Status == http.StatusServiceUnavailable:
			last = fmt.Sprintf("%d %s", r.Status, r.Body)
		default:
			t.Fatalf("%s %s on %s: %d %s", method, path, a.ID, r.Status, r.Body)
		}
		time.Sleep(100 * time.Millisecond) // back-off between retries, not ordering
	}
	t.Fatalf("%s %s on %s never acknowledged: %s", method, path, a.ID, last)
	return 0
}

// putJSON writes spec (marshalled) at /v1/{kind}/{name} through agent a.
func (c *Cluster) putJSON(t *testing.T, a *Agent, kind, name string, spec any) uint64 {
	t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	return c.write(t, a, "PUT", "/v1/"+kind+"/"+name, b)
}

// targetStatus is one entry of GET /v1/health.
type targetStatus struct {
	Pool    string `json:"pool"`
	Addr    string `json:"addr"`
	Healthy bool   `json:"healthy"`
	Checks  uint64 `json:"checks"`
}

// health reads agent a's health view of pool, by backend address.
func (c *Cluster) health(a *Agent, pool string) (map[string]targetStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := c.Do(ctx, a, "GET", "/v1/health?pool="+pool, nil)
	if err != nil {
		return nil, err
	}
	if r.Status != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/health on %s: %d %s", a.ID, r.Status, r.Body)
	}
	var v struct {
		Targets []targetStatus `json:"targets"`
	}
	if err := json.Unmarshal(r.Body, &v); err != nil {
		return nil, fmt.Errorf("decoding /v1/health of %s: %w", a.ID, err)
	}
	m := map[string]targetStatus{}
	for _, ts := range v.Targets {
		if ts.Pool == pool {
			m[ts.Addr] = ts
		}
	}
	return m, nil
}

// waitHealth polls every agent until its active checks judged each
// address of pool as want says.
func (c *Cluster) waitHealth(t *testing.T, pool string, want map[string]bool) {
	t.Helper()
	for _, a := range c.Agents {
		testutil.Eventually(t, 20*time.Second, fmt.Sprintf("%s's health view of pool %s to be %v", a.ID, pool, want), func() error {
			got, err := c.health(a, pool)
			if err != nil {
				return err
			}
			for addr, healthy := range want {
				ts, ok := got[addr]
				if !ok {
					return fmt.Errorf("%s not in the view: %+v", addr, got)
				}
				if ts.Checks == 0 {
					return fmt.Errorf("%s not checked yet", addr)
				}
				if ts.Healthy != healthy {
					return fmt.Errorf("%s healthy=%v", addr, ts.Healthy)
				}
			}
			return nil
		})
	}
}

// waitServes polls agent a's listener until GET path answers 200 with a
// body for which ok is true.
func waitServes(t *testing.T, client *http.Client, a *Agent, port int, path string, ok func(string) bool, what string) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, fmt.Sprintf("%s to serve %s on %s", a.ID, path, what), func() error {
		code, body, err := get(client, proxyURL(a, port, path))
		if err != nil {
			return err
		}
		if code != http.StatusOK || !ok(body) {
			return fmt.Errorf("%d %q", code, body)
		}
		return nil
	})
}

// percentile returns the p-th percentile (0..100) of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

// refused reports nil once a TCP connection to addr is refused.
func refused(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err == nil {
		conn.Close()
		return fmt.Errorf("%s still accepts connections", addr)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil
	}
	return fmt.Errorf("dialing %s: %v (want connection refused)", addr, err)
}

// hasPrefixes reports whether s starts with one of ps.
func hasPrefixes(s string, ps ...string) bool {
	for _, p := range ps {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
