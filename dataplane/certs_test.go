package dataplane

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
	"github.com/rafterlb/rafter/secrets"
)

func testKeyring(t testing.TB) *secrets.Keyring {
	t.Helper()
	text, err := secrets.Generate()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := secrets.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// sealedCert makes a certificate object for names with its key sealed by
// kr, and returns the leaf's serial to tell it apart when served.
func sealedCert(t testing.TB, kr *secrets.Keyring, name string, names ...string) (*fsm.Certificate, string) {
	t.Helper()
	certPEM, keyPEM := testutil.Cert(t, testutil.CertOptions{Names: names})
	sealed, err := kr.Seal([]byte(keyPEM), secrets.CertificateKeyAAD(name))
	if err != nil {
		t.Fatal(err)
	}
	info, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	return &fsm.Certificate{Name: name, Spec: fsm.CertificateSpec{Cert: certPEM, EncryptedKey: sealed}}, info.Leaf.SerialNumber.String()
}

// handshake connects to addr with SNI sni ("" sends none) and returns the
// served leaf's serial.
func handshake(addr, sni string, conf *tls.Config) (string, tls.ConnectionState, error) {
	c := conf.Clone()
	c.ServerName = sni
	if c.ServerName == "" {
		// tls.Dial sends no SNI for an IP address.
		c.ServerName = ""
	}
	c.InsecureSkipVerify = true
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, c)
	if err != nil {
		return "", tls.ConnectionState{}, err
	}
	defer conn.Close()
	st := conn.ConnectionState()
	return st.PeerCertificates[0].SerialNumber.String(), st, nil
}

func TestSNISelection(t *testing.T) {
	leaf := func(names ...string) *tls.Certificate {
		return &tls.Certificate{Leaf: &x509.Certificate{DNSNames: names}}
	}
	exact := leaf("app.example.com")
	wild := leaf("*.example.com")
	deepWild := leaf("*.eu.example.com")
	both := leaf("api.example.org", "*.example.org")
	shadow := leaf("app.example.com", "*.example.com") // listed after exact and wild: loses both
	def := leaf("default.test")
	loaded := map[string]*tls.Certificate{"exact": exact, "wild": wild, "deep": deepWild, "both": both, "shadow": shadow, "def": def}
	tbl := buildSNI(&fsm.ListenerTLS{Certificates: []string{"exact", "wild", "deep", "both", "shadow", "def", "unloaded"}, Default: "def"}, loaded)
	names := map[*tls.Certificate]string{exact: "exact", wild: "wild", deepWild: "deep", both: "both", shadow: "shadow", def: "def"}
	for _, tt := range []struct{ sni, want string }{
		{"app.example.com", "exact"},
		{"APP.Example.COM", "exact"},
		{"app.example.com.", "exact"},
		{"other.example.com", "wild"},
		{"a.eu.example.com", "deep"},   // the longest wildcard
		{"a.b.eu.example.com", "deep"}, // still the longest that matches
		{"x.us.example.com", "wild"},   // only the shorter one matches
		{"example.com", "def"},         // a wildcard needs a label before it
		{"api.example.org", "both"},    // exact name of a multi-name cert
		{"www.example.org", "both"},    // its wildcard
		{"default.test", "def"},        // exact
		{"unknown.net", "def"},         // nothing matches
		{"", "def"},                    // no SNI
		{"localhost", "def"},           // no dot at all
		{strings.Repeat("a.", 120) + "example.com", "wild"},
	} {
		t.Run(tt.sni, func(t *testing.T) {
			if got := names[tbl.pick(tt.sni)]; got != tt.want {
				t.Fatalf("pick(%q) = %s, want %s", tt.sni, got, tt.want)
			}
		})
	}
	// A default that could not be loaded falls back to the first loaded.
	tbl = buildSNI(&fsm.ListenerTLS{Certificates: []string{"missing", "wild", "exact"}, Default: "missing"}, loaded)
	if tbl.pick("") != wild {
		t.Fatal("an unloaded default does not fall back to the first loaded certificate")
	}
	// Nothing loaded: no certificate, and the handshake fails cleanly.
	if buildSNI(&fsm.ListenerTLS{Certificates: []string{"missing"}}, loaded).pick("x") != nil {
		t.Fatal("a table without certificates picked one")
	}
}

