package cluster

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestConfigValidate(t *testing.T) {
	base := func() Config {
		c := DefaultConfig()
		c.NodeID = "n1"
		c.DataDir = "/var/lib/rafter"
		c.RaftBind = "127.0.0.1:7000"
		c.BootstrapExpect = 3
		c.Join = []string{"127.0.0.1:8401", "127.0.0.1:8402"}
		return c
	}
	ca := newTestCA(t, "ca")
	tlsWith := func(c *Config, cert tls.Certificate) {
		c.ServerTLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: ca.pool}
		c.ClientTLS = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.pool}
	}
	n1Cert := ca.issue(t, "n1")
	tlsPair := func(c *Config) { tlsWith(c, n1Cert) }
	tests := []struct {
		name   string
		change func(*Config)
		want   string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"single node", func(c *Config) { c.BootstrapExpect = 1; c.Join = nil }, ""},
		{"join only", func(c *Config) { c.BootstrapExpect = 0 }, ""},
		{"zero timing filled in", func(c *Config) { c.HeartbeatTimeout, c.ElectionTimeout = 0, 0 }, ""},
		{"even expect", func(c *Config) { c.BootstrapExpect = 4 }, "cluster.bootstrap_expect: 4 is even"},
		{"two nodes", func(c *Config) { c.BootstrapExpect = 2 }, "tolerates no more failures than one of 1"},
		{"nine nodes", func(c *Config) { c.BootstrapExpect = 9 }, "want 1, 3, 5 or 7"},
		{"expect without join", func(c *Config) { c.Join = nil }, "cluster.join"},
		{"missing id", func(c *Config) { c.NodeID = "" }, "cluster.node_id: required"},
		{"missing data dir", func(c *Config) { c.DataDir = "" }, "cluster.data_dir"},
		{"bad join address", func(c *Config) { c.Join = []string{"nohost"} }, "cluster.join[0]"},
		{"plaintext on LAN", func(c *Config) { c.RaftBind = "10.0.0.5:7000" }, "run `rafter tls init`"},
		{"plaintext advertise on LAN", func(c *Config) { c.RaftAdvertise = "10.0.0.5:7000" }, "--insecure-transport"},
		{"plaintext on LAN allowed", func(c *Config) { c.RaftBind = "10.0.0.5:7000"; c.InsecureTransport = true }, ""},
		{"TLS on LAN", func(c *Config) { c.RaftBind = "10.0.0.5:7000"; tlsPair(c) }, ""},
		{"wildcard bind needs advertise", func(c *Config) { c.RaftBind = "0.0.0.0:7000"; tlsPair(c) }, "cluster.raft_advertise: required"},
		{"wildcard bind with advertise", func(c *Config) { c.RaftBind = "0.0.0.0:7000"; c.RaftAdvertise = "10.0.0.5:7000"; tlsPair(c) }, ""},
		{"half TLS", func(c *Config) { tlsPair(c); c.ClientTLS = nil }, "set together"},
		{"TLS without CA", func(c *Config) { tlsPair(c); c.ServerTLS.ClientCAs = nil }, "cluster.tls.server: client CA"},
		{"TLS with another node's certificate", func(c *Config) { tlsWith(c, ca.issue(t, "n2")) }, `the certificate is node "n2"'s but this node is "n1"`},
		{"TLS with a client-only certificate", func(c *Config) { tlsWith(c, ca.issueClientOnly(t, "n1")) }, "not a node certificate"},
		{"bad scheme", func(c *Config) { c.AdminScheme = "ftp" }, "cluster.admin_scheme"},
		{"bad raft log level", func(c *Config) { c.RaftLogLevel = "loud" }, "cluster.raft_log_level"},
		{"lease above heartbeat", func(c *Config) { c.LeaderLeaseTimeout = time.Second }, "cluster.timing"},
		{"inmem transport needs no dir", func(c *Config) {
			_, tr := raft.NewInmemTransport("")
			c.Transport, c.DataDir, c.RaftBind = tr, "", ""
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate accepted, want %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Validate: %v, want it to mention %q", err, tt.want)
			}
		})
	}
}
