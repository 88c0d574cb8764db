package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// The pebble test environment: the ACME CA (pebble, built from the
// module's tool dependency and run as a process on loopback), a DNS
// server that pebble asks where the test domains are (always a loopback
// address of one of the nodes), and a counting proxy in front of pebble's
// directory that counts new orders and can hold a challenge's validation
// request. Nothing leaves the loopback interface.

// pebbleEnv is one running pebble with its DNS server and proxy.
type pebbleEnv struct {
	Directory string // the proxy's directory URL, what the issuer names
	RootsPEM  string // trusted for the directory's TLS (ca_roots)
	mgmt      string // pebble's management address
	tlsConf   *tls.Config

	dns    *dnsServer
	orders atomic.Int64 // POST /order-plz through the proxy
	// holdChallenge, when set, holds the next challenge validation
	// request (POST /chalZ/...) until released; held is closed once it is
	// being held.
	holdMu        sync.Mutex
	holdChallenge bool
	held, release chan struct{}
}

// startPebble runs pebble with HTTP-01 validation against httpPort and
// TLS-ALPN-01 against tlsPort and certificates valid for validity.
func startPebble(t *testing.T, httpPort, tlsPort int, validity time.Duration) *pebbleEnv {
	t.Helper()
	return startPebbleEAB(t, httpPort, tlsPort, validity, nil)
}

// startPebbleEAB is startPebble with external account binding required
// when eab (key id -> base64url HMAC key) is not empty.
func startPebbleEAB(t *testing.T, httpPort, tlsPort int, validity time.Duration, eab map[string]string) *pebbleEnv {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "pebble")
	build := exec.Command("go", "build", "-o", bin, "github.com/letsencrypt/pebble/v2/cmd/pebble")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building pebble: %v\n%s", err, out)
	}
	certPEM, keyPEM, tlsCert := loopbackCert(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certFile, certPEM)
	writeFile(t, keyFile, keyPEM)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(certPEM))
	env := &pebbleEnv{RootsPEM: certPEM, tlsConf: &tls.Config{RootCAs: pool}}
	env.dns = startDNS(t)

	listen, mgmt := freeAddr(t), freeAddr(t)
	env.mgmt = mgmt
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress": listen, "managementListenAddress": mgmt,
		"certificate": certFile, "privateKey": keyFile,
		"httpPort": httpPort, "tlsPort": tlsPort,
		"externalAccountBindingRequired": len(eab) > 0,
		"externalAccountMACKeys":         eab,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles": map[string]any{"default": map[string]any{
			"description": "test", "validityPeriod": int(validity / time.Second)}},
	}}
	b, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(dir, "pebble.json")
	writeFile(t, cfgFile, string(b))
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-config", cfgFile, "-dnsserver", env.dns.addr)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	logFile, err := os.Create(filepath.Join(dir, "pebble.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting pebble: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logFile.Name()); err == nil {
				t.Logf("pebble log:\n%s", tail(string(b), 6000))
			}
		}
	})

	// The counting proxy: TLS with the same certificate; pebble builds
	// its URLs from the Host header, which the proxy passes on, so every
	// later request comes through the proxy too.
	target := &url.URL{Scheme: "https", Host: listen}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		Transport: &http.Transport{TLSClientConfig: env.tlsConf.Clone(), ResponseHeaderTimeout: 30 * time.Second},
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.URL.Path == "/order-plz" {
				env.orders.Add(1)
			}
			if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/chalZ/") && env.takeHold() {
				close(env.held)
				select {
				case <-env.release:
				case <-r.Context().Done():
				case <-time.After(60 * time.Second):
				}
				// Whoever asked may be gone: the CA never hears of it.
				http.Error(w, "held", http.StatusServiceUnavailable)
				return
			}
			rp.ServeHTTP(w, r)
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{tlsCert}},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		env.releaseHold()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	env.Directory = "https://" + ln.Addr().String() + "/dir"

	// Wait until pebble answers through the proxy.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: env.tlsConf.Clone()}, Timeout: 2 * time.Second}
	eventually(t, "pebble answers", func() error {
		resp, err := hc.Get(env.Directory)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	return env
}

// holdNextChallenge makes the proxy hold the next validation request.
func (e *pebbleEnv) holdNextChallenge() {
	e.holdMu.Lock()
	defer e.holdMu.Unlock()
	e.holdChallenge, e.held, e.release = true, make(chan struct{}), make(chan struct{})
}

func (e *pebbleEnv) takeHold() bool {
	e.holdMu.Lock()
	defer e.holdMu.Unlock()
	if !e.holdChallenge {
		return false
	}
	e.holdChallenge = false
	return true
}

func (e *pebbleEnv) releaseHold() {
	e.holdMu.Lock()
	defer e.holdMu.Unlock()
	if e.release != nil {
		select {
		case <-e.release:
		default:
			close(e.release)
		}
	}
}

// roots is pebble's current root and intermediates, for verifying what
// it issued.
func (e *pebbleEnv) roots(t *testing.T) *x509.CertPool {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: e.tlsConf.Clone()}, Timeout: 5 * time.Second}
	resp, err := hc.Get("https://" + e.mgmt + "/roots/0")
	if err != nil {
		t.Fatalf("pebble roots: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble root is not PEM: %q", b)
	}
	return pool
}

