package cli

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// AgentConfig is everything `rafter agent` is started with. Flags, a YAML
// file (--config, same keys as the flags, snake_case or dashed) and the
// environment set it; the precedence is flag, then environment, then file,
// then DefaultAgentConfig.
type AgentConfig struct {
	NodeID          string
	Zone            string
	DataDir         string
	Bind            string // IP the data-plane listeners bind
	Advertise       string // IP the admin API and Raft listen on and peers reach; default Bind
	AdminPort       int
	RaftPort        int
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
	LogLevel          string // debug | info | warn | error
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
	// VIP moves aws-eip VIPs (Elastic IPs) while this node leads;
	// VIPHoldDown is how long a VIP stays before it moves back home,
	// VIPDetectAfter how long a holder must be silent before it is
	// declared dead.
	VIP            bool
	VIPHoldDown    time.Duration
	VIPDetectAfter time.Duration
	// VIPLinux lets this node hold linux VIPs: it adds their addresses to
	// VIPInterface (default: the interface that carries --bind).
	VIPLinux     bool
	VIPInterface string
}

// DefaultAgentConfig is a single node on loopback with default ports.
func DefaultAgentConfig() AgentConfig {
	return AgentConfig{
		Bind:      "127.0.0.1",
		AdminPort: 7700,
		RaftPort:  7701,
		AccessLog: "stdout",
		LogLevel:  "info",

		LeaseCheckInterval: time.Second,
		LeaseDrainPeriod:   5 * time.Second,

		VIPHoldDown:    30 * time.Second,
		VIPDetectAfter: 500 * time.Millisecond,
	}
}

// BindAgentFlags registers the agent's flags on fs, writing into c; the
// flags' defaults are c's current values.
func BindAgentFlags(fs *pflag.FlagSet, c *AgentConfig) {
	fs.StringVar(&c.NodeID, "node-id", c.NodeID, "this node's id, unique in the cluster (required)")
	fs.StringVar(&c.Zone, "zone", c.Zone, "this node's availability zone (required)")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the Raft log and snapshots (required)")
	fs.StringVar(&c.Bind, "bind", c.Bind, "IP address the data-plane listeners bind")
	fs.StringVar(&c.Advertise, "advertise", c.Advertise, "IP address the admin API and Raft listen on and peers reach (default --bind)")
	fs.IntVar(&c.AdminPort, "admin-port", c.AdminPort, "admin API port")
	fs.IntVar(&c.RaftPort, "raft-port", c.RaftPort, "Raft port")
	fs.IntVar(&c.BootstrapExpect, "bootstrap-expect", c.BootstrapExpect, "form a new cluster once this many nodes (1, 3, 5 or 7) answer; 0 joins an existing one")
	fs.StringSliceVar(&c.Join, "join", c.Join, "admin addresses (host:port) of peers, comma separated")
	fs.StringVar(&c.Token, "token", c.Token, "read-write bearer token for the admin API, also sent to peers (env RAFTER_TOKEN)")
	fs.StringVar(&c.ReadOnlyToken, "read-only-token", c.ReadOnlyToken, "bearer token allowed to read only (env RAFTER_READ_ONLY_TOKEN)")
	fs.StringVar(&c.TLSCA, "tls-ca", c.TLSCA, "CA certificate (from `rafter tls init`) for mutual TLS on Raft and HTTPS on the admin API")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "this node's certificate")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "this node's certificate key")
	fs.BoolVar(&c.InsecureTransport, "insecure-transport", c.InsecureTransport, "allow plaintext Raft and admin traffic on a non-loopback address")
	fs.StringVar(&c.AccessLog, "access-log", c.AccessLog, "access log: off, stdout or a file path")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.DurationVar(&c.LeaseCheckInterval, "lease-check-interval", c.LeaseCheckInterval, "how often the leader expires leases whose TTL ran out")
	fs.DurationVar(&c.LeaseDrainPeriod, "lease-drain-period", c.LeaseDrainPeriod, "how long backends of a revoked lease drain before they leave their pools (0: at once)")
	fs.StringVar(&c.AWSRegion, "aws-region", c.AWSRegion, "AWS region of the EC2 API (default: the SDK's, e.g. AWS_REGION)")
	fs.StringVar(&c.AWSEndpoint, "aws-endpoint", c.AWSEndpoint, "EC2 API endpoint URL (default: the SDK's, e.g. AWS_ENDPOINT_URL_EC2)")
	fs.BoolVar(&c.Discovery, "discovery", c.Discovery, "fill pools with discovery.ec2 from EC2 tags (while this node leads)")
	fs.StringVar(&c.AWSInstanceID, "aws-instance-id", c.AWSInstanceID, "this node's EC2 instance id (i-...)")
	fs.StringVar(&c.AWSENI, "aws-eni", c.AWSENI, "this node's network interface (eni-...) that Elastic IPs are associated with")
	fs.StringVar(&c.AWSPrivateIP, "aws-private-ip", c.AWSPrivateIP, "the private IP on --aws-eni that Elastic IPs map to")
	fs.BoolVar(&c.VIP, "vip", c.VIP, "move aws-eip VIPs (Elastic IPs) while this node leads")
	fs.BoolVar(&c.VIPLinux, "vip-linux", c.VIPLinux, "hold linux VIPs on this node: add their addresses and send gratuitous ARP (needs CAP_NET_ADMIN and CAP_NET_RAW)")
	fs.StringVar(&c.VIPInterface, "vip-interface", c.VIPInterface, "interface for linux VIPs whose spec names none (default: the interface that carries --bind)")
	fs.DurationVar(&c.VIPHoldDown, "vip-hold-down", c.VIPHoldDown, "how long a VIP stays on a failover node before it moves back home")
	fs.DurationVar(&c.VIPDetectAfter, "vip-detect-after", c.VIPDetectAfter, "how long a VIP holder must be unreachable before the VIP moves")
}

