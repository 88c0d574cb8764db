package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/cluster/tlsutil"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/conf"
)

// Config configures one node. Start from DefaultConfig.
type Config struct {
	NodeID string
	Zone   string
	// DataDir holds raft.db (log and stable store, fsync on) and snapshots/.
	DataDir string
	// RaftBind is the host:port Raft listens on; RaftAdvertise is what peers
	// dial (default: the bound address, which must then be a specific IP).
	RaftBind      string
	RaftAdvertise string
	// RaftListener, when set, is Raft's listening socket instead of one
	// bound to RaftBind (the upgrade hand-over passes the old process's
	// socket on, so peers' connections wait in its backlog rather than
	// being refused). The node closes it.
	RaftListener net.Listener
	// StoreLockWait bounds how long Open waits for raft.db while another
	// process holds its lock (an upgrade's old process until it closes
	// Raft); 0 means DefaultStoreLockWait.
	StoreLockWait time.Duration
	// AdminAddr is this node's admin API host:port as peers reach it.
	AdminAddr string
	// DataAddr is this node's data-plane IP (informational, recorded in the fsm Node).
	DataAddr string
	// InstanceID, ENI and PrivateIP are this node's AWS identity, recorded
	// in the fsm Node so that the VIP controller can move Elastic IPs here.
	InstanceID string
	ENI        string
	PrivateIP  string
	// Role is fsm.RoleVoter (also when "") or fsm.RoleProxy: a proxy joins
	// as a Raft non-voter through Join, never bootstraps and is not counted
	// by the voters' BootstrapExpect.
	Role string
	// BootstrapExpect is the size of the cluster to form: 1, 3, 5 or 7.
	// 0 means never bootstrap: join an existing cluster through Join.
	BootstrapExpect int
	// Join lists peers' admin addresses (host:port); it may include this node.
	Join []string
	// Peers, when set, replaces the discovery through Join with a fixed
	// membership (every server's ID and Raft address known in advance).
	Peers []PeerInfo
	// Token is the bearer token sent to peers' admin APIs.
	Token string
	// ServerTLS and ClientTLS enable mutual TLS for Raft (nil = plaintext);
	// ClientTLS is also used for HTTPS calls to peers' admin APIs.
	ServerTLS *tls.Config
	ClientTLS *tls.Config
	// AdminScheme is "http" or "https" for calls to peers' admin APIs
	// (default: https when ClientTLS is set).
	AdminScheme string
	// InsecureTransport allows plaintext Raft on a non-loopback address.
	InsecureTransport bool
	Logger            *slog.Logger
	// Registerer receives the node's Raft metrics; nil keeps them
	// unregistered (they are still measured).
	Registerer prometheus.Registerer
	// RaftLogLevel filters hashicorp/raft's own messages: trace, debug,
	// info, warn (default) or error.
	RaftLogLevel string

	// Timing. The defaults are tuned for one region: a lost leader is
	// replaced and a new one accepts writes within about a second.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// TransportTimeout bounds one Raft RPC to a silent peer.
	TransportTimeout time.Duration
	// SnapshotInterval, SnapshotThreshold and TrailingLogs control log
	// compaction (see hashicorp/raft.Config).
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64

	// For tests: when Transport is set the node uses it, with the given
	// stores or in-memory ones, and ignores DataDir and RaftBind.
	Transport     raft.Transport
	LogStore      raft.LogStore
	StableStore   raft.StableStore
	SnapshotStore raft.SnapshotStore
}

// Timing defaults. Followers wait HeartbeatTimeout (randomised up to 2x)
// without hearing from the leader, then a pre-vote and a vote round follow:
// about 0.5-1.2 s from the leader's loss to a new leader on a LAN.
const (
	defaultHeartbeatTimeout = 500 * time.Millisecond
	defaultElectionTimeout  = 500 * time.Millisecond
	// A leader that has not heard from a quorum for this long steps down.
	// As long as the heartbeat timeout (the most Raft allows): a shorter
	// lease made leaders step down whenever a CPU was starved for a
	// quarter second, and every step-down costs an election. Nothing
	// relies on it for safety: probe answers and VIP moves are confirmed
	// by a quorum round (VerifyLeader) each time.
	defaultLeaderLeaseTimeout = 500 * time.Millisecond
	// Followers learn that an entry committed from the leader's next
	// AppendEntries, which without new entries comes after CommitTimeout
	// (randomised up to 2x): it bounds how soon a change reaches the
	// followers' data planes. 20 ms made the median propagation to all
	// three nodes 54 ms; 5 ms makes it 20 ms, for about 100 empty appends
	// a second to each follower.
	defaultCommitTimeout     = 5 * time.Millisecond
	defaultTransportTimeout  = time.Second
	defaultSnapshotInterval  = 30 * time.Second
	defaultSnapshotThreshold = 8192
	defaultTrailingLogs      = 10240
	transportMaxPool         = 3
	// DefaultStoreLockWait: a second agent started on the same data
	// directory fails after this long instead of waiting for ever.
	DefaultStoreLockWait = 5 * time.Second
	snapshotsRetained    = 3
)

