package tlsutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func initDir(t *testing.T, nodes string) string {
	t.Helper()
	dir := t.TempDir()
	specs, err := ParseNodes(nodes)
	if err != nil {
		t.Fatalf("ParseNodes: %v", err)
	}
	if err := Init(dir, specs, false); err != nil {
		t.Fatalf("Init: %v", err)
	}
	return dir
}

func files(dir, name string) (ca, cert, key string) {
	return filepath.Join(dir, CAFile), filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
}

// handshake runs one TLS handshake between a server and a client config on
// 127.0.0.1:0 and returns the error of each side.
func handshake(t *testing.T, srv, cli *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, srv)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		err = tc.Handshake()
		if err == nil {
			// TLS 1.3 client certificates are checked after the client's
			// handshake returns; a read surfaces the server's verdict.
			_, err = tc.Write([]byte("ok"))
		}
		done <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := tls.Dialer{Config: cli}
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err == nil {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 2)
		_, err = c.Read(buf)
		c.Close()
	}
	return <-done, err
}

func TestInitWritesVerifiableCerts(t *testing.T) {
	dir := initDir(t, "n1=127.0.0.1,n2=127.0.0.2+n2.rafter.internal")
	for _, f := range []string{"ca.pem", "ca-key.pem", "n1.pem", "n1-key.pem", "n2.pem", "n2-key.pem", "cli.pem", "cli-key.pem"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if strings.HasSuffix(f, "-key.pem") && st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	ca, cert, _ := files(dir, "n2")
	pool, err := loadPool(ca)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(cert)
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dns  string
		ok   bool
	}{
		{"ip", "127.0.0.2", true},
		{"dns", "n2.rafter.internal", true},
		{"node name", "n2", true},
		{"other ip", "127.0.0.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: tt.dns, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if (err == nil) != tt.ok {
				t.Fatalf("verify %s: err=%v, want ok=%v", tt.dns, err, tt.ok)
			}
		})
	}
	if d := c.NotAfter.Sub(c.NotBefore); d < Validity || d > Validity+time.Hour {
		t.Errorf("validity %v, want about one year", d)
	}
}

func TestInitRefusesExistingCA(t *testing.T) {
	dir := initDir(t, "n1=127.0.0.1")
	before, _ := os.ReadFile(filepath.Join(dir, CAFile))
	specs, _ := ParseNodes("n1=127.0.0.1")
	err := Init(dir, specs, false)
	if !errors.Is(err, ErrCAExists) {
		t.Fatalf("second Init: %v, want ErrCAExists", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, CAFile))
	if string(before) != string(after) {
		t.Fatal("CA changed although Init refused")
	}
	if err := Init(dir, specs, true); err != nil {
		t.Fatalf("Init with force: %v", err)
	}
	after, _ = os.ReadFile(filepath.Join(dir, CAFile))
	if string(before) == string(after) {
		t.Fatal("force did not replace the CA")
	}
}

func TestHandshake(t *testing.T) {
	dir := initDir(t, "n1=127.0.0.1,n2=127.0.0.1")
	other := initDir(t, "x1=127.0.0.1")

	srvCA, srvCert, srvKey := files(dir, "n1")
	raftSrv, err := ServerConfig(srvCA, srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	adminSrv, err := AdminServerConfig(srvCA, srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, cert, key := files(dir, "n2")
	peer, err := ClientConfig(ca, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	noCert, err := ClientConfig(ca, "", "")
	if err != nil {
		t.Fatal(err)
	}
	cliCert, err := ClientConfig(ca, filepath.Join(dir, CLIFile), filepath.Join(dir, CLIKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	xca, xcert, xkey := files(other, "x1")
	// A client trusting our CA but presenting a certificate from another CA.
	foreignCert, err := ClientConfig(ca, xcert, xkey)
	if err != nil {
		t.Fatal(err)
	}
	// A client that trusts only the other CA: it must refuse our server.
	foreignRoots, err := ClientConfig(xca, cert, key)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		srv    *tls.Config
		cli    *tls.Config
		wantOK bool
	}{
		{"raft: two node certs", raftSrv, peer, true},
		{"raft: no client cert refused", raftSrv, noCert, false},
		{"raft: client cert from another CA refused", raftSrv, foreignCert, false},
		{"raft: server from another CA refused by client", raftSrv, foreignRoots, false},
		{"admin: node cert", adminSrv, peer, true},
		{"admin: CLI cert", adminSrv, cliCert, true},
		{"admin: no client cert refused", adminSrv, noCert, false},
		{"admin: client cert from another CA refused", adminSrv, foreignCert, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serr, cerr := handshake(t, tt.srv, tt.cli)
			if tt.wantOK && (serr != nil || cerr != nil) {
				t.Fatalf("handshake failed: server %v, client %v", serr, cerr)
			}
			if !tt.wantOK && serr == nil && cerr == nil {
				t.Fatal("handshake succeeded, want refusal")
			}
		})
	}
}

func TestParseNodes(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"n1=127.0.0.1,n2=127.0.0.2,n3=127.0.0.3", 3, false},
		{"n1=10.0.0.1+n1.example.com", 1, false},
		{"n1", 0, true},
		{"n1=1.1.1.1,n1=1.1.1.2", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseNodes(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err=%v, wantErr=%v", err, tt.wantErr)
			}
			if len(got) != tt.want {
				t.Fatalf("got %d nodes, want %d", len(got), tt.want)
			}
		})
	}
}

func TestClientConfigErrors(t *testing.T) {
	dir := initDir(t, "n1=127.0.0.1")
	ca, cert, _ := files(dir, "n1")
	tests := []struct {
		name          string
		ca, cert, key string
	}{
		{"cert without key", ca, cert, ""},
		{"missing ca", filepath.Join(dir, "nope.pem"), "", ""},
		{"ca is not pem", cert + "-missing", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ClientConfig(tt.ca, tt.cert, tt.key); err == nil {
				t.Fatal("want error")
			}
		})
	}
}

func parseCertFile(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Node certificates name their node; the CLI's certificate is client-only
// and names none.
func TestNodeID(t *testing.T) {
	dir := initDir(t, "n1=127.0.0.1")
	if id, err := NodeID(parseCertFile(t, filepath.Join(dir, "n1.pem"))); err != nil || id != "n1" {
		t.Fatalf("NodeID(n1.pem) = %q, %v", id, err)
	}
	cli := parseCertFile(t, filepath.Join(dir, CLIFile))
	if id, err := NodeID(cli); !errors.Is(err, ErrNotNodeCert) {
		t.Fatalf("NodeID(cli.pem) = %q, %v; want ErrNotNodeCert", id, err)
	}
	pool, err := loadPool(filepath.Join(dir, CAFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("cli.pem does not verify as a client: %v", err)
	}
	if _, err := cli.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Fatal("cli.pem verifies as a server")
	}
	specs, _ := ParseNodes("cli=127.0.0.1")
	if err := Init(t.TempDir(), specs, false); err == nil {
		t.Fatal("Init accepted a node named cli, which would overwrite cli.pem")
	}
}
