// Package upstreamtls builds the TLS client side of a pool's backend
// connections from its fsm.PoolTLS: the proxy's connections and the
// health checks' use the same verification and client certificate.
//
// It imports fsm only; never cluster, hashicorp/raft or the AWS SDK.
package upstreamtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// maxCAFile bounds the CA file read from disk.
const maxCAFile = 1 << 20

// sessionCacheSize is the number of TLS sessions kept per backend: one
// per server name is all a backend needs, a few survive ticket rotation.
const sessionCacheSize = 8

// Load builds the pool-wide client configuration of spec: roots from ca or
// ca_file (system roots without either), the client certificate from
// cert_file/key_file, server_name, TLS 1.2 at least, HTTP/1.1. Files are
// read now: a rotated file is used once the pool's tls block changes.
func Load(spec *fsm.PoolTLS) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         spec.ServerName,
		InsecureSkipVerify: spec.InsecureSkipVerify,
		NextProtos:         []string{"http/1.1"},
	}
	var pem []byte
	switch {
	case spec.CA != "":
		pem = []byte(spec.CA)
	case spec.CAFile != "":
		b, err := readBounded(spec.CAFile, maxCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pem = b
	}
	if pem != nil {
		ders, err := fsm.CheckCAPEM(pem)
		if err != nil {
			return nil, fmt.Errorf("tls.ca: %w", err)
		}
		pool := x509.NewCertPool()
		for i, der := range ders {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("tls.ca: certificate %d: %w", i, err)
			}
			pool.AddCert(c)
		}
		cfg.RootCAs = pool
	}
	if spec.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(spec.CertFile, spec.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file/key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func readBounded(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return b, nil
}

// ForBackend returns base for one backend address: server_name defaults
// to the address's host (an IP is matched against the certificate's IP
// SANs and sends no SNI), and the backend gets a session cache of its
// own, so reconnections resume instead of paying a full handshake and no
// ticket is offered to another backend.
func ForBackend(base *tls.Config, addr string) *tls.Config {
	c := base.Clone()
	if c.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		c.ServerName = host
	}
	c.ClientSessionCache = tls.NewLRUClientSessionCache(sessionCacheSize)
	return c
}

// Handshake runs the client handshake on conn within timeout. On failure
// conn is closed.
func Handshake(conn net.Conn, cfg *tls.Config, timeout time.Duration) (*tls.Conn, error) {
	tc := tls.Client(conn, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return tc, nil
}

// Reasons a TLS exchange with a backend failed, as counted.
const (
	ReasonVerify   = "verify"    // the backend's certificate did not verify (CA, name, expiry)
	ReasonRejected = "rejected"  // the backend refused us (an alert: no or a bad client certificate)
	ReasonOther    = "handshake" // anything else (protocol, timeout, reset during the handshake)
)

// Reason classifies a TLS error.
func Reason(err error) string {
	var (
		verr *tls.CertificateVerificationError
		uerr x509.UnknownAuthorityError
		herr x509.HostnameError
		cerr x509.CertificateInvalidError
		oerr *net.OpError
	)
	switch {
	case errors.As(err, &verr), errors.As(err, &uerr), errors.As(err, &herr), errors.As(err, &cerr):
		return ReasonVerify
	case IsRemoteAlert(err) || errors.As(err, &oerr) && oerr.Op == "remote error":
		return ReasonRejected
	}
	return ReasonOther
}

// IsRemoteAlert reports whether err is a TLS alert the backend sent. In
// TLS 1.3 a server refuses a client certificate after the client's
// handshake is over, so the alert arrives with the first read.
func IsRemoteAlert(err error) bool {
	var oerr *net.OpError
	return errors.As(err, &oerr) && oerr.Op == "remote error"
}
