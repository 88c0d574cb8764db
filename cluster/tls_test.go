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
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
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
// at a time with AddVoter; a client without a node certificate signed by
// the cluster CA and naming a member gets no Raft session.
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
		{"node certificate of a non-member", &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{ca.issue(t, "tls9")}}},
		{"client-only certificate", &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{ca.issueClientOnly(t, "tls2")}}},
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

// issueClientOnly is a certificate like the CLI's cli.pem: signed by the
// CA, usable only as a TLS client.
func (ca *testCA) issueClientOnly(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// echoLayer serves s, echoing one byte per accepted connection, and
// returns s's address.
func echoLayer(t *testing.T, s *streamLayer) raft.ServerAddress {
	t.Helper()
	t.Cleanup(func() { _ = s.Close() })
	go func() {
		for {
			c, err := s.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				b := make([]byte, 1)
				if _, err := c.Read(b); err == nil {
					_, _ = c.Write(b)
				}
			}()
		}
	}()
	return raft.ServerAddress(s.Addr().String())
}

// roundTrip dials addr through s and exchanges one byte; the error is the
// dial's or, for a refusal the server sends after the handshake, the read's.
func roundTrip(s *streamLayer, addr raft.ServerAddress) error {
	c, err := s.Dial(addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{1}); err != nil {
		return err
	}
	_, err = c.Read(make([]byte, 1))
	return err
}

// A certificate from the cluster CA is not enough on the Raft transport:
// it must name the member at the dialled address, and a connecting peer's
// must name a member and be a node certificate.
func TestTransportChecksPeerIdentity(t *testing.T) {
	ca := newTestCA(t, "rafter test CA")
	layer := func(t *testing.T, cert tls.Certificate) *streamLayer {
		t.Helper()
		srv := &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: ca.pool, MinVersion: tls.VersionTLS13}
		cli := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.pool, MinVersion: tls.VersionTLS13}
		s, err := newStreamLayer(nil, "127.0.0.1:0", "", srv, cli)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	members := func(m map[raft.ServerID]raft.ServerAddress) func() []raft.Server {
		return func() []raft.Server {
			var out []raft.Server
			for id, a := range m {
				out = append(out, raft.Server{ID: id, Address: a, Suffrage: raft.Voter})
			}
			return out
		}
	}

	n2 := layer(t, ca.issue(t, "n2"))
	n2Addr := echoLayer(t, n2)
	n1 := layer(t, ca.issue(t, "n1"))
	n1Addr := raft.ServerAddress(n1.Addr().String())
	cluster := map[raft.ServerID]raft.ServerAddress{"n1": n1Addr, "n2": n2Addr}
	n2.setMembers(members(cluster))

	t.Run("members", func(t *testing.T) {
		n1.setMembers(members(cluster))
		if err := roundTrip(n1, n2Addr); err != nil {
			t.Fatalf("n1 to n2: %v", err)
		}
	})
	t.Run("dialled peer with another member's certificate", func(t *testing.T) {
		// n1 believes n3 is at n2's address: the node answering there
		// holds a valid certificate, but for n2.
		n1.setMembers(members(map[raft.ServerID]raft.ServerAddress{"n1": n1Addr, "n3": n2Addr}))
		err := roundTrip(n1, n2Addr)
		if err == nil || !strings.Contains(err.Error(), `node "n2"`) || !strings.Contains(err.Error(), `member "n3"`) {
			t.Fatalf("dial: %v, want a refusal naming n2 and n3", err)
		}
	})
	t.Run("dialled address of no member", func(t *testing.T) {
		n1.setMembers(members(map[raft.ServerID]raft.ServerAddress{"n1": n1Addr}))
		if err := roundTrip(n1, n2Addr); err == nil || !strings.Contains(err.Error(), "no member") {
			t.Fatalf("dial: %v, want a refusal", err)
		}
	})
	for _, tt := range []struct {
		name string
		cert tls.Certificate
	}{
		{"connecting node that is not a member", ca.issue(t, "n9")},
		{"connecting client-only certificate", ca.issueClientOnly(t, "n1")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			x := layer(t, tt.cert)
			x.setMembers(members(cluster))
			err := roundTrip(x, n2Addr)
			if err == nil {
				t.Fatal("n2 accepted the connection")
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("not refused, timed out: %v", err)
			}
		})
	}
	t.Run("node without a configuration accepts a node certificate", func(t *testing.T) {
		fresh := layer(t, ca.issue(t, "n4"))
		freshAddr := echoLayer(t, fresh)
		fresh.setMembers(members(nil))
		n1.setMembers(members(map[raft.ServerID]raft.ServerAddress{"n1": n1Addr, "n4": freshAddr}))
		if err := roundTrip(n1, freshAddr); err != nil {
			t.Fatalf("leader to a node being added: %v", err)
		}
	})
}
