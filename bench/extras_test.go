package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

// decodeManifest parses a manifest and decodes every spec strictly, as the
// admin API would before validating it.
func decodeManifest(t *testing.T, text string) []fsm.Object {
	t.Helper()
	objs, err := fsm.ParseManifest([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if _, err := fsm.DecodeSpec(o.Kind, o.Spec); err != nil {
			t.Fatalf("%s/%s: %v", o.Kind, o.Name, err)
		}
	}
	return objs
}

func TestRouteManifest(t *testing.T) {
	objs := decodeManifest(t, RouteManifest("prop", 250))
	if len(objs) != 250 {
		t.Fatalf("%d objects, want 250", len(objs))
	}
	last := objs[249]
	if last.Name != "r249" || !strings.Contains(string(last.Spec), `"exact":"/r/249"`) || !strings.Contains(string(last.Spec), `"body":"r249"`) {
		t.Fatalf("last route %s %s", last.Name, last.Spec)
	}
	cfg := HAProxyRoutesConfig("127.0.0.1:9", 250)
	if n := strings.Count(cfg, "http-request return"); n != 250 {
		t.Fatalf("%d haproxy rules, want 250", n)
	}
	if !strings.Contains(cfg, "content-type text/plain string r249 if { path /r/249 }") {
		t.Fatalf("haproxy config lacks the last rule:\n%s", cfg[len(cfg)-200:])
	}
}

func TestRespondConfigs(t *testing.T) {
	s := RespondSetup{Threads: 2, Listen: "127.0.0.1:18081", IdleTimeout: time.Minute, MaxConns: 4096,
		TLS: []TLSBind{{Listen: "127.0.0.1:18443", Cert: CertFiles{Kind: CertECDSA, CertFile: "/d/e.crt", KeyFile: "/d/e.key", Combined: "/d/e.pem"}}}}
	h := HAProxyRespondConfig(s)
	for _, want := range []string{"nbthread 2", "bind 127.0.0.1:18081\n", `http-request return status 200 content-type text/plain string "ok"`,
		"frontend tls_ecdsa_p256", "bind 127.0.0.1:18443 ssl crt /d/e.pem"} {
		if !strings.Contains(h, want) {
			t.Errorf("haproxy config lacks %q:\n%s", want, h)
		}
	}
	objs := decodeManifest(t, RafterRespondManifest(s))
	specs := map[string]string{}
	for _, o := range objs {
		specs[string(o.Kind)+"/"+o.Name] = string(o.Spec)
	}
	for key, want := range map[string][]string{
		"listener/plain":          {`"port":18081`, `"max_conns":4096`},
		"route/plain":             {`"listener":"plain"`, `"respond":{"status":200,"body":"ok"}`},
		"listener/tls-ecdsa-p256": {`"port":18443`, `"protocol":"https"`, `"cert_file":"/d/e.crt"`, `"key_file":"/d/e.key"`},
		"route/tls-ecdsa-p256":    {`"listener":"tls-ecdsa-p256"`},
	} {
		for _, w := range want {
			if !strings.Contains(specs[key], w) {
				t.Errorf("%s = %s, lacks %s", key, specs[key], w)
			}
		}
	}
	if len(objs) != 4 {
		t.Errorf("%d objects: %v", len(objs), specs)
	}
}

func TestPerConn(t *testing.T) {
	for _, tt := range []struct {
		before, after int64
		n             int
		want          float64
	}{{10 << 20, 10<<20 + 4096000, 2000, 2048}, {10 << 20, 9 << 20, 2000, 0}, {1, 2, 0, 0}} {
		if got := PerConn(tt.before, tt.after, tt.n); got != tt.want {
			t.Errorf("PerConn(%d, %d, %d) = %v, want %v", tt.before, tt.after, tt.n, got, tt.want)
		}
	}
}

func TestOpenIdleKeepsConnectionsOpen(t *testing.T) {
	var active atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			active.Add(1)
		case http.StateClosed, http.StateHijacked:
			active.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	set, err := OpenIdle(context.Background(), addr, "/", 40, 7, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.conns) != 40 {
		t.Fatalf("%d connections, want 40", len(set.conns))
	}
	if n := active.Load(); n != 40 {
		t.Fatalf("server sees %d connections, want 40", n)
	}
	set.Close()
	if _, err := OpenIdle(context.Background(), "127.0.0.1:1", "/", 3, 2, 2*time.Second); err == nil {
		t.Fatal("OpenIdle to a closed port succeeded")
	}
}

func TestHandshakerFullHandshakes(t *testing.T) {
	dir := t.TempDir()
	for _, kind := range []string{CertECDSA, CertRSA} {
		t.Run(kind, func(t *testing.T) {
			c, err := WriteCert(dir, kind)
			if err != nil {
				t.Fatal(err)
			}
			pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tls.LoadX509KeyPair(c.Combined, c.Combined); err != nil {
				t.Fatalf("combined PEM: %v", err)
			}
			var resumed, full atomic.Int64
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, VerifyConnection: func(cs tls.ConnectionState) error {
				if cs.DidResume {
					resumed.Add(1)
				} else {
					full.Add(1)
				}
				return nil
			}}
			srv.Config.ErrorLog = log.New(io.Discard, "", 0)
			srv.StartTLS()
			t.Cleanup(srv.Close)
			cert, _ := x509.ParseCertificate(c.CertDER)
			roots := x509.NewCertPool()
			roots.AddCert(cert)
			h := Handshaker{Addr: strings.TrimPrefix(srv.URL, "https://"), ServerName: "bench.test", Roots: roots, Workers: 3, Timeout: 5 * time.Second, SourceIPs: 5}
			r, err := h.Run(context.Background(), 30*time.Second, 12)
			if err != nil {
				t.Fatal(err)
			}
			if r.Done != 12 || r.Errors != 0 {
				t.Fatalf("%+v, want 12 handshakes and no error", r)
			}
			// The server finishes its side a moment after the client.
			testutil.WaitFor(t, 10*time.Second, "the server's side of 12 handshakes", func() bool { return full.Load() >= 12 })
			if full.Load() != 12 || resumed.Load() != 0 {
				t.Fatalf("server saw %d full and %d resumed handshakes, want 12 and 0", full.Load(), resumed.Load())
			}
			// A client that does not trust the certificate completes none.
			h.Roots = x509.NewCertPool()
			if _, err := h.Run(context.Background(), 30*time.Second, 2); !errors.Is(err, ErrHandshake) {
				t.Fatalf("untrusted: %v, want ErrHandshake", err)
			}
		})
	}
}

func TestSourceIPRotates(t *testing.T) {
	for _, tt := range []struct {
		n    int64
		k    int
		want string
	}{{0, 0, "127.0.1.1"}, {7, 1, "127.0.1.1"}, {6, 5, "127.0.1.2"}, {249, 250, "127.0.1.250"}, {250, 999, "127.0.1.1"}} {
		if got := sourceIP(tt.n, tt.k).String(); got != tt.want {
			t.Errorf("sourceIP(%d, %d) = %s, want %s", tt.n, tt.k, got, tt.want)
		}
	}
}

func TestHandshakeMeasurement(t *testing.T) {
	x, err := handshakeMeasurement(HandshakeResult{Done: 1000, Seconds: 2}, 500*time.Millisecond, 1<<20, nil)
	if err != nil || x.RPS != 500 || x.CPUPerReqUs != 500 || x.CPUSeconds != 0.5 {
		t.Fatalf("%+v %v", x, err)
	}
	if _, err := handshakeMeasurement(HandshakeResult{Done: 90, Errors: 10, Seconds: 1, FirstErr: "reset"}, time.Second, 0, nil); err == nil {
		t.Fatal("10% failed handshakes accepted")
	}
}