// tlsConfigWith returns a config with listener web (https, naming certs)
// routed to be, and the certificates.
func tlsConfigWith(be string, spec *fsm.ListenerTLS, certs ...*fsm.Certificate) *fsm.Config {
	c := simpleConfig(be)
	c.listeners["web"] = fsm.ListenerSpec{Protocol: "https", TLS: spec}
	cfg := c.build()
	cfg.Certificates = map[string]*fsm.Certificate{}
	for _, ct := range certs {
		cfg.Certificates[ct.Name] = ct
	}
	return cfg
}

func TestSNIListener(t *testing.T) {
	be := newBackend(t, nil)
	kr := testKeyring(t)
	app, appSerial := sealedCert(t, kr, "app", "app.example.com")
	wild, wildSerial := sealedCert(t, kr, "wild", "*.example.com")
	def, defSerial := sealedCert(t, kr, "def", "fallback.test")
	spec := &fsm.ListenerTLS{Certificates: []string{"app", "wild", "def"}, Default: "def"}
	src := newFakeSource(tlsConfigWith(be.addr, spec, app, wild, def))
	d := startDataplane(t, src, func(o *Options) { o.Secrets = kr })
	addr := d.ListenerAddr("web")
	for _, tt := range []struct{ sni, want string }{
		{"app.example.com", appSerial}, {"img.example.com", wildSerial}, {"other.org", defSerial}, {"", defSerial},
	} {
		got, _, err := handshake(addr, tt.sni, &tls.Config{})
		if err != nil || got != tt.want {
			t.Errorf("SNI %q: serial %s, %v; want %s", tt.sni, got, err, tt.want)
		}
	}
}

// TestCertificateRotationUnderLoad: bounded concurrent new TLS
// connections while the certificate is replaced several times: no
// handshake fails, each new certificate is served after its swap, the
// listener is never rebound (a connection opened before the first swap
// still works after the last).
func TestCertificateRotationUnderLoad(t *testing.T) {
	be := newBackend(t, nil)
	kr := testKeyring(t)
	cert, serial := sealedCert(t, kr, "web", "app.example.com")
	spec := &fsm.ListenerTLS{Certificates: []string{"web"}}
	src := newFakeSource(tlsConfigWith(be.addr, spec, cert))
	d := startDataplane(t, src, func(o *Options) { o.Secrets = kr })
	addr := d.ListenerAddr("web")

	held, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "app.example.com", InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldBR := bufio.NewReader(held)
	get := func() error {
		held.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(held, "GET /held HTTP/1.1\r\nHost: app.example.com\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(heldBR, nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if err := get(); err != nil {
		t.Fatalf("first request on the held connection: %v", err)
	}

	const workers, perWorker, rotations = 4, 400, 5
	deadline := time.Now().Add(60 * time.Second)
	var handshakes, failures atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker && time.Now().Before(deadline); i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := handshake(addr, "app.example.com", &tls.Config{}); err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				handshakes.Add(1)
			}
		}()
	}
	served := []string{serial}
	for r := 1; r <= rotations; r++ {
		// Each swap lands among handshakes in flight.
		from := handshakes.Load() + failures.Load()
		testutil.WaitFor(t, 30*time.Second, "handshakes before the next rotation", func() bool {
			return handshakes.Load()+failures.Load() >= from+40
		})
		next, nextSerial := sealedCert(t, kr, "web", "app.example.com")
		cfg := tlsConfigWith(be.addr, spec, next)
		cfg.Index = uint64(r)
		src.Set(cfg)
		testutil.WaitFor(t, 20*time.Second, fmt.Sprintf("rotation %d served", r), func() bool {
			got, _, err := handshake(addr, "app.example.com", &tls.Config{})
			return err == nil && got == nextSerial
		})
		served = append(served, nextSerial)
	}
	close(stop)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d handshakes failed during rotation; first: %v", n, n+handshakes.Load(), firstErr.Load())
	}
	if handshakes.Load() < rotations*40 {
		t.Fatalf("only %d handshakes ran", handshakes.Load())
	}
	if d.ListenerAddr("web") != addr {
		t.Fatal("the listener was rebound")
	}
	if err := get(); err != nil {
		t.Fatalf("the connection opened before the rotations broke: %v", err)
	}
	t.Logf("%d handshakes, 0 failed, across %d rotations (serials %v)", handshakes.Load(), rotations, served)
}

