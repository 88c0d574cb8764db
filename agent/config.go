package agent

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/dataplane"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/secrets"
)

// Config is everything an agent is started with. `rafter agent` fills it
// from flags, a YAML file (--config, same keys as the flags, snake_case or
// dashed) and the environment; the precedence is flag, then environment,
// then file, then DefaultConfig.
type Config struct {
	NodeID    string
	Zone      string
	DataDir   string
	Bind      string // IP the data-plane listeners bind
	Advertise string // IP the admin API and Raft listen on and peers reach; default Bind
	AdminPort int
	RaftPort  int
	// Role is "voter" (default) or "proxy": a proxy joins through Join as a
	// Raft non-voter that receives the log, serves and may hold VIPs, but
	// never counts toward quorum and never bootstraps.
	Role            string
	BootstrapExpect int
	Join            []string // admin addresses host:port of peers
	Token           string   // read-write bearer token; also used to call peers
	ReadOnlyToken   string
	TLSCA           string
	TLSCert         string
	TLSKey          string
	// InsecureTransport allows plaintext Raft and admin traffic on a
	// non-loopback address.
	InsecureTransport bool
	AccessLog         string // "off", "stdout" or a file path
	// ListenSockets is how many sockets serve each data-plane listener
	// address, each with its own accept loop (SO_REUSEPORT); 0: one per
	// GOMAXPROCS on Linux.
	ListenSockets int
	// OTLPEndpoint, when set, receives a span for every sampled proxied
	// request over OTLP/HTTP (a collector's URL, e.g.
	// http://127.0.0.1:4318; /v1/traces is added when it names no path).
	OTLPEndpoint string
	LogLevel     string // debug | info | warn | error
	// LeaseCheckInterval: how often the leader looks for expired leases.
	LeaseCheckInterval time.Duration
	// LeaseDrainPeriod: how long a revoked lease's backends drain before
	// they leave their pools.
	LeaseDrainPeriod time.Duration

	// AWSRegion and AWSEndpoint select the EC2 API; "" leaves them to the
	// SDK (AWS_REGION, AWS_ENDPOINT_URL_EC2, shared config).
	AWSRegion   string
	AWSEndpoint string
	// Discovery runs EC2 tag discovery for pools with discovery.ec2.
	Discovery bool
	// This node's AWS identity, recorded in its node record; Elastic IPs
	// move to AWSENI/AWSPrivateIP.
	AWSInstanceID string
	AWSENI        string
	AWSPrivateIP  string
	// VIP moves the AWS VIPs of VIPProviders while this node leads;
	// VIPHoldDown is how long a VIP stays before it moves back home,
	// VIPDetectAfter how long a holder must be silent before it is
	// declared dead.
	VIP bool
	// VIPProviders are the AWS providers --vip moves: aws-eip (default),
	// aws-private-ip, aws-route. The permissions checked at start are
	// those they need, so a role for Elastic IPs only keeps working.
	VIPProviders   []string
	VIPHoldDown    time.Duration
	VIPDetectAfter time.Duration
	// VIPLinux lets this node hold linux VIPs: it adds their addresses to
	// VIPInterface (default: the interface that carries --bind).
	VIPLinux     bool
	VIPInterface string

	// SecretsKeyFile is the cluster's secrets key file (`rafter keygen`):
	// every node needs the same one. It seals certificate private keys and
	// TLS session-ticket keys in the Raft log and snapshots. Without it the
	// node refuses certificate writes and cannot serve certificates, and
	// never drives ACME orders (account and certificate keys are sealed
	// with it too).
	SecretsKeyFile string
	// TicketKeyRotation is how often the leader replaces the TLS
	// session-ticket key (DefaultTicketKeyRotation).
	TicketKeyRotation time.Duration

	// BackupDir, when set, receives this node's copy of the configuration
	// every BackupEvery (in the format of `rafter snapshot save`); the
	// newest BackupKeep files are kept.
	BackupDir   string
	BackupEvery time.Duration
	BackupKeep  int

	// The fields below are set by programs that run agents in-process
	// (`rafter dev`, tests), never by flags.

	// Stdout receives the access log when AccessLog is "stdout"; Stderr
	// the JSON log. Both default to io.Discard.
	Stdout, Stderr io.Writer
	// Logger, when set, replaces the JSON logger on Stderr.
	Logger *slog.Logger
	// Secrets, when set, is used instead of reading SecretsKeyFile.
	Secrets *secrets.Keyring
	// ACME shortens the ACME manager's timers (tests).
	ACME ACMETuning
	// AdminListener, when set, is served instead of listening on
	// AdminAddr(); its address is the one peers are told.
	AdminListener net.Listener
	// NotifySocket is systemd's NOTIFY_SOCKET: the agent sends READY=1
	// there once it serves and STOPPING=1 as it begins to stop. "" sends
	// nothing.
	NotifySocket string
	// Upgrader, when set, hands the listening sockets to a new process on
	// a request from UpgradeRequests (SIGHUP in `rafter agent`), and is
	// how a process started by an upgrade takes them over.
	Upgrader        Upgrader
	UpgradeRequests <-chan struct{}
}

