package health

import (
	"bufio"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

// tlsBackend serves 200 over HTTPS on loopback to clients with a
// certificate signed by pki's CA.
func tlsBackend(t *testing.T, pki *testutil.PKI) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(tls.NewListener(ln, pki.ServerConfig()))
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// Checks of a pool with tls verify the backend and present the client
// certificate as the proxy does: a backend is up only when TLS succeeds.
func TestActiveChecksFollowPoolTLS(t *testing.T) {
	pki := testutil.NewPKI(t)
	other := testutil.NewPKI(t)
	addr := tlsBackend(t, pki)
	// Generous timeouts: handshakes under the race detector on a busy machine are slow.
	hc := &fsm.HealthCheck{Path: "/", Interval: fsm.Duration(400 * time.Millisecond), Timeout: fsm.Duration(400 * time.Millisecond), Rise: 1, Fall: 3}
	good := &fsm.PoolTLS{CA: string(pki.CAPEM), CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile}
	pools := map[string]fsm.PoolSpec{
		"good":    {HealthCheck: hc, Backends: []fsm.Backend{{Addr: addr}}, TLS: good},
		"nocert":  {HealthCheck: hc, Backends: []fsm.Backend{{Addr: addr}}, TLS: &fsm.PoolTLS{CA: string(pki.CAPEM)}},
		"wrongca": {HealthCheck: hc, Backends: []fsm.Backend{{Addr: addr}}, TLS: &fsm.PoolTLS{CA: string(other.CAPEM), CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile}},
		"plain":   {HealthCheck: hc, Backends: []fsm.Backend{{Addr: addr}}},
		"nofile":  {HealthCheck: hc, Backends: []fsm.Backend{{Addr: addr}}, TLS: &fsm.PoolTLS{CAFile: "/nonexistent/ca.pem"}},
	}
	m := NewMonitor(Options{})
	m.Update(pools)
	startMonitor(t, m)
	for pool, reason := range map[string]string{
		"nocert": "certificate required", "wrongca": "certificate", "plain": "status 400", "nofile": "tls config",
	} {
		waitFor(t, pool+" down", func() bool { return !status(t, m, pool, addr).Healthy })
		if r := status(t, m, pool, addr).Reason; !strings.Contains(r, reason) {
			t.Errorf("%s: reason %q, want it to mention %q", pool, r, reason)
		}
	}
	waitFor(t, "good checked a few times", func() bool { return status(t, m, "good", addr).Checks >= 3 })
	if s := status(t, m, "good", addr); !s.Healthy {
		t.Fatalf("good: down: %s", s.Reason)
	}
	// Given the client certificate, the pool that lacked it comes back.
	pools["nocert"] = fsm.PoolSpec{HealthCheck: hc, Backends: []fsm.Backend{{Addr: addr}}, TLS: good}
	m.Update(pools)
	waitFor(t, "nocert up with a client certificate", func() bool { return status(t, m, "nocert", addr).Healthy })
}

// A pool that sends the PROXY protocol to its backends starts each check
// with a LOCAL header: the check is the proxy's own connection.
func TestActiveChecksSendProxyLocal(t *testing.T) {
	for _, v := range []string{fsm.ProxyProtocolV1, fsm.ProxyProtocolV2} {
		t.Run(v, func(t *testing.T) {
			got := make(chan string, 16)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					_ = c.SetDeadline(time.Now().Add(5 * time.Second))
					br := bufio.NewReader(c)
					want := proxyV1Local
					if v == fsm.ProxyProtocolV2 {
						want = proxyV2Local
					}
					hdr := make([]byte, len(want))
					_, _ = io.ReadFull(br, hdr)
					select {
					case got <- string(hdr):
					default:
					}
					if req, err := http.ReadRequest(br); err == nil && req.URL.Path == "/h" {
						_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
					}
					c.Close()
				}
			}()
			addr := ln.Addr().String()
			hc := &fsm.HealthCheck{Path: "/h", Interval: fsm.Duration(200 * time.Millisecond), Timeout: fsm.Duration(200 * time.Millisecond), Rise: 1, Fall: 3}
			m := NewMonitor(Options{})
			m.Update(map[string]fsm.PoolSpec{"p": {HealthCheck: hc, SendProxyProtocol: v, Backends: []fsm.Backend{{Addr: addr}}}})
			startMonitor(t, m)
			waitFor(t, "three checks", func() bool { return status(t, m, "p", addr).Checks >= 3 })
			if s := status(t, m, "p", addr); !s.Healthy {
				t.Fatalf("down: %s", s.Reason)
			}
			want := proxyV1Local
			if v == fsm.ProxyProtocolV2 {
				want = proxyV2Local
			}
			if h := <-got; h != want {
				t.Fatalf("header %q, want %q", h, want)
			}
		})
	}
}