// DefaultConfig returns a Config with the timing defaults filled in.
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:   defaultHeartbeatTimeout,
		ElectionTimeout:    defaultElectionTimeout,
		LeaderLeaseTimeout: defaultLeaderLeaseTimeout,
		CommitTimeout:      defaultCommitTimeout,
		TransportTimeout:   defaultTransportTimeout,
		SnapshotInterval:   defaultSnapshotInterval,
		SnapshotThreshold:  defaultSnapshotThreshold,
		TrailingLogs:       defaultTrailingLogs,
		RaftLogLevel:       "warn",
	}
}

// withDefaults fills zero timing fields so a Config built without
// DefaultConfig still gets sane values.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	conf.Default(&c.HeartbeatTimeout, d.HeartbeatTimeout)
	conf.Default(&c.ElectionTimeout, d.ElectionTimeout)
	conf.Default(&c.LeaderLeaseTimeout, d.LeaderLeaseTimeout)
	conf.Default(&c.CommitTimeout, d.CommitTimeout)
	conf.Default(&c.TransportTimeout, d.TransportTimeout)
	conf.Default(&c.StoreLockWait, DefaultStoreLockWait)
	conf.Default(&c.SnapshotInterval, d.SnapshotInterval)
	conf.Default(&c.SnapshotThreshold, d.SnapshotThreshold)
	conf.Default(&c.TrailingLogs, d.TrailingLogs)
	if c.AdminScheme == "" {
		c.AdminScheme = "http"
		if c.ClientTLS != nil {
			c.AdminScheme = "https"
		}
	}
	conf.Logger(&c.Logger)
	return c
}

// Validate reports the first problem with c, naming the field.
func (c *Config) Validate() error {
	cfg := c.withDefaults()
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if err := fsm.CheckNodeID(cfg.NodeID); err != nil {
		add("cluster.%w", err)
	}
	if err := CheckBootstrapExpect(cfg.BootstrapExpect); err != nil {
		add("cluster.bootstrap_expect: %w", err)
	}
	if err := fsm.CheckRole(cfg.Role); err != nil {
		add("cluster.%w", err)
	}
	if cfg.Role == fsm.RoleProxy && cfg.BootstrapExpect != 0 {
		add("cluster.bootstrap_expect: a proxy never bootstraps and is not counted by the voters' bootstrap_expect; leave it 0 and give the voters' admin addresses in join")
	}
	if cfg.BootstrapExpect > 1 && len(cfg.Join) == 0 && len(cfg.Peers) == 0 {
		add("cluster.join: bootstrap_expect %d needs the admin addresses of the other nodes", cfg.BootstrapExpect)
	}
	if len(cfg.Peers) > 0 && cfg.BootstrapExpect != 0 && len(cfg.Peers) != cfg.BootstrapExpect {
		add("cluster.peers: %d peers given but bootstrap_expect is %d", len(cfg.Peers), cfg.BootstrapExpect)
	}
	for i, p := range cfg.Peers {
		if p.ID == "" || p.RaftAddr == "" {
			add("cluster.peers[%d]: id and raft_addr are required", i)
		}
	}
	if cfg.InstanceID != "" {
		if err := fsm.CheckInstanceID(cfg.InstanceID); err != nil {
			add("cluster.%w", err)
		}
	}
	if cfg.ENI != "" {
		if err := fsm.CheckENI(cfg.ENI); err != nil {
			add("cluster.%w", err)
		}
	}
	if cfg.PrivateIP != "" && net.ParseIP(cfg.PrivateIP) == nil {
		add("cluster.private_ip: %q is not an IP address", cfg.PrivateIP)
	}
	for i, j := range cfg.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			add("cluster.join[%d]: %q is not host:port: %w", i, j, err)
		}
	}
	if cfg.Transport == nil {
		if cfg.DataDir == "" {
			add("cluster.data_dir: required")
		}
		errs = append(errs, cfg.validateRaftAddrs()...)
	}
	if (cfg.ServerTLS == nil) != (cfg.ClientTLS == nil) {
		add("cluster.tls: server and client TLS must be set together (mutual TLS)")
	}
	if cfg.ServerTLS != nil && cfg.ServerTLS.ClientCAs == nil {
		add("cluster.tls.server: client CA pool required to verify peers")
	}
	if cfg.ServerTLS != nil && len(cfg.ServerTLS.Certificates) == 0 && cfg.ServerTLS.GetCertificate == nil {
		add("cluster.tls.server: certificate required")
	}
	for _, tc := range []struct {
		field string
		c     *tls.Config
	}{{"server", cfg.ServerTLS}, {"client", cfg.ClientTLS}} {
		if err := certNamesNode(tc.c, cfg.NodeID); err != nil {
			add("cluster.tls.%s: %w", tc.field, err)
		}
	}
	if cfg.ClientTLS != nil && cfg.ClientTLS.RootCAs == nil {
		add("cluster.tls.client: CA pool required to verify peers")
	}
	if cfg.ClientTLS != nil && len(cfg.ClientTLS.Certificates) == 0 && cfg.ClientTLS.GetClientCertificate == nil {
		add("cluster.tls.client: certificate required (peers verify it)")
	}
	if cfg.AdminScheme != "http" && cfg.AdminScheme != "https" {
		add("cluster.admin_scheme: %q (want http or https)", cfg.AdminScheme)
	}
	if _, err := parseRaftLogLevel(strings.ToLower(c.RaftLogLevel)); err != nil {
		add("cluster.raft_log_level: %w", err)
	}
	if c.StoreLockWait < 0 {
		add("cluster.store_lock_wait: must not be negative")
	}
	if cfg.TransportTimeout < 10*time.Millisecond {
		add("cluster.transport_timeout: %s is too low", cfg.TransportTimeout)
	}
	if _, err := cfg.raftConfig(); err != nil {
		add("cluster.timing: %w", err)
	}
	return errors.Join(errs...)
}