// TestListenerCertificatesChangeWithoutRebind: naming another
// certificate on a listener (or another default) swaps its SNI table in
// place; a policy change starts the listener anew.
func TestListenerCertificatesChangeWithoutRebind(t *testing.T) {
	be := newBackend(t, nil)
	kr := testKeyring(t)
	app, appSerial := sealedCert(t, kr, "app", "app.example.com")
	api, apiSerial := sealedCert(t, kr, "api", "api.example.com")
	src := newFakeSource(tlsConfigWith(be.addr, &fsm.ListenerTLS{Certificates: []string{"app"}}, app, api))
	d := startDataplane(t, src, func(o *Options) { o.Secrets = kr })
	addr := d.ListenerAddr("web")
	held, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "app.example.com", InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if got, _, _ := handshake(addr, "api.example.com", &tls.Config{}); got != appSerial {
		t.Fatalf("before: api.example.com got %s, want the only certificate", got)
	}
	cfg := tlsConfigWith(be.addr, &fsm.ListenerTLS{Certificates: []string{"app", "api"}, Default: "api"}, app, api)
	cfg.Index = 1
	src.Set(cfg)
	waitFor(t, "api.example.com served its own certificate", func() bool {
		got, _, err := handshake(addr, "api.example.com", &tls.Config{})
		return err == nil && got == apiSerial
	})
	if got, _, _ := handshake(addr, "", &tls.Config{}); got != apiSerial {
		t.Fatalf("no SNI got %s, want the new default", got)
	}
	held.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(held, "GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(held), nil)
	if err != nil {
		t.Fatalf("the connection opened before the change broke: %v", err)
	}
	resp.Body.Close()
	for _, tt := range []struct {
		name string
		a, b fsm.ListenerSpec
		same bool
	}{
		{"certificates", fsm.ListenerSpec{Port: 1, Protocol: "https", TLS: &fsm.ListenerTLS{Certificates: []string{"a"}}},
			fsm.ListenerSpec{Port: 1, Protocol: "https", TLS: &fsm.ListenerTLS{Certificates: []string{"a", "b"}, Default: "b"}}, true},
		{"policy", fsm.ListenerSpec{Port: 1, Protocol: "https", TLS: &fsm.ListenerTLS{Certificates: []string{"a"}}},
			fsm.ListenerSpec{Port: 1, Protocol: "https", TLS: &fsm.ListenerTLS{Certificates: []string{"a"}, Policy: &fsm.TLSPolicy{MinVersion: "1.3"}}}, false},
		{"hsts", fsm.ListenerSpec{Port: 1, Protocol: "https", TLS: &fsm.ListenerTLS{Certificates: []string{"a"}, HSTS: &fsm.HSTS{MaxAge: 1}}},
			fsm.ListenerSpec{Port: 1, Protocol: "https", TLS: &fsm.ListenerTLS{Certificates: []string{"a"}, HSTS: &fsm.HSTS{MaxAge: 2}}}, false},
		{"files", fsm.ListenerSpec{Port: 1, Protocol: "https", TLS: &fsm.ListenerTLS{CertFile: "a", KeyFile: "b"}},
			fsm.ListenerSpec{Port: 1, Protocol: "https", TLS: &fsm.ListenerTLS{CertFile: "a2", KeyFile: "b"}}, false},
		{"port", fsm.ListenerSpec{Port: 1, Protocol: "https", TLS: &fsm.ListenerTLS{Certificates: []string{"a"}}},
			fsm.ListenerSpec{Port: 2, Protocol: "https", TLS: &fsm.ListenerTLS{Certificates: []string{"a"}}}, false},
		{"to http", fsm.ListenerSpec{Port: 1, Protocol: "https", TLS: &fsm.ListenerTLS{Certificates: []string{"a"}}},
			fsm.ListenerSpec{Port: 1}, false},
	} {
		if got := sameBinding(tt.a, tt.b); got != tt.same {
			t.Errorf("%s: sameBinding = %v, want %v", tt.name, got, tt.same)
		}
	}
	if d.ListenerAddr("web") != addr {
		t.Fatal("the listener was rebound")
	}
}

// TestUndecryptableCertificate: a certificate sealed with a key this node
// lacks is logged with an action, and the listener serves the others.
func TestUndecryptableCertificate(t *testing.T) {
	be := newBackend(t, nil)
	kr, other := testKeyring(t), testKeyring(t)
	good, goodSerial := sealedCert(t, kr, "good", "good.example.com")
	bad, _ := sealedCert(t, other, "bad", "bad.example.com")
	spec := &fsm.ListenerTLS{Certificates: []string{"bad", "good"}, Default: "bad"}
	var logs testutil.SyncBuffer
	reg := prometheus.NewRegistry()
	d := startDataplane(t, newFakeSource(tlsConfigWith(be.addr, spec, good, bad)), func(o *Options) {
		o.Secrets = kr
		o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
		o.Registerer = reg
	})
	addr := d.ListenerAddr("web")
	for _, sni := range []string{"good.example.com", "bad.example.com", ""} {
		got, _, err := handshake(addr, sni, &tls.Config{})
		if err != nil || got != goodSerial {
			t.Errorf("SNI %q: %s %v, want the loadable certificate", sni, got, err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "rafter_certificate_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			got[mf.GetName()+"/"+m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{
		"rafter_certificate_loaded/good":            1,
		"rafter_certificate_loaded/bad":             0,
		"rafter_certificate_not_after_seconds/good": float64(goodLeaf(t, good).NotAfter.Unix()),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("certificate metrics %v, want %v", got, want)
	}
	out := logs.String()
	if !strings.Contains(out, `"certificate":"bad"`) || !strings.Contains(out, "--secrets-key-file") || !strings.Contains(out, other.ID()) {
		t.Fatalf("log does not name the certificate, the key and the action:\n%s", out)
	}
}

func goodLeaf(t *testing.T, c *fsm.Certificate) *x509.Certificate {
	t.Helper()
	info, err := fsm.ParseCertInfo(c.Spec.Cert)
	if err != nil {
		t.Fatal(err)
	}
	return &x509.Certificate{NotAfter: info.NotAfter}
}

// TestTLSPolicy: TLS 1.2 at least and no CBC by default; min_version 1.3
// and cipher_suites narrow it.
func TestTLSPolicy(t *testing.T) {
	be := newBackend(t, nil)
	kr := testKeyring(t)
	cert, _ := sealedCert(t, kr, "web", "app.example.com")
	cbc := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}
	for _, tt := range []struct {
		name   string
		policy *fsm.TLSPolicy
		client *tls.Config
		ok     bool
	}{
		{"default 1.2", nil, &tls.Config{MaxVersion: tls.VersionTLS12}, true},
		{"default 1.3", nil, &tls.Config{}, true},
		{"default refuses 1.1", nil, &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, false},
		{"default refuses CBC", nil, &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: cbc}, false},
		{"1.3 refuses 1.2", &fsm.TLSPolicy{MinVersion: "1.3"}, &tls.Config{MaxVersion: tls.VersionTLS12}, false},
		{"1.3 accepts 1.3", &fsm.TLSPolicy{MinVersion: "1.3"}, &tls.Config{}, true},
		{"suites narrow", &fsm.TLSPolicy{CipherSuites: []string{"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"}},
			&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, false},
		{"suites allow", &fsm.TLSPolicy{CipherSuites: []string{"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"}},
			&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			spec := &fsm.ListenerTLS{Certificates: []string{"web"}, Policy: tt.policy}
			d := startDataplane(t, newFakeSource(tlsConfigWith(be.addr, spec, cert)), func(o *Options) { o.Secrets = kr })
			_, st, err := handshake(d.ListenerAddr("web"), "app.example.com", tt.client)
			if (err == nil) != tt.ok {
				t.Fatalf("handshake: %v, want ok=%v", err, tt.ok)
			}
			if err == nil && st.Version < tls.VersionTLS12 {
				t.Fatalf("negotiated version %x", st.Version)
			}
		})
	}
}