// agentEnv maps environment variables to the flags they set.
var agentEnv = [...]struct{ env, flag string }{
	{"RAFTER_TOKEN", "token"},
	{"RAFTER_READ_ONLY_TOKEN", "read-only-token"},
}

// LoadAgentConfig completes the flags parsed into fs with the environment
// and then the YAML file configFile (may be ""): a value reaches the config
// only if no source of higher precedence set it.
func LoadAgentConfig(fs *pflag.FlagSet, configFile string, getenv func(string) string) error {
	set := func(name, value, source string) error {
		f := fs.Lookup(name)
		if err := f.Value.Set(value); err != nil {
			return fmt.Errorf("%s: %s: %w", source, name, err)
		}
		return nil
	}
	fromEnv := map[string]bool{}
	for _, e := range agentEnv {
		if v := getenv(e.env); v != "" && !fs.Changed(e.flag) {
			if err := set(e.flag, v, e.env); err != nil {
				return err
			}
			fromEnv[e.flag] = true
		}
	}
	if configFile == "" {
		return nil
	}
	data, err := os.ReadFile(configFile)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("--config %s: %w", configFile, err)
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	seen := map[string]string{}
	for _, key := range keys {
		name := strings.ReplaceAll(strings.ToLower(key), "_", "-")
		src := fmt.Sprintf("--config %s", configFile)
		if f := fs.Lookup(name); f == nil || name == "config" {
			return fmt.Errorf("%s: unknown key %q", src, key)
		}
		if prev, dup := seen[name]; dup {
			return fmt.Errorf("%s: keys %q and %q set the same option", src, prev, key)
		}
		seen[name] = key
		if fs.Changed(name) || fromEnv[name] {
			continue
		}
		v, err := scalarString(doc[key])
		if err != nil {
			return fmt.Errorf("%s: %s: %w", src, key, err)
		}
		if err := set(name, v, src); err != nil {
			return err
		}
	}
	return nil
}

