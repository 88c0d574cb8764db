package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Validity is how long certificates written by Init are valid.
const Validity = 365 * 24 * time.Hour

// File names written by Init in its directory; node certificates are
// NAME.pem and NAME-key.pem. CLIFile and CLIKeyFile are a client-only
// certificate for the CLI and other admin API clients (rafter register):
// the admin API requires a client certificate when TLS is on.
const (
	CAFile     = "ca.pem"
	CAKeyFile  = "ca-key.pem"
	CLIFile    = "cli.pem"
	CLIKeyFile = "cli-key.pem"
)

// CLICommonName is the subject of the certificate in CLIFile. It is a
// client certificate only (no server use), so it cannot pass for a node
// on the Raft transport.
const CLICommonName = "rafter-cli"

// ErrCAExists is returned by Init when the directory already holds a CA and
// force is false: replacing a CA invalidates every certificate it signed.
var ErrCAExists = errors.New("a CA already exists")

// NodeSpec names one node certificate and the addresses it is valid for.
type NodeSpec struct {
	Name  string   // file name stem and certificate common name, e.g. "n1"
	Hosts []string // IP addresses and DNS names (subject alternative names)
}

var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ParseNodes parses "n1=127.0.0.1,n2=127.0.0.2+n2.example.com": nodes
// separated by commas, each NAME=HOST with extra hosts joined by '+'.
func ParseNodes(s string) ([]NodeSpec, error) {
	var out []NodeSpec
	seen := map[string]bool{}
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, hosts, ok := strings.Cut(part, "=")
		if !ok || hosts == "" {
			return nil, fmt.Errorf("nodes[%d]: %q: want NAME=IP[+IP|+DNS...]", i, part)
		}
		ns := NodeSpec{Name: name}
		for _, h := range strings.Split(hosts, "+") {
			if h = strings.TrimSpace(h); h != "" {
				ns.Hosts = append(ns.Hosts, h)
			}
		}
		if seen[name] {
			return nil, fmt.Errorf("nodes[%d]: node %q listed twice", i, name)
		}
		seen[name] = true
		out = append(out, ns)
	}
	if len(out) == 0 {
		return nil, errors.New("no nodes given (want n1=IP,n2=IP,...)")
	}
	return out, nil
}

// Init writes a new CA (ca.pem, ca-key.pem) and one certificate per node
// (NAME.pem, NAME-key.pem) into dir, creating it. Keys are ECDSA P-256,
// certificates valid for one year and usable as both TLS server and client
// (nodes are both in Raft). An existing CA is kept and ErrCAExists returned
// unless force is set.
func Init(dir string, nodes []NodeSpec, force bool) error {
	return initAt(dir, nodes, force, time.Now())
}

