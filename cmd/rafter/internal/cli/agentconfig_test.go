package cli

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// load parses args and the config file the way `rafter agent` does.
func load(t *testing.T, file string, env map[string]string, args ...string) (AgentConfig, error) {
	t.Helper()
	cfg := DefaultAgentConfig()
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	BindAgentFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	path := ""
	if file != "" {
		path = filepath.Join(t.TempDir(), "agent.yaml")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	err := LoadAgentConfig(fs, path, func(k string) string { return env[k] })
	return cfg, err
}

func TestAgentConfigPrecedence(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		env     map[string]string
		args    []string
		check   func(c AgentConfig) any
		want    any
		wantErr string
	}{
		{name: "default", check: func(c AgentConfig) any { return c.AdminPort }, want: 7700},
		{name: "file sets snake_case key", file: "admin_port: 8800\n", check: func(c AgentConfig) any { return c.AdminPort }, want: 8800},
		{name: "file sets dashed key", file: "admin-port: 8801\n", check: func(c AgentConfig) any { return c.AdminPort }, want: 8801},
		{name: "flag beats file", file: "admin_port: 8800\n", args: []string{"--admin-port", "9900"}, check: func(c AgentConfig) any { return c.AdminPort }, want: 9900},
		{name: "flag equal to default still beats file", file: "admin_port: 8800\n", args: []string{"--admin-port=7700"}, check: func(c AgentConfig) any { return c.AdminPort }, want: 7700},
		{name: "file list", file: "join: [127.0.0.1:7700, 127.0.0.2:7700]\n", check: func(c AgentConfig) any { return c.Join }, want: []string{"127.0.0.1:7700", "127.0.0.2:7700"}},
		{name: "file comma string", file: "join: 127.0.0.1:7700,127.0.0.2:7700\n", check: func(c AgentConfig) any { return c.Join }, want: []string{"127.0.0.1:7700", "127.0.0.2:7700"}},
		{name: "flag list beats file list", file: "join: [a:1, b:2]\n", args: []string{"--join", "c:3"}, check: func(c AgentConfig) any { return c.Join }, want: []string{"c:3"}},
		{name: "file bool", file: "insecure_transport: true\n", check: func(c AgentConfig) any { return c.InsecureTransport }, want: true},
		{name: "env token", env: map[string]string{"RAFTER_TOKEN": "envtok"}, check: func(c AgentConfig) any { return c.Token }, want: "envtok"},
		{name: "env beats file", file: "token: filetok\n", env: map[string]string{"RAFTER_TOKEN": "envtok"}, check: func(c AgentConfig) any { return c.Token }, want: "envtok"},
		{name: "flag beats env", env: map[string]string{"RAFTER_TOKEN": "envtok"}, args: []string{"--token", "flagtok"}, check: func(c AgentConfig) any { return c.Token }, want: "flagtok"},
		{name: "file token without env", file: "token: filetok\n", check: func(c AgentConfig) any { return c.Token }, want: "filetok"},
		{name: "unknown key", file: "admin_prot: 1\n", wantErr: `unknown key "admin_prot"`},
		{name: "config key refused in file", file: "config: other.yaml\n", wantErr: `unknown key "config"`},
		{name: "same option twice", file: "admin_port: 1\nadmin-port: 2\n", wantErr: "set the same option"},
		{name: "bad value names the key", file: "raft_port: many\n", wantErr: "raft-port"},
		{name: "file aws keys", file: "vip: true\naws_eni: eni-1\nvip_hold_down: 1m\naws-endpoint: http://127.0.0.1:1\n", check: func(c AgentConfig) any {
			return []any{c.VIP, c.AWSENI, c.VIPHoldDown.String(), c.AWSEndpoint}
		}, want: []any{true, "eni-1", "1m0s", "http://127.0.0.1:1"}},
		{name: "nested map refused", file: "zone: {a: b}\n", wantErr: "zone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(t, tt.file, tt.env, tt.args...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.check(c); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func validConfig(t *testing.T) AgentConfig {
	c := DefaultAgentConfig()
	c.NodeID, c.Zone, c.DataDir = "n1", "a", t.TempDir()
	c.BootstrapExpect = 1
	return c
}

func TestAgentConfigValidate(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, []byte("x"), 0o600)
	tests := []struct {
		name     string
		mod      func(c *AgentConfig)
		wantFlag string // "" = valid
	}{
		{"valid", func(c *AgentConfig) {}, ""},
		{"port 0 picks a free port", func(c *AgentConfig) { c.AdminPort, c.RaftPort = 0, 0 }, ""},
		{"node id required", func(c *AgentConfig) { c.NodeID = "" }, "--node-id"},
		{"node id charset", func(c *AgentConfig) { c.NodeID = "n 1" }, "--node-id"},
		{"zone required", func(c *AgentConfig) { c.Zone = "" }, "--zone"},
		{"data dir required", func(c *AgentConfig) { c.DataDir = "" }, "--data-dir"},
		{"bind not an IP", func(c *AgentConfig) { c.Bind = "localhost" }, "--bind"},
		{"advertise not an IP", func(c *AgentConfig) { c.Advertise = "x" }, "--advertise"},
		{"advertise needed with 0.0.0.0", func(c *AgentConfig) { c.Bind = "0.0.0.0"; c.InsecureTransport = true }, "--advertise"},
		{"admin port range", func(c *AgentConfig) { c.AdminPort = 70000 }, "--admin-port"},
		{"raft port range", func(c *AgentConfig) { c.RaftPort = -1 }, "--raft-port"},
		{"same ports", func(c *AgentConfig) { c.RaftPort = c.AdminPort }, "--raft-port"},
		{"even bootstrap", func(c *AgentConfig) { c.BootstrapExpect = 2 }, "--bootstrap-expect"},
		{"join without bootstrap", func(c *AgentConfig) { c.BootstrapExpect = 0 }, "--join"},
		{"join not host:port", func(c *AgentConfig) { c.Join = []string{"127.0.0.1"} }, "--join"},
		{"tokens equal", func(c *AgentConfig) { c.Token, c.ReadOnlyToken = "t", "t" }, "--read-only-token"},
		{"tls incomplete", func(c *AgentConfig) { c.TLSCA = ca }, "--tls-cert"},
		{"tls file missing", func(c *AgentConfig) { c.TLSCA, c.TLSCert, c.TLSKey = ca, ca, filepath.Join(dir, "nope") }, "--tls-key"},
		{"plaintext off loopback", func(c *AgentConfig) { c.Bind = "10.0.0.1" }, "--tls-ca"},
		{"plaintext off loopback allowed with a token", func(c *AgentConfig) { c.Bind = "10.0.0.1"; c.InsecureTransport, c.Token = true, "t" }, ""},
		{"read-only token is a token", func(c *AgentConfig) { c.Bind = "10.0.0.1"; c.InsecureTransport, c.ReadOnlyToken = true, "t" }, ""},
		{"open admin API off loopback", func(c *AgentConfig) { c.Bind = "10.0.0.1"; c.InsecureTransport = true }, "--token"},
		{"tls off loopback needs no token", func(c *AgentConfig) { c.Bind = "10.0.0.1"; c.TLSCA, c.TLSCert, c.TLSKey = ca, ca, ca }, ""},
		{"access log empty", func(c *AgentConfig) { c.AccessLog = "" }, "--access-log"},
		{"log level", func(c *AgentConfig) { c.LogLevel = "loud" }, "--log-level"},
		{"vip with identity", func(c *AgentConfig) { c.VIP, c.AWSENI, c.AWSPrivateIP = true, "eni-0abc", "10.0.0.5" }, ""},
		{"vip needs eni", func(c *AgentConfig) { c.VIP = true }, "--aws-eni"},
		{"eni shape", func(c *AgentConfig) { c.AWSENI, c.AWSPrivateIP = "eth0", "10.0.0.5" }, "--aws-eni"},
		{"private ip parses", func(c *AgentConfig) { c.AWSENI, c.AWSPrivateIP = "eni-1", "ten" }, "--aws-private-ip"},
		{"private ip with eni", func(c *AgentConfig) { c.AWSENI = "eni-1" }, "--aws-private-ip"},
		{"instance id shape", func(c *AgentConfig) { c.AWSInstanceID = "web-1" }, "--aws-instance-id"},
		{"endpoint url", func(c *AgentConfig) { c.AWSEndpoint = "localhost:4566" }, "--aws-endpoint"},
		{"discovery alone", func(c *AgentConfig) { c.Discovery, c.AWSRegion = true, "us-east-1" }, ""},
		{"hold down negative", func(c *AgentConfig) { c.VIPHoldDown = -1 }, "--vip-hold-down"},
		{"detect after zero", func(c *AgentConfig) { c.VIPDetectAfter = 0 }, "--vip-detect-after"},
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
	c := DefaultAgentConfig()
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
	c := DefaultAgentConfig()
	c.Bind = "127.0.0.2"
	if c.AdminAddr() != "127.0.0.2:7700" || c.RaftAddr() != "127.0.0.2:7701" {
		t.Fatalf("addrs %s %s", c.AdminAddr(), c.RaftAddr())
	}
	c.Advertise = "127.0.0.3"
	if c.AdminAddr() != "127.0.0.3:7700" {
		t.Fatalf("advertise not used: %s", c.AdminAddr())
	}
}