// TestHSTSAndRedirect: an https listener with hsts adds the header; an
// http listener with https_redirect redirects everything but ACME
// challenges, keeping host, path and query.
func TestHSTSAndRedirect(t *testing.T) {
	be := newBackend(t, nil)
	kr := testKeyring(t)
	cert, _ := sealedCert(t, kr, "web", "app.example.com")
	cfg := tlsConfigWith(be.addr, &fsm.ListenerTLS{Certificates: []string{"web"}, HSTS: &fsm.HSTS{MaxAge: 31536000, IncludeSubdomains: true}}, cert)
	cfg.Listeners["plain"] = &fsm.Listener{Name: "plain", Spec: fsm.ListenerSpec{HTTPSRedirect: &fsm.HTTPSRedirect{Port: 8443, Code: 308}}}
	cfg.Routes["plain"] = &fsm.Route{Name: "plain", Spec: fsm.RouteSpec{Listener: "plain", Action: fsm.RouteAction{Split: []fsm.WeightedPool{{Pool: "app", Weight: 1}}}}}
	d := startDataplane(t, newFakeSource(cfg), func(o *Options) { o.Secrets = kr })

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(client.CloseIdleConnections)
	resp, err := client.Get("https://" + d.ListenerAddr("web") + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000; includeSubDomains" {
		t.Fatalf("Strict-Transport-Security = %q", got)
	}

	plain := d.ListenerAddr("plain")
	for _, tt := range []struct{ host, path, status, loc string }{
		{"app.example.com", "/a/b?q=1&r=2", "308", "https://app.example.com:8443/a/b?q=1&r=2"},
		{"app.example.com:80", "/", "308", "https://app.example.com:8443/"},
		{"[::1]:80", "/v6", "308", "https://[::1]:8443/v6"},
		{"bad\"host", "/", "400", ""},
		{"app.example.com", "/.well-known/acme-challenge/token", "200", ""},
	} {
		t.Run(tt.host+tt.path, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", plain, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", tt.path, tt.host)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if fmt.Sprint(resp.StatusCode) != tt.status || resp.Header.Get("Location") != tt.loc {
				t.Fatalf("%d Location %q, want %s %q", resp.StatusCode, resp.Header.Get("Location"), tt.status, tt.loc)
			}
		})
	}
}