func initAt(dir string, nodes []NodeSpec, force bool, now time.Time) error {
	if len(nodes) == 0 {
		return errors.New("tlsutil: no nodes given")
	}
	for i, n := range nodes {
		if !nodeName.MatchString(n.Name) {
			return fmt.Errorf("tlsutil: nodes[%d].name %q: want letters, digits, '.', '_' or '-'", i, n.Name)
		}
		if n.Name+".pem" == CLIFile || n.Name == CLICommonName {
			return fmt.Errorf("tlsutil: nodes[%d].name %q: reserved for the CLI's client certificate", i, n.Name)
		}
		if len(n.Hosts) == 0 {
			return fmt.Errorf("tlsutil: nodes[%d] (%s): no IP address or DNS name", i, n.Name)
		}
	}
	caPath := filepath.Join(dir, CAFile)
	if _, err := os.Stat(caPath); err == nil && !force {
		return fmt.Errorf("tlsutil: %s: %w (pass --force to replace it and every certificate it signed)", caPath, ErrCAExists)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("tlsutil: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}

	caKey, caSerial, err := newKey("CA key")
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          caSerial,
		Subject:               pkix.Name{CommonName: "rafter CA", Organization: []string{"rafter"}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("tlsutil: create CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}

	type file struct {
		name string
		data []byte
		mode os.FileMode
	}
	caKeyPEM, err := keyPEM(caKey)
	if err != nil {
		return err
	}
	files := []file{
		{CAFile, pemBlock("CERTIFICATE", caDER), 0o644},
		{CAKeyFile, caKeyPEM, 0o600},
	}
	cliKey, cliSerial, err := newKey("CLI key")
	if err != nil {
		return err
	}
	cliDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: cliSerial,
		Subject:      pkix.Name{CommonName: CLICommonName, Organization: []string{"rafter"}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, caCert, &cliKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("tlsutil: create CLI certificate: %w", err)
	}
	cliKeyPEM, err := keyPEM(cliKey)
	if err != nil {
		return err
	}
	files = append(files,
		file{CLIFile, pemBlock("CERTIFICATE", cliDER), 0o644},
		file{CLIKeyFile, cliKeyPEM, 0o600})
	for _, n := range nodes {
		key, sn, err := newKey("key for " + n.Name)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: sn,
			Subject:      pkix.Name{CommonName: n.Name, Organization: []string{"rafter"}},
			NotBefore:    now.Add(-5 * time.Minute),
			NotAfter:     now.Add(Validity),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			DNSNames:     []string{n.Name},
		}
		for _, h := range n.Hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else if h != n.Name {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return fmt.Errorf("tlsutil: create certificate for %s: %w", n.Name, err)
		}
		kp, err := keyPEM(key)
		if err != nil {
			return err
		}
		files = append(files,
			file{n.Name + ".pem", pemBlock("CERTIFICATE", der), 0o644},
			file{n.Name + "-key.pem", kp, 0o600})
	}
	// Write everything to temporary names first so a failure never leaves a
	// CA that does not match the node certificates beside it.
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// newKey makes a P-256 key and a random serial number for the certificate
// of what.
func newKey(what string) (*ecdsa.PrivateKey, *big.Int, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: generate %s: %w", what, err)
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	return key, sn, nil
}

func serial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("tlsutil: serial number: %w", err)
	}
	return n, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: marshal key: %w", err)
	}
	return pemBlock("PRIVATE KEY", der), nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("tlsutil: write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("tlsutil: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("tlsutil: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}
	return nil
}

func loadPool(caFile string) (*x509.CertPool, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("tlsutil: CA %s: no PEM certificate found", caFile)
	}
	return pool, nil
}

func loadPair(certFile, keyFile string) (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tlsutil: certificate %s / key %s: %w", certFile, keyFile, err)
	}
	return c, nil
}

func serverConfig(ca, cert, key string, auth tls.ClientAuthType) (*tls.Config, error) {
	pool, err := loadPool(ca)
	if err != nil {
		return nil, err
	}
	pair, err := loadPair(cert, key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		ClientCAs:    pool,
		ClientAuth:   auth,
		// RootCAs lets the same config dial peers (Raft streams go both ways).
		RootCAs: pool,
	}, nil
}

// ServerConfig is the Raft listener's config: it presents the node
// certificate and requires a client certificate signed by the CA.
func ServerConfig(ca, cert, key string) (*tls.Config, error) {
	return serverConfig(ca, cert, key, tls.RequireAndVerifyClientCert)
}

// AdminServerConfig is the admin API's config: HTTPS with the node
// certificate, and a client certificate signed by the CA required of
// every caller (nodes present theirs, the CLI cli.pem). A bearer token,
// when configured, is checked on top.
func AdminServerConfig(ca, cert, key string) (*tls.Config, error) {
	return serverConfig(ca, cert, key, tls.RequireAndVerifyClientCert)
}

// ErrNotNodeCert: a verified certificate is not a node certificate (the
// CLI's client certificate, say), so it may not speak Raft.
var ErrNotNodeCert = errors.New("not a node certificate")

// NodeID returns the node id a verified certificate was issued to: its
// common name, for certificates Init wrote for nodes (usable as server and
// client). A client-only certificate such as cli.pem is refused.
func NodeID(c *x509.Certificate) (string, error) {
	server, client := false, false
	for _, u := range c.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			server = true
		case x509.ExtKeyUsageClientAuth:
			client = true
		case x509.ExtKeyUsageAny:
			server, client = true, true
		}
	}
	if !server || !client || c.Subject.CommonName == "" {
		return "", fmt.Errorf("%w: %q (usable as server %v, as client %v)", ErrNotNodeCert, c.Subject.CommonName, server, client)
	}
	return c.Subject.CommonName, nil
}

// ClientConfig verifies servers against the CA and, when cert and key are
// given, presents that certificate. An empty ca uses the system roots.
func ClientConfig(ca, cert, key string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pool, err := loadPool(ca)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if (cert == "") != (key == "") {
		return nil, errors.New("tlsutil: a client certificate needs both cert and key")
	}
	if cert != "" {
		pair, err := loadPair(cert, key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