// scalarString turns a YAML value into what the flag would take on the
// command line; a list becomes a comma-separated value.
func scalarString(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			s, err := scalarString(e)
			if err != nil {
				return "", fmt.Errorf("[%d]: %w", i, err)
			}
			if strings.Contains(s, ",") {
				return "", fmt.Errorf("[%d]: %q contains a comma", i, s)
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("want a string, number, boolean or list, got %T", v)
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// AdvertiseIP is Advertise, or Bind when Advertise is not set.
func (c *AgentConfig) AdvertiseIP() string {
	if c.Advertise != "" {
		return c.Advertise
	}
	return c.Bind
}

// AdminAddr is where the admin API listens and peers reach it.
func (c *AgentConfig) AdminAddr() string {
	return net.JoinHostPort(c.AdvertiseIP(), strconv.Itoa(c.AdminPort))
}

// RaftAddr is where Raft listens and peers reach it.
func (c *AgentConfig) RaftAddr() string {
	return net.JoinHostPort(c.AdvertiseIP(), strconv.Itoa(c.RaftPort))
}

// TLS reports whether TLS files are configured.
func (c *AgentConfig) TLS() bool { return c.TLSCA != "" || c.TLSCert != "" || c.TLSKey != "" }

// SlogLevel is LogLevel as a slog.Level (info when invalid).
func (c *AgentConfig) SlogLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// Validate reports every problem, each naming the flag to fix.
func (c *AgentConfig) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flag, fmt.Sprintf(format, args...)))
	}
	switch {
	case c.NodeID == "":
		bad("node-id", "required")
	case !idPattern.MatchString(c.NodeID):
		bad("node-id", "%q: use letters, digits, '.', '_' or '-' (at most 63)", c.NodeID)
	}
	switch {
	case c.Zone == "":
		bad("zone", "required (the availability zone this node runs in)")
	case !idPattern.MatchString(c.Zone):
		bad("zone", "%q: use letters, digits, '.', '_' or '-'", c.Zone)
	}
	if c.DataDir == "" {
		bad("data-dir", "required")
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
	switch c.BootstrapExpect {
	case 0, 1, 3, 5, 7:
	default:
		bad("bootstrap-expect", "must be 1, 3, 5 or 7 (an odd number keeps a majority through a split), or 0 to join an existing cluster; got %d", c.BootstrapExpect)
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
	c.validateAWS(bad)
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

var (
	instanceIDPattern = regexp.MustCompile(`^i-[0-9a-z]{1,32}$`)
	eniPattern        = regexp.MustCompile(`^eni-[0-9a-z]{1,32}$`)
)

// AWS reports whether a feature needing the EC2 API is enabled.
func (c *AgentConfig) AWS() bool { return c.Discovery || c.VIP }

func (c *AgentConfig) validateAWS(bad func(flag, format string, args ...any)) {
	if c.AWSEndpoint != "" {
		if u, err := url.Parse(c.AWSEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("aws-endpoint", "%q: want an http(s) URL", c.AWSEndpoint)
		}
	}
	if strings.ContainsFunc(c.AWSRegion, unicode.IsSpace) {
		bad("aws-region", "%q contains whitespace", c.AWSRegion)
	}
	if c.AWSInstanceID != "" && !instanceIDPattern.MatchString(c.AWSInstanceID) {
		bad("aws-instance-id", "%q: want an instance id like i-0123456789abcdef0", c.AWSInstanceID)
	}
	if c.AWSENI != "" && !eniPattern.MatchString(c.AWSENI) {
		bad("aws-eni", "%q: want a network interface id like eni-0123456789abcdef0", c.AWSENI)
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
		bad("aws-eni", "required with --vip: an aws-eip VIP is associated with this node's --aws-eni and --aws-private-ip")
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
}