// DefaultConfig is a single node on loopback with default ports.
func DefaultConfig() Config {
	return Config{
		Bind:      "127.0.0.1",
		AdminPort: 7700,
		RaftPort:  7701,
		AccessLog: "stdout",
		LogLevel:  "info",
		Role:      fsm.RoleVoter,

		LeaseCheckInterval: time.Second,
		TicketKeyRotation:  DefaultTicketKeyRotation,
		LeaseDrainPeriod:   5 * time.Second,

		VIPProviders:   []string{fsm.ProviderAWSEIP},
		VIPHoldDown:    30 * time.Second,
		VIPDetectAfter: 800 * time.Millisecond,

		BackupEvery: time.Hour,
		BackupKeep:  24,
	}
}

// AdvertiseIP is Advertise, or Bind when Advertise is not set.
func (c *Config) AdvertiseIP() string {
	if c.Advertise != "" {
		return c.Advertise
	}
	return c.Bind
}

// AdminAddr is where the admin API listens and peers reach it.
func (c *Config) AdminAddr() string {
	return net.JoinHostPort(c.AdvertiseIP(), strconv.Itoa(c.AdminPort))
}

// RaftAddr is where Raft listens and peers reach it.
func (c *Config) RaftAddr() string {
	return net.JoinHostPort(c.AdvertiseIP(), strconv.Itoa(c.RaftPort))
}

// TLS reports whether TLS files are configured.
func (c *Config) TLS() bool { return c.TLSCA != "" || c.TLSCert != "" || c.TLSKey != "" }

