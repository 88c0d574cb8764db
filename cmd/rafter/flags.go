package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/rafterlb/rafter/agent"
)

// BindAgentFlags registers the agent's flags on fs, writing into c; the
// flags' defaults are c's current values.
func BindAgentFlags(fs *pflag.FlagSet, c *agent.Config) {
	fs.StringVar(&c.NodeID, "node-id", c.NodeID, "this node's id, unique in the cluster (required)")
	fs.StringVar(&c.Zone, "zone", c.Zone, "this node's availability zone (required)")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the Raft log and snapshots (required)")
	fs.StringVar(&c.Bind, "bind", c.Bind, "IP address the data-plane listeners bind")
	fs.StringVar(&c.Advertise, "advertise", c.Advertise, "IP address the admin API and Raft listen on and peers reach (default --bind)")
	fs.IntVar(&c.AdminPort, "admin-port", c.AdminPort, "admin API port")
	fs.IntVar(&c.RaftPort, "raft-port", c.RaftPort, "Raft port")
	fs.StringVar(&c.Role, "role", c.Role, "voter, or proxy: join as a non-voting member that receives the log and serves but never counts toward quorum (never bootstraps)")
	fs.IntVar(&c.BootstrapExpect, "bootstrap-expect", c.BootstrapExpect, "form a new cluster once this many nodes (1, 3, 5 or 7) answer; 0 joins an existing one")
	fs.StringSliceVar(&c.Join, "join", c.Join, "admin addresses (host:port) of peers, comma separated")
	fs.StringVar(&c.Token, "token", c.Token, "read-write bearer token for the admin API, also sent to peers (env RAFTER_TOKEN)")
	fs.StringVar(&c.ReadOnlyToken, "read-only-token", c.ReadOnlyToken, "bearer token allowed to read only (env RAFTER_READ_ONLY_TOKEN)")
	fs.StringVar(&c.TLSCA, "tls-ca", c.TLSCA, "CA certificate (from `rafter tls init`) for mutual TLS on Raft and HTTPS on the admin API")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "this node's certificate")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "this node's certificate key")
	fs.BoolVar(&c.InsecureTransport, "insecure-transport", c.InsecureTransport, "allow plaintext Raft and admin traffic on a non-loopback address")
	fs.StringVar(&c.AccessLog, "access-log", c.AccessLog, "access log: off, stdout or a file path")
	fs.IntVar(&c.ListenSockets, "listen-sockets", c.ListenSockets, "sockets per data-plane listener address, each with its own accept loop (SO_REUSEPORT; 0: one per GOMAXPROCS)")
	fs.StringVar(&c.OTLPEndpoint, "otlp-endpoint", c.OTLPEndpoint, "send a trace span of every sampled request to this OTLP/HTTP receiver (e.g. http://127.0.0.1:4318)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.DurationVar(&c.LeaseCheckInterval, "lease-check-interval", c.LeaseCheckInterval, "how often the leader expires leases whose TTL ran out")
	fs.DurationVar(&c.LeaseDrainPeriod, "lease-drain-period", c.LeaseDrainPeriod, "how long backends of a revoked lease drain before they leave their pools (0: at once)")
	fs.StringVar(&c.AWSRegion, "aws-region", c.AWSRegion, "AWS region of the EC2 API (default: the SDK's, e.g. AWS_REGION)")
	fs.StringVar(&c.AWSEndpoint, "aws-endpoint", c.AWSEndpoint, "EC2 API endpoint URL (default: the SDK's, e.g. AWS_ENDPOINT_URL_EC2)")
	fs.BoolVar(&c.Discovery, "discovery", c.Discovery, "fill pools with discovery.ec2 from EC2 tags (while this node leads)")
	fs.StringVar(&c.AWSInstanceID, "aws-instance-id", c.AWSInstanceID, "this node's EC2 instance id (i-...)")
	fs.StringVar(&c.AWSENI, "aws-eni", c.AWSENI, "this node's network interface (eni-...) that Elastic IPs are associated with")
	fs.StringVar(&c.AWSPrivateIP, "aws-private-ip", c.AWSPrivateIP, "the private IP on --aws-eni that Elastic IPs map to")
	fs.BoolVar(&c.VIP, "vip", c.VIP, "move AWS VIPs of --vip-providers while this node leads")
	fs.StringSliceVar(&c.VIPProviders, "vip-providers", c.VIPProviders, "the AWS VIP providers --vip moves, comma separated: aws-eip (Elastic IPs), aws-private-ip (a secondary private IP), aws-route (a route-table entry); their EC2 permissions are checked at start")
	fs.BoolVar(&c.VIPLinux, "vip-linux", c.VIPLinux, "hold linux VIPs on this node: add their addresses and send gratuitous ARP (needs CAP_NET_ADMIN and CAP_NET_RAW)")
	fs.StringVar(&c.VIPInterface, "vip-interface", c.VIPInterface, "interface for linux VIPs whose spec names none (default: the interface that carries --bind)")
	fs.DurationVar(&c.VIPHoldDown, "vip-hold-down", c.VIPHoldDown, "how long a VIP stays on a failover node before it moves back home")
	fs.StringVar(&c.BackupDir, "backup-dir", c.BackupDir, "save this node's copy of the configuration here on a timer (format of `rafter snapshot save`)")
	fs.DurationVar(&c.BackupEvery, "backup-every", c.BackupEvery, "how often to save to --backup-dir (a file is written only when the state changed)")
	fs.IntVar(&c.BackupKeep, "backup-keep", c.BackupKeep, "how many files in --backup-dir to keep")
	fs.DurationVar(&c.VIPDetectAfter, "vip-detect-after", c.VIPDetectAfter, "how long a VIP holder must be unreachable before the VIP moves")
	fs.StringVar(&c.SecretsKeyFile, "secrets-key-file", c.SecretsKeyFile, "the cluster's secrets key (`rafter keygen FILE`; the same file on every node, mode 0600): seals certificate keys, ACME account keys and TLS session-ticket keys")
	fs.DurationVar(&c.TicketKeyRotation, "tls-ticket-rotation", c.TicketKeyRotation, "how often the leader replaces the TLS session-ticket key shared by all nodes (1m..168h)")
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
