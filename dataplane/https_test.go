package dataplane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// writeSelfSigned writes a certificate for 127.0.0.1 and its key into dir.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "rafter test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// An https listener terminates TLS with the files named in its spec and
// tells the backend the client came over https.
func TestHTTPSListener(t *testing.T) {
	be := newBackend(t, nil)
	certFile, keyFile, pool := writeSelfSigned(t, t.TempDir())
	cfg := simpleConfig(be.addr)
	cfg.listeners["web"] = fsm.ListenerSpec{Protocol: "https", TLS: &fsm.ListenerTLS{CertFile: certFile, KeyFile: keyFile}}
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	addr := d.ListenerAddr("web")
	if addr == "" {
		t.Fatal("https listener not bound")
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t.Cleanup(client.CloseIdleConnections)
	resp, err := client.Get("https://" + addr + "/secure")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("status %d, tls %v", resp.StatusCode, resp.TLS != nil)
	}
	reqs := be.requests()
	if len(reqs) != 1 || reqs[0].Header.Get("X-Forwarded-Proto") != "https" {
		t.Fatalf("backend saw %+v, want one request with X-Forwarded-Proto: https", reqs)
	}
	// Plain HTTP to the TLS port is not served.
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain http answered 200 on an https listener")
		}
	}
}

// A missing certificate keeps that listener down (and says why in the
// log) without affecting the others.
func TestHTTPSListenerMissingCertificate(t *testing.T) {
	be := newBackend(t, nil)
	cfg := simpleConfig(be.addr)
	dir := t.TempDir()
	cfg.listeners["secure"] = fsm.ListenerSpec{Protocol: "https", TLS: &fsm.ListenerTLS{CertFile: filepath.Join(dir, "nope.pem"), KeyFile: filepath.Join(dir, "nope-key.pem")}}
	d := startDataplane(t, newFakeSource(cfg.build()), nil)
	if addr := d.ListenerAddr("secure"); addr != "" {
		t.Fatalf("listener without its certificate bound at %s", addr)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + d.ListenerAddr("web") + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("other listener answered %d", resp.StatusCode)
	}
}