// SlogLevel is LogLevel as a slog.Level (info when invalid).
func (c *Config) SlogLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// Validate reports every problem, each naming the flag to fix.
func (c *Config) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flag, fmt.Sprintf(format, args...)))
	}
	// Identity follows the rules of the node record it becomes.
	check := func(flag string, err error) {
		var fe *fsm.FieldError
		if errors.As(err, &fe) {
			bad(flag, "%s", fe.Message)
		} else if err != nil {
			bad(flag, "%v", err)
		}
	}
	check("node-id", fsm.CheckNodeID(c.NodeID))
	if c.Zone == "" {
		bad("zone", "required (the availability zone this node runs in)")
	} else {
		check("zone", fsm.CheckZoneName(c.Zone))
	}
	if c.DataDir == "" {
		bad("data-dir", "required")
	}
	if c.TicketKeyRotation < minTicketKeyRotation || c.TicketKeyRotation > maxTicketKeyRotation {
		bad("tls-ticket-rotation", "must be %v..%v, got %v", minTicketKeyRotation, maxTicketKeyRotation, c.TicketKeyRotation)
	}
	bind := net.ParseIP(c.Bind)
	if bind == nil {
		bad("bind", "%q is not an IP address", c.Bind)
	}
	if c.Advertise != "" {
		if ip := net.ParseIP(c.Advertise); ip == nil {
			bad("advertise", "%q is not an IP address", c.Advertise)
		} else if ip.IsUnspecified() {
			bad("advertise", "%s: peers cannot reach an unspecified address", c.Advertise)
		}
	} else if bind != nil && bind.IsUnspecified() {
		bad("advertise", "required when --bind is %s", c.Bind)
	}
	for _, p := range []struct {
		flag string
		v    int
	}{{"admin-port", c.AdminPort}, {"raft-port", c.RaftPort}} {
		// 0 picks a free port: useful for tests and a single node only,
		// since peers cannot be told a port nobody knows in advance.
		if p.v < 0 || p.v > 65535 {
			bad(p.flag, "must be 1..65535 (0: any free port), got %d", p.v)
		}
	}
	if c.AdminPort == c.RaftPort && c.AdminPort != 0 {
		bad("raft-port", "must differ from --admin-port (%d)", c.AdminPort)
	}
	check("bootstrap-expect", cluster.CheckBootstrapExpect(c.BootstrapExpect))
	switch c.Role {
	case "", fsm.RoleVoter:
	case fsm.RoleProxy:
		if c.BootstrapExpect != 0 {
			bad("bootstrap-expect", "a proxy never bootstraps and the voters do not count it: leave --bootstrap-expect out and give the voters' admin addresses in --join")
		}
	default:
		bad("role", "%q: want voter or proxy", c.Role)
	}
	for i, j := range c.Join {
		if _, port, err := net.SplitHostPort(j); err != nil || port == "" {
			bad("join", "[%d] %q: want host:port of a peer's admin API", i, j)
		}
	}
	if c.BootstrapExpect == 0 && len(c.Join) == 0 {
		bad("join", "required when --bootstrap-expect is 0 (give the admin address of a cluster member)")
	}
	if c.Token != "" && c.Token == c.ReadOnlyToken {
		bad("read-only-token", "must differ from --token")
	}
	if c.TLS() {
		for _, f := range []struct{ flag, path string }{{"tls-ca", c.TLSCA}, {"tls-cert", c.TLSCert}, {"tls-key", c.TLSKey}} {
			if f.path == "" {
				bad(f.flag, "required with the other --tls-* flags")
			} else if _, err := os.Stat(f.path); err != nil {
				bad(f.flag, "%v", err)
			}
		}
	} else if ip := net.ParseIP(c.AdvertiseIP()); ip != nil && !ip.IsLoopback() {
		switch {
		case !c.InsecureTransport:
			bad("tls-ca", "Raft and the admin API on %s would be plaintext: run `rafter tls init` and pass --tls-ca/--tls-cert/--tls-key, or --insecure-transport on a trusted network", c.AdvertiseIP())
		case c.Token == "" && c.ReadOnlyToken == "":
			// With TLS every caller needs a client certificate; without
			// it and without a token anyone who can reach the port could
			// rewrite the configuration.
			bad("token", "the admin API on %s would accept any client: pass --token (or RAFTER_TOKEN), or run `rafter tls init` and pass --tls-ca/--tls-cert/--tls-key so that clients need a certificate", c.AdvertiseIP())
		}
	}
	switch c.AccessLog {
	case "":
		bad("access-log", "want off, stdout or a file path")
	}
	if c.OTLPEndpoint != "" {
		check("otlp-endpoint", checkOTLPEndpoint(c.OTLPEndpoint))
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level", "want debug, info, warn or error, got %q", c.LogLevel)
	}
	if c.LeaseCheckInterval <= 0 {
		bad("lease-check-interval", "must be positive, got %v", c.LeaseCheckInterval)
	}
	if c.LeaseDrainPeriod < 0 {
		bad("lease-drain-period", "must not be negative, got %v", c.LeaseDrainPeriod)
	}
	if c.ListenSockets < 0 || c.ListenSockets > dataplane.MaxListenShards {
		bad("listen-sockets", "must be within 0-%d, got %d", dataplane.MaxListenShards, c.ListenSockets)
	}
	c.validateAWS(bad, check)
	if c.BackupDir != "" {
		if c.BackupEvery < minBackupEvery {
			bad("backup-every", "must be at least %v, got %v", minBackupEvery, c.BackupEvery)
		}
		if c.BackupKeep < 1 || c.BackupKeep > maxBackupKeep {
			bad("backup-keep", "must be 1..%d, got %d", maxBackupKeep, c.BackupKeep)
		}
		if st, err := os.Stat(c.BackupDir); err != nil {
			bad("backup-dir", "%v", err)
		} else if !st.IsDir() {
			bad("backup-dir", "%s is not a directory", c.BackupDir)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return configErrors(errs)
}

// configErrors reads as one line, so that the command prints one line.
type configErrors []error

func (e configErrors) Error() string {
	parts := make([]string, len(e))
	for i, err := range e {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (e configErrors) Unwrap() []error { return e }

// AWS reports whether a feature needing the EC2 API is enabled.
func (c *Config) AWS() bool { return c.Discovery || c.VIP }

func (c *Config) validateAWS(bad func(flag, format string, args ...any), check func(flag string, err error)) {
	if c.AWSEndpoint != "" {
		if u, err := url.Parse(c.AWSEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("aws-endpoint", "%q: want an http(s) URL", c.AWSEndpoint)
		}
	}
	if strings.ContainsFunc(c.AWSRegion, unicode.IsSpace) {
		bad("aws-region", "%q contains whitespace", c.AWSRegion)
	}
	if c.AWSInstanceID != "" {
		check("aws-instance-id", fsm.CheckInstanceID(c.AWSInstanceID))
	}
	if c.AWSENI != "" {
		check("aws-eni", fsm.CheckENI(c.AWSENI))
	}
	if c.AWSPrivateIP != "" && net.ParseIP(c.AWSPrivateIP) == nil {
		bad("aws-private-ip", "%q is not an IP address", c.AWSPrivateIP)
	}
	switch {
	case c.AWSENI != "" && c.AWSPrivateIP == "":
		bad("aws-private-ip", "required with --aws-eni (the address Elastic IPs map to)")
	case c.AWSENI == "" && c.AWSPrivateIP != "":
		bad("aws-eni", "required with --aws-private-ip")
	case c.VIP && c.AWSENI == "":
		bad("aws-eni", "required with --vip: AWS VIPs move to this node's --aws-eni (an Elastic IP to its --aws-private-ip)")
	}
	if c.VIPHoldDown < 0 {
		bad("vip-hold-down", "must not be negative, got %v", c.VIPHoldDown)
	}
	if c.VIPDetectAfter <= 0 {
		bad("vip-detect-after", "must be positive, got %v", c.VIPDetectAfter)
	}
	if c.VIPInterface != "" && !c.VIPLinux {
		bad("vip-linux", "required with --vip-interface")
	}
	if len(c.VIPProviders) == 0 && c.VIP {
		bad("vip-providers", "name at least one of %s", strings.Join(awsVIPProviders(), ", "))
	}
	for i, p := range c.VIPProviders {
		if !slices.Contains(awsVIPProviders(), p) {
			bad("vip-providers", "[%d] %q: want one of %s", i, p, strings.Join(awsVIPProviders(), ", "))
		} else if slices.Contains(c.VIPProviders[:i], p) {
			bad("vip-providers", "[%d] %q is named twice", i, p)
		}
	}
}

// awsVIPProviders are the providers --vip can move.
func awsVIPProviders() []string {
	return []string{fsm.ProviderAWSEIP, fsm.ProviderAWSPrivateIP, fsm.ProviderAWSRoute}
}