// CheckBootstrapExpect reports why n cannot be the number of voters a new
// cluster forms with (0 means: join an existing cluster).
func CheckBootstrapExpect(n int) error {
	switch n {
	case 0, 1, 3, 5, 7:
		return nil
	case 2, 4, 6:
		return fmt.Errorf("%d is even: a cluster of %d tolerates no more failures than one of %d and loses quorum on an even split; use %d or %d",
			n, n, n-1, n-1, n+1)
	}
	return fmt.Errorf("%d not supported (want 1, 3, 5 or 7; 0 to join an existing cluster)", n)
}

// certNamesNode checks that the certificate this node presents to peers
// names it: peers refuse a certificate for any other node id.
func certNamesNode(c *tls.Config, nodeID string) error {
	if c == nil || len(c.Certificates) == 0 || len(c.Certificates[0].Certificate) == 0 || nodeID == "" {
		return nil
	}
	leaf, err := x509.ParseCertificate(c.Certificates[0].Certificate[0])
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	id, err := tlsutil.NodeID(leaf)
	if err != nil {
		return fmt.Errorf("certificate: %w; use a node certificate from `rafter tls init --nodes %s=IP`", err, nodeID)
	}
	if id != nodeID {
		return fmt.Errorf("the certificate is node %q's but this node is %q; peers refuse a certificate for another node: use %s.pem from `rafter tls init --nodes %s=IP,...`", id, nodeID, nodeID, nodeID)
	}
	return nil
}

func (c *Config) validateRaftAddrs() []error {
	var errs []error
	bindHost, _, err := net.SplitHostPort(c.RaftBind)
	if err != nil {
		return []error{fmt.Errorf("cluster.raft_bind: %q is not host:port: %w", c.RaftBind, err)}
	}
	hosts := []string{bindHost}
	if c.RaftAdvertise != "" {
		advHost, advPort, err := net.SplitHostPort(c.RaftAdvertise)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("cluster.raft_advertise: %q is not host:port: %w", c.RaftAdvertise, err))
		case isUnspecified(advHost) || advPort == "0":
			errs = append(errs, fmt.Errorf("cluster.raft_advertise: %q must be an address peers can dial", c.RaftAdvertise))
		default:
			hosts = append(hosts, advHost)
		}
	} else if isUnspecified(bindHost) {
		errs = append(errs, fmt.Errorf("cluster.raft_advertise: required when raft_bind %q listens on every interface", c.RaftBind))
	}
	if c.ServerTLS == nil && !c.InsecureTransport {
		for _, h := range hosts {
			if !isLoopback(h) {
				errs = append(errs, fmt.Errorf("cluster.raft_bind: refusing plaintext Raft on non-loopback address %q: run `rafter tls init` and pass the --tls-* flags (or --insecure-transport on a trusted network)", h))
				break
			}
		}
	}
	return errs
}

func isUnspecified(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// raftConfig builds and checks hashicorp/raft's configuration.
func (c *Config) raftConfig() (*raft.Config, error) {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.NodeID)
	if rc.LocalID == "" {
		rc.LocalID = "unset" // Validate reports the missing ID on its own
	}
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	rc.CommitTimeout = c.CommitTimeout
	rc.SnapshotInterval = c.SnapshotInterval
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.TrailingLogs = c.TrailingLogs
	// A leader that demotes or removes itself steps down to follower
	// rather than shutting Raft down: a demoted leader is a proxy, which
	// must go on following the log. Shut down, it served its last
	// configuration for good, and the change's own future could be left
	// unanswered (the FSM goroutine may stop before it answers).
	rc.ShutdownOnRemove = false
	// BatchApplyCh stays off: with it Raft can leave queued futures
	// unanswered at shutdown. The leader loop batches concurrent Apply calls
	// into one disk write and one AppendEntries round either way.
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, err
	}
	return rc, nil
}
