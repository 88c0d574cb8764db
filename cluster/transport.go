package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer carries Raft's NetworkTransport over TCP, optionally wrapped
// in mutual TLS: accepted connections must present a certificate signed by
// the cluster CA, and dialled peers must too.
type streamLayer struct {
	net.Listener
	advertise net.Addr
	server    *tls.Config // nil: plaintext
	client    *tls.Config
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// newStreamLayer listens on bind. advertise, when set, is the address
// peers are told to dial.
func newStreamLayer(bind, advertise string, server, client *tls.Config) (*streamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft listen on %s: %w", bind, err)
	}
	s := &streamLayer{Listener: ln, advertise: ln.Addr()}
	if advertise != "" {
		addr, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("cluster: raft advertise address %s: %w", advertise, err)
		}
		s.advertise = addr
	}
	if server != nil {
		s.server = server.Clone()
		// Raft peers are authenticated by certificate, whatever the caller's
		// tls.Config said: a peer without one could rewrite the log.
		s.server.ClientAuth = tls.RequireAndVerifyClientCert
		s.server.MinVersion = max(s.server.MinVersion, tls.VersionTLS12)
		s.client = client.Clone()
		s.client.MinVersion = max(s.client.MinVersion, tls.VersionTLS12)
	}
	return s, nil
}

// Addr is the advertised address; NetworkTransport reports it as LocalAddr.
func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Accept() (net.Conn, error) {
	c, err := s.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if s.server == nil {
		return c, nil
	}
	// The handshake (and the client-certificate check) runs on the first
	// Read, in the transport's per-connection goroutine, so a slow client
	// cannot hold up Accept.
	return tls.Server(c, s.server), nil
}

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if s.client == nil {
		return d.Dial("tcp", string(address))
	}
	cfg := s.client
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(string(address))
		if err != nil {
			return nil, fmt.Errorf("cluster: raft dial %s: %w", address, err)
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	td := tls.Dialer{NetDialer: &d, Config: cfg}
	c, err := td.DialContext(ctx, "tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("cluster: raft dial %s: %w", address, err)
	}
	return c, nil
}