// TestSessionTicketKeysShared: two data planes with the cluster's ticket
// keys resume each other's sessions; a rotation keeps old tickets valid.
func TestSessionTicketKeysShared(t *testing.T) {
	be := newBackend(t, nil)
	kr := testKeyring(t)
	cert, _ := sealedCert(t, kr, "web", "app.example.com")
	sealKey := func(b byte) string {
		s, err := kr.Seal(bytes.Repeat([]byte{b}, 32), secrets.TicketKeyAAD())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	spec := &fsm.ListenerTLS{Certificates: []string{"web"}}
	mk := func(tk *fsm.TicketKeys) *fsm.Config {
		cfg := tlsConfigWith(be.addr, spec, cert)
		cfg.TicketKeys = tk
		return cfg
	}
	tk1 := &fsm.TicketKeys{Keys: []string{sealKey(1)}, ModifyIndex: 10}
	srcA, srcB := newFakeSource(mk(tk1)), newFakeSource(mk(tk1))
	a := startDataplane(t, srcA, func(o *Options) { o.Secrets = kr })
	b := startDataplane(t, srcB, func(o *Options) { o.Secrets = kr })
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		client := &tls.Config{ClientSessionCache: tls.NewLRUClientSessionCache(8), MaxVersion: v}
		resumed := func(addr string) bool {
			t.Helper()
			// TLS 1.3 tickets arrive after the handshake: a read lets the
			// client take them before the connection closes.
			c := client.Clone()
			c.ServerName, c.InsecureSkipVerify = "app.example.com", true
			conn, err := tls.Dial("tcp", addr, c)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return conn.ConnectionState().DidResume
		}
		if resumed(a.ListenerAddr("web")) {
			t.Fatal("first connection resumed")
		}
		if !resumed(b.ListenerAddr("web")) {
			t.Fatalf("TLS %x: a session from node a did not resume on node b", v)
		}
	}
	// Rotate on b only: a ticket issued under key 1 still resumes there.
	client := &tls.Config{ClientSessionCache: tls.NewLRUClientSessionCache(8), ServerName: "app.example.com", InsecureSkipVerify: true}
	conn, err := tls.Dial("tcp", a.ListenerAddr("web"), client)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	conn.Close()
	cfg := mk(&fsm.TicketKeys{Keys: []string{sealKey(2), tk1.Keys[0]}, ModifyIndex: 20})
	cfg.Index = 2
	srcB.Set(cfg)
	waitFor(t, "b takes the rotated keys", func() bool {
		b.certs.mu.Lock()
		defer b.certs.mu.Unlock()
		return b.certs.ticketIndex == 20
	})
	conn, err = tls.Dial("tcp", b.ListenerAddr("web"), client)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if !conn.ConnectionState().DidResume {
		t.Fatal("a ticket under the previous key did not resume after a rotation")
	}
}
