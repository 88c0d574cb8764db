package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rafterlb/rafter/cluster/tlsutil"
)

// streamLayer carries Raft's NetworkTransport over TCP, optionally wrapped
// in mutual TLS: accepted connections must present a certificate signed by
// the cluster CA, and dialled peers must too. Beyond the CA, a certificate
// must name the right node (see verifyDialed and verifyAccepted): any
// node's certificate would otherwise let it pose as any other member.
type streamLayer struct {
	net.Listener
	advertise net.Addr
	server    *tls.Config // nil: plaintext
	client    *tls.Config
	// members returns the latest Raft configuration; nil until Raft runs.
	members atomic.Pointer[func() []raft.Server]
}

// setMembers tells the stream layer where to look up who the members are.
func (s *streamLayer) setMembers(f func() []raft.Server) { s.members.Store(&f) }

func (s *streamLayer) servers() ([]raft.Server, bool) {
	f := s.members.Load()
	if f == nil {
		return nil, false
	}
	return (*f)(), true
}

// peerNodeID is the node id in a verified peer certificate.
func peerNodeID(cs tls.ConnectionState) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", errors.New("no peer certificate")
	}
	return tlsutil.NodeID(cs.PeerCertificates[0])
}

// verifyDialed checks that the server at address presents the certificate
// of the member the Raft configuration puts at that address.
func (s *streamLayer) verifyDialed(address raft.ServerAddress, cs tls.ConnectionState) error {
	id, err := peerNodeID(cs)
	if err != nil {
		return fmt.Errorf("raft peer at %s: %w", address, err)
	}
	servers, ok := s.servers()
	if !ok {
		return nil // Raft is starting; it dials nobody before it runs
	}
	for _, srv := range servers {
		if srv.Address == address {
			if string(srv.ID) != id {
				return fmt.Errorf("raft peer at %s presented the certificate of node %q, but %s is the address of member %q", address, id, address, srv.ID)
			}
			return nil
		}
	}
	return fmt.Errorf("raft peer at %s (certificate of node %q): no member has that address", address, id)
}

// verifyAccepted checks that a connecting peer presents a node certificate
// (not a client-only one such as the CLI's) naming a member. A node with
// no configuration yet (about to be added) accepts any node certificate:
// the leader that adds it is the first to call.
func (s *streamLayer) verifyAccepted(cs tls.ConnectionState) error {
	id, err := peerNodeID(cs)
	if err != nil {
		return fmt.Errorf("raft client: %w", err)
	}
	servers, _ := s.servers()
	if len(servers) == 0 {
		return nil
	}
	for _, srv := range servers {
		if string(srv.ID) == id {
			return nil
		}
	}
	return fmt.Errorf("raft client presented the certificate of node %q, which is not a member", id)
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// newStreamLayer serves ln, or listens on bind when ln is nil. advertise,
// when set, is the address peers are told to dial.
func newStreamLayer(ln net.Listener, bind, advertise string, server, client *tls.Config) (*streamLayer, error) {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", bind); err != nil {
			return nil, fmt.Errorf("cluster: raft listen on %s: %w", bind, err)
		}
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
		s.server.VerifyConnection = s.verifyAccepted
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
	cfg := s.client.Clone()
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(string(address))
		if err != nil {
			return nil, fmt.Errorf("cluster: raft dial %s: %w", address, err)
		}
		cfg.ServerName = host
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error { return s.verifyDialed(address, cs) }
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	td := tls.Dialer{NetDialer: &d, Config: cfg}
	c, err := td.DialContext(ctx, "tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("cluster: raft dial %s: %w", address, err)
	}
	return c, nil
}

// loopTransport is what Raft needs of a transport beyond raft.Transport:
// NetworkTransport and the in-memory test transports all provide it.
type loopTransport interface {
	raft.Transport
	raft.WithClose
	raft.WithPreVote
}

// unpipelined turns off hashicorp/raft's pipelined replication: with it, a
// follower whose log store failed one append (a full disk) can be left
// without entries until the leader changes (hashicorp/raft issue 612). When
// the failed append comes back, the leader's pipeline decoder stops reading
// answers while the sender keeps queueing requests; once the transport's
// queues of in-flight requests and answers fill, the sender blocks for
// good, holding that follower's replication goroutine. Heartbeats carry on,
// so the follower never starts an election and stays behind. Replication
// one request at a time (each carrying up to MaxAppendEntries entries) has
// no such queue.
type unpipelined struct{ loopTransport }

func (unpipelined) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

// withoutPipelining wraps t so that Raft replicates without pipelining; a
// transport that lacks Close or pre-vote is returned as it is.
func withoutPipelining(t raft.Transport) raft.Transport {
	if lt, ok := t.(loopTransport); ok {
		return unpipelined{lt}
	}
	return t
}
