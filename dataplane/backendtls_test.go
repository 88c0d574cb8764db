package dataplane

import (
	"crypto/tls"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

// mtlsBackend serves HTTPS on loopback, requiring a client certificate
// signed by pki's CA; it answers with the client certificate's common
// name. Without keep-alive, every request costs the proxy a new
// connection, so handshakes and their resumption show.
func mtlsBackend(t testing.TB, pki *testutil.PKI) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // the refused handshakes are the point
	}
	srv.SetKeepAlivesEnabled(false)
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

func tlsErrCount(t *testing.T, d *Dataplane, pool, reason string) float64 {
	return counterValue(t, d.tlsm.errors.WithLabelValues(pool, reason))
}

// Backend TLS with a client certificate (mutual TLS): the right
// certificate gets through; a missing client certificate, an unknown CA
// or a wrong server name is a 502, counted by reason; sessions resume.
func TestBackendMutualTLS(t *testing.T) {
	pki := testutil.NewPKI(t, "backend.internal")
	other := testutil.NewPKI(t, "backend.internal")
	addr := mtlsBackend(t, pki)

	cfg := config{
		listeners: map[string]fsm.ListenerSpec{"web": {Port: 0}},
		pools:     map[string]fsm.PoolSpec{},
		routes:    map[string]fsm.RouteSpec{},
	}
	withCert := func(tl fsm.PoolTLS) *fsm.PoolTLS {
		tl.CertFile, tl.KeyFile = pki.ClientCertFile, pki.ClientKeyFile
		return &tl
	}
	pools := map[string]*fsm.PoolTLS{
		"good":      withCert(fsm.PoolTLS{CA: string(pki.CAPEM)}),
		"cafile":    withCert(fsm.PoolTLS{CAFile: pki.CAFile, ServerName: "backend.internal"}),
		"nocert":    {CA: string(pki.CAPEM)},
		"wrongca":   withCert(fsm.PoolTLS{CA: string(other.CAPEM)}),
		"wrongname": withCert(fsm.PoolTLS{CA: string(pki.CAPEM), ServerName: "other.internal"}),
		"missing":   withCert(fsm.PoolTLS{CAFile: "/nonexistent/ca.pem"}),
	}
	for name, tl := range pools {
		cfg.pools[name] = fsm.PoolSpec{Backends: []fsm.Backend{{Addr: addr}}, TLS: tl}
		cfg.routes[name] = fsm.RouteSpec{Listener: "web", Match: fsm.RouteMatch{Hosts: []string{name + ".test"}},
			Action: fsm.RouteAction{Split: []fsm.WeightedPool{{Pool: name, Weight: 1}}}}
	}
	reg := prometheus.NewRegistry()
	var logBuf testutil.SyncBuffer
	d := startDataplane(t, newFakeSource(cfg.build()), func(o *Options) {
		o.Registerer = reg
		o.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
	})
	proxy := d.ListenerAddr("web")

	get := func(host string) (int, string) {
		resp, body := rawExchange(t, proxy, "GET / HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
		return resp.StatusCode, body
	}
	const n = 4
	for _, pool := range []string{"good", "cafile"} {
		for range n {
			if code, body := get(pool + ".test"); code != 200 || body != "rafter-client" {
				t.Fatalf("%s: %d %q, want 200 from a backend that saw our client certificate", pool, code, body)
			}
		}
		if got := counterValue(t, d.tlsm.handshakes.WithLabelValues(pool, "true")); got < n-1 {
			t.Errorf("%s: %v resumed handshakes of %d connections, want %d", pool, got, n, n-1)
		}
	}
	for pool, reason := range map[string]string{
		"nocert": "rejected", "wrongca": "verify", "wrongname": "verify", "missing": "config",
	} {
		for range n {
			if code, body := get(pool + ".test"); code != 502 {
				t.Fatalf("%s: %d %q, want 502", pool, code, body)
			}
		}
		// fasthttp may dial twice for one request when a dial fails at once.
		if l := logBuf.String(); !strings.Contains(l, "pool="+pool+" backend="+addr+" reason="+reason) {
			t.Errorf("%s: no warning naming the pool, backend and reason %s in the log:\n%s", pool, reason, l)
		}
		if got := tlsErrCount(t, d, pool, reason); got < n {
			t.Errorf("%s: rafter_backend_tls_errors_total{reason=%q} = %v, want %d", pool, reason, got, n)
		}
	}
}

// insecure_skip_verify reaches a backend whose CA is unknown, and shows
// in rafter_pool_tls_insecure_skip_verify.
func TestBackendTLSInsecureSkipVerify(t *testing.T) {
	pki := testutil.NewPKI(t)
	addr := mtlsBackend(t, pki)
	cfg := simpleConfig(addr)
	cfg.pools["app"] = fsm.PoolSpec{Backends: []fsm.Backend{{Addr: addr}},
		TLS: &fsm.PoolTLS{InsecureSkipVerify: true, CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile}}
	var logBuf testutil.SyncBuffer
	d := startDataplane(t, newFakeSource(cfg.build()), func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logBuf, nil)) })
	resp, body := rawExchange(t, d.ListenerAddr("web"), "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp.StatusCode != 200 || body != "rafter-client" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if g := gaugeValue(t, d.tlsm.insecure.WithLabelValues("app")); g != 1 {
		t.Errorf("rafter_pool_tls_insecure_skip_verify = %v", g)
	}
	if l := logBuf.String(); !strings.Contains(l, "tls.insecure_skip_verify") || !strings.Contains(l, "pool=app") {
		t.Errorf("no warning about insecure_skip_verify in the log:\n%s", logBuf.String())
	}
}
