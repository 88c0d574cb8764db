package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func validConfig(t *testing.T) Config {
	c := DefaultConfig()
	c.NodeID, c.Zone, c.DataDir = "n1", "a", t.TempDir()
	c.BootstrapExpect = 1
	return c
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, []byte("x"), 0o600)
	tests := []struct {
		name     string
		mod      func(c *Config)
		wantFlag string // "" = valid
	}{
		{"valid", func(c *Config) {}, ""},
		{"port 0 picks a free port", func(c *Config) { c.AdminPort, c.RaftPort = 0, 0 }, ""},
		{"node id required", func(c *Config) { c.NodeID = "" }, "--node-id"},
		{"node id charset", func(c *Config) { c.NodeID = "n 1" }, "--node-id"},
		{"zone required", func(c *Config) { c.Zone = "" }, "--zone"},
		{"data dir required", func(c *Config) { c.DataDir = "" }, "--data-dir"},
		{"bind not an IP", func(c *Config) { c.Bind = "localhost" }, "--bind"},
		{"advertise not an IP", func(c *Config) { c.Advertise = "x" }, "--advertise"},
		{"advertise needed with 0.0.0.0", func(c *Config) { c.Bind = "0.0.0.0"; c.InsecureTransport = true }, "--advertise"},
		{"admin port range", func(c *Config) { c.AdminPort = 70000 }, "--admin-port"},
		{"raft port range", func(c *Config) { c.RaftPort = -1 }, "--raft-port"},
		{"same ports", func(c *Config) { c.RaftPort = c.AdminPort }, "--raft-port"},
		{"even bootstrap", func(c *Config) { c.BootstrapExpect = 2 }, "--bootstrap-expect"},
		{"join without bootstrap", func(c *Config) { c.BootstrapExpect = 0 }, "--join"},
		{"proxy joins", func(c *Config) { c.Role, c.BootstrapExpect, c.Join = "proxy", 0, []string{"127.0.0.2:7700"} }, ""},
		{"proxy never bootstraps", func(c *Config) { c.Role = "proxy" }, "--bootstrap-expect"},
		{"proxy needs join", func(c *Config) { c.Role, c.BootstrapExpect, c.Join = "proxy", 0, nil }, "--join"},
		{"role name", func(c *Config) { c.Role = "observer" }, "--role"},
		{"join not host:port", func(c *Config) { c.Join = []string{"127.0.0.1"} }, "--join"},
		{"tokens equal", func(c *Config) { c.Token, c.ReadOnlyToken = "t", "t" }, "--read-only-token"},
		{"tls incomplete", func(c *Config) { c.TLSCA = ca }, "--tls-cert"},
		{"tls file missing", func(c *Config) { c.TLSCA, c.TLSCert, c.TLSKey = ca, ca, filepath.Join(dir, "nope") }, "--tls-key"},
		{"plaintext off loopback", func(c *Config) { c.Bind = "10.0.0.1" }, "--tls-ca"},
		{"plaintext off loopback allowed with a token", func(c *Config) { c.Bind = "10.0.0.1"; c.InsecureTransport, c.Token = true, "t" }, ""},
		{"read-only token is a token", func(c *Config) { c.Bind = "10.0.0.1"; c.InsecureTransport, c.ReadOnlyToken = true, "t" }, ""},
		{"open admin API off loopback", func(c *Config) { c.Bind = "10.0.0.1"; c.InsecureTransport = true }, "--token"},
		{"tls off loopback needs no token", func(c *Config) { c.Bind = "10.0.0.1"; c.TLSCA, c.TLSCert, c.TLSKey = ca, ca, ca }, ""},
		{"access log empty", func(c *Config) { c.AccessLog = "" }, "--access-log"},
		{"otlp endpoint without scheme", func(c *Config) { c.OTLPEndpoint = "collector:4318" }, "--otlp-endpoint"},
		{"otlp endpoint not http", func(c *Config) { c.OTLPEndpoint = "grpc://collector:4317" }, "--otlp-endpoint"},
		{"otlp endpoint too long", func(c *Config) { c.OTLPEndpoint = "http://c/" + strings.Repeat("a", maxOTLPEndpointLen) }, "--otlp-endpoint"},
		{"log level", func(c *Config) { c.LogLevel = "loud" }, "--log-level"},
		{"vip with identity", func(c *Config) { c.VIP, c.AWSENI, c.AWSPrivateIP = true, "eni-0abc", "10.0.0.5" }, ""},
		{"vip needs eni", func(c *Config) { c.VIP = true }, "--aws-eni"},
		{"vip private providers", func(c *Config) {
			c.VIP, c.AWSENI, c.AWSPrivateIP, c.VIPProviders = true, "eni-0abc", "10.0.0.5", []string{"aws-private-ip", "aws-route"}
		}, ""},
		{"vip provider unknown", func(c *Config) { c.VIPProviders = []string{"aws-eip", "gcp"} }, "--vip-providers"},
		{"vip provider twice", func(c *Config) { c.VIPProviders = []string{"aws-route", "aws-route"} }, "--vip-providers"},
		{"vip without providers", func(c *Config) {
			c.VIP, c.AWSENI, c.AWSPrivateIP, c.VIPProviders = true, "eni-0abc", "10.0.0.5", nil
		}, "--vip-providers"},
		{"eni shape", func(c *Config) { c.AWSENI, c.AWSPrivateIP = "eth0", "10.0.0.5" }, "--aws-eni"},
		{"private ip parses", func(c *Config) { c.AWSENI, c.AWSPrivateIP = "eni-1", "ten" }, "--aws-private-ip"},
		{"private ip with eni", func(c *Config) { c.AWSENI = "eni-1" }, "--aws-private-ip"},
		{"instance id shape", func(c *Config) { c.AWSInstanceID = "web-1" }, "--aws-instance-id"},
		{"endpoint url", func(c *Config) { c.AWSEndpoint = "localhost:4566" }, "--aws-endpoint"},
		{"discovery alone", func(c *Config) { c.Discovery, c.AWSRegion = true, "us-east-1" }, ""},
		{"hold down negative", func(c *Config) { c.VIPHoldDown = -1 }, "--vip-hold-down"},
		{"detect after zero", func(c *Config) { c.VIPDetectAfter = 0 }, "--vip-detect-after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.mod(&c)
			err := c.Validate()
			if tt.wantFlag == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantFlag+":") {
				t.Fatalf("Validate = %v, want an error naming %s", err, tt.wantFlag)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := DefaultConfig()
	err := c.Validate()
	var list interface{ Unwrap() []error }
	if !errors.As(err, &list) || len(list.Unwrap()) < 3 {
		t.Fatalf("Validate of an empty config = %v, want several problems", err)
	}
	for _, f := range []string{"--node-id", "--zone", "--data-dir"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("%q not named in %v", f, err)
		}
	}
}

func TestAddrs(t *testing.T) {
	c := DefaultConfig()
	c.Bind = "127.0.0.2"
	if c.AdminAddr() != "127.0.0.2:7700" || c.RaftAddr() != "127.0.0.2:7701" {
		t.Fatalf("addrs %s %s", c.AdminAddr(), c.RaftAddr())
	}
	c.Advertise = "127.0.0.3"
	if c.AdminAddr() != "127.0.0.3:7700" {
		t.Fatalf("advertise not used: %s", c.AdminAddr())
	}
}

func TestOnLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:7700": true, "127.0.0.3:7700": true, "[::1]:7700": true,
		"10.0.0.1:7700": false, "[::]:7700": false, "0.0.0.0:7700": false, "bad": false,
	} {
		if got := onLoopback(addr); got != want {
			t.Errorf("onLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
