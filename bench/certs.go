package bench

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// Certificate kinds the handshake comparison runs.
const (
	CertECDSA = "ecdsa-p256"
	CertRSA   = "rsa-2048"
)

// CertFiles is one self-signed server certificate on disk, in the forms
// the proxies read: separate PEM files (rafter) and both in one (HAProxy).
type CertFiles struct {
	Kind     string
	CertFile string
	KeyFile  string
	Combined string
	// CertDER is the certificate the loader trusts.
	CertDER []byte
}

// WriteCert makes a self-signed certificate of kind for 127.0.0.1 and
// "bench.test" in dir.
func WriteCert(dir, kind string) (CertFiles, error) {
	var key crypto.Signer
	var err error
	switch kind {
	case CertECDSA:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case CertRSA:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return CertFiles{}, fmt.Errorf("unknown certificate kind %q", kind)
	}
	if err != nil {
		return CertFiles{}, fmt.Errorf("%s key: %w", kind, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "bench.test"},
		DNSNames:              []string{"bench.test"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return CertFiles{}, fmt.Errorf("%s certificate: %w", kind, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return CertFiles{}, fmt.Errorf("%s key encoding: %w", kind, err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	c := CertFiles{Kind: kind, CertDER: der,
		CertFile: filepath.Join(dir, kind+".crt"), KeyFile: filepath.Join(dir, kind+".key"), Combined: filepath.Join(dir, kind+".pem")}
	for path, b := range map[string][]byte{c.CertFile: certPEM, c.KeyFile: keyPEM, c.Combined: append(certPEM, keyPEM...)} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return CertFiles{}, err
		}
	}
	return c, nil
}