// verifyChain checks a PEM chain (leaf first) against pebble's root for
// name, and returns the leaf.
func (e *pebbleEnv) verifyChain(t *testing.T, chainPEM, name string) *x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	rest := []byte(chainPEM)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		t.Fatalf("no certificate in %q", chainPEM)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{DNSName: name, Roots: e.roots(t), Intermediates: inter}); err != nil {
		t.Fatalf("issued certificate does not verify for %s against pebble's root: %v", name, err)
	}
	return certs[0]
}

// dnsServer answers A queries for every name with the address set for it
// (default 127.0.0.1) and AAAA queries with nothing, over UDP and TCP
// (pebble asks over TCP) on one loopback port.
type dnsServer struct {
	addr string
	mu   sync.Mutex
	ips  map[string]string // lower-case name without the final dot -> IPv4
}

func startDNS(t *testing.T) *dnsServer {
	t.Helper()
	var pc net.PacketConn
	var ln net.Listener
	for attempt := 0; ln == nil; attempt++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err != nil {
			pc.Close()
			if attempt == 20 {
				t.Fatalf("no port free for both UDP and TCP: %v", err)
			}
		}
	}
	s := &dnsServer{addr: pc.LocalAddr().String(), ips: map[string]string{}}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := s.answer(buf[:n]); resp != nil {
				_, _ = pc.WriteTo(resp, from)
			}
		}
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.serveTCP(conn) })
		}
	})
	t.Cleanup(func() {
		pc.Close()
		ln.Close()
		wg.Wait()
	})
	return s
}

// serveTCP answers length-prefixed queries on conn (RFC 1035 §4.2.2)
// until the client closes it or is idle for five seconds.
func (s *dnsServer) serveTCP(conn net.Conn) {
	defer conn.Close()
	for range 100 {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		var l [2]byte
		if _, err := io.ReadFull(conn, l[:]); err != nil {
			return
		}
		q := make([]byte, int(l[0])<<8|int(l[1]))
		if _, err := io.ReadFull(conn, q); err != nil {
			return
		}
		resp := s.answer(q)
		if resp == nil {
			return
		}
		if _, err := conn.Write(append([]byte{byte(len(resp) >> 8), byte(len(resp))}, resp...)); err != nil {
			return
		}
	}
}

// point makes name resolve to ip.
func (s *dnsServer) point(name, ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ips[strings.ToLower(name)] = ip
}

func (s *dnsServer) answer(query []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil
	}
	if err := b.Question(q); err != nil {
		return nil
	}
	if err := b.StartAnswers(); err != nil {
		return nil
	}
	if q.Type == dnsmessage.TypeA {
		name := strings.ToLower(strings.TrimSuffix(q.Name.String(), "."))
		s.mu.Lock()
		ip, ok := s.ips[name]
		s.mu.Unlock()
		if !ok {
			ip = "127.0.0.1"
		}
		a := net.ParseIP(ip).To4()
		if err := b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 0},
			dnsmessage.AResource{A: [4]byte(a)}); err != nil {
			return nil
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// loopbackCert is a self-signed certificate for 127.0.0.1 and localhost.
func loopbackCert(t *testing.T) (certPEM, keyPEM string, c tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "pebble test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	c, err = tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM, c
}

func freeAddr(t *testing.T) string {
	t.Helper()
	return "127.0.0.1:" + fmt.Sprint(freePort(t))
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
