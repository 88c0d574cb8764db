package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"testing"
	"time"
)

// testCA issues certificates for 127.0.0.1, as `rafter tls init` would for
// a node's address.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (ca *testCA) configs(t testing.TB, cn string) (server, client *tls.Config) {
	cert := ca.issue(t, cn)
	server = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: ca.pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
	client = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.pool, MinVersion: tls.VersionTLS13}
	return server, client
}

// TestMutualTLSTransport: three nodes replicate over mutual TLS, added one
// at a time with AddVoter; a client without a certificate signed by the
// cluster CA gets no Raft session.
func TestMutualTLSTransport(t *testing.T) {
	ca := newTestCA(t, "rafter test CA")
	var nodes []*Node
	for i := 1; i <= 3; i++ {
		cfg := diskConfig(fmt.Sprintf("tls%d", i), t.TempDir(), "127.0.0.1:0")
		cfg.ServerTLS, cfg.ClientTLS = ca.configs(t, cfg.NodeID)
		if i > 1 {
			cfg.BootstrapExpect = 0 // wait to be added
		}
		nodes = append(nodes, openNode(t, cfg))
	}
	leader := nodes[0]
	waitLeader(t, leader)
	for _, n := range nodes[1:] {
		if err := leader.AddVoter(testCtx(t), n.PeerInfo()); err != nil {
			t.Fatalf("AddVoter %s: %v", n.cfg.NodeID, err)
		}
	}
	idx := apply(t, leader, listenerCmd("web", 8080))
	for _, n := range nodes {
		if _, err := n.WaitForIndex(testCtx(t), idx); err != nil {
			t.Fatalf("%s did not replicate over TLS: %v", n.cfg.NodeID, err)
		}
		if n.Config().Nodes["tls3"] == nil {
			t.Fatalf("%s: AddVoter did not record node tls3", n.cfg.NodeID)
		}
	}

	raftAddr := leader.PeerInfo().RaftAddr
	other := newTestCA(t, "some other CA")
	otherCert := other.issue(t, "intruder")
	tests := []struct {
		name string
		cfg  *tls.Config
	}{
		{"no client certificate", &tls.Config{RootCAs: ca.pool}},
		{"certificate from another CA", &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{otherCert}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", raftAddr, tt.cfg)
			if err != nil {
				return // refused during the handshake
			}
			defer func() { _ = conn.Close() }()
			// With TLS 1.3 the server checks the client's certificate after
			// the client considers the handshake done: the refusal arrives
			// on the first read.
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = conn.Write([]byte{0})
			if _, err := conn.Read(make([]byte, 1)); err == nil {
				t.Fatal("raft port answered a client without a valid certificate")
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("connection not refused, read timed out: %v", err)
			}
		})
	}
}
