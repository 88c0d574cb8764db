package testutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// CertOptions describe a self-signed test certificate.
type CertOptions struct {
	Names     []string  // DNS SANs; the first is also the subject CN
	NotBefore time.Time // zero: an hour ago
	NotAfter  time.Time // zero: in a day
	RSA       bool      // an RSA 2048 key instead of ECDSA P-256
}

// Cert makes a self-signed certificate and returns it and its key as PEM.
func Cert(t testing.TB, o CertOptions) (certPEM, keyPEM string) {
	t.Helper()
	c, k, err := MakeCert(o)
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

// MakeCert is Cert for callers without a testing.TB (package init).
func MakeCert(o CertOptions) (certPEM, keyPEM string, err error) {
	var key crypto.Signer
	if o.RSA {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.Add(24 * time.Hour)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		DNSNames:     o.Names,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if len(o.Names) > 0 {
		tmpl.Subject = pkix.Name{CommonName: o.Names[0]}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return "", "", err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	return certPEM, keyPEM, nil
}
