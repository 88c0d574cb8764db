package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/rafterlb/rafter/agent"
)

// load parses args and the config file the way `rafter agent` does.
func load(t *testing.T, file string, env map[string]string, args ...string) (agent.Config, error) {
	t.Helper()
	cfg := agent.DefaultConfig()
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
		check   func(c agent.Config) any
		want    any
		wantErr string
	}{
		{name: "default", check: func(c agent.Config) any { return c.AdminPort }, want: 7700},
		{name: "file sets snake_case key", file: "admin_port: 8800\n", check: func(c agent.Config) any { return c.AdminPort }, want: 8800},
		{name: "file sets dashed key", file: "admin-port: 8801\n", check: func(c agent.Config) any { return c.AdminPort }, want: 8801},
		{name: "flag beats file", file: "admin_port: 8800\n", args: []string{"--admin-port", "9900"}, check: func(c agent.Config) any { return c.AdminPort }, want: 9900},
		{name: "flag equal to default still beats file", file: "admin_port: 8800\n", args: []string{"--admin-port=7700"}, check: func(c agent.Config) any { return c.AdminPort }, want: 7700},
		{name: "file list", file: "join: [127.0.0.1:7700, 127.0.0.2:7700]\n", check: func(c agent.Config) any { return c.Join }, want: []string{"127.0.0.1:7700", "127.0.0.2:7700"}},
		{name: "file comma string", file: "join: 127.0.0.1:7700,127.0.0.2:7700\n", check: func(c agent.Config) any { return c.Join }, want: []string{"127.0.0.1:7700", "127.0.0.2:7700"}},
		{name: "flag list beats file list", file: "join: [a:1, b:2]\n", args: []string{"--join", "c:3"}, check: func(c agent.Config) any { return c.Join }, want: []string{"c:3"}},
		{name: "file bool", file: "insecure_transport: true\n", check: func(c agent.Config) any { return c.InsecureTransport }, want: true},
		{name: "env token", env: map[string]string{"RAFTER_TOKEN": "envtok"}, check: func(c agent.Config) any { return c.Token }, want: "envtok"},
		{name: "env beats file", file: "token: filetok\n", env: map[string]string{"RAFTER_TOKEN": "envtok"}, check: func(c agent.Config) any { return c.Token }, want: "envtok"},
		{name: "flag beats env", env: map[string]string{"RAFTER_TOKEN": "envtok"}, args: []string{"--token", "flagtok"}, check: func(c agent.Config) any { return c.Token }, want: "flagtok"},
		{name: "file token without env", file: "token: filetok\n", check: func(c agent.Config) any { return c.Token }, want: "filetok"},
		{name: "default role", check: func(c agent.Config) any { return c.Role }, want: "voter"},
		{name: "file role", file: "role: proxy\n", check: func(c agent.Config) any { return c.Role }, want: "proxy"},
		{name: "flag role beats file", file: "role: proxy\n", args: []string{"--role", "voter"}, check: func(c agent.Config) any { return c.Role }, want: "voter"},
		{name: "default vip providers", check: func(c agent.Config) any { return c.VIPProviders }, want: []string{"aws-eip"}},
		{name: "file vip providers", file: "vip_providers: [aws-private-ip, aws-route]\n", check: func(c agent.Config) any { return c.VIPProviders }, want: []string{"aws-private-ip", "aws-route"}},
		{name: "unknown key", file: "admin_prot: 1\n", wantErr: `unknown key "admin_prot"`},
		{name: "config key refused in file", file: "config: other.yaml\n", wantErr: `unknown key "config"`},
		{name: "same option twice", file: "admin_port: 1\nadmin-port: 2\n", wantErr: "set the same option"},
		{name: "bad value names the key", file: "raft_port: many\n", wantErr: "raft-port"},
		{name: "file aws keys", file: "vip: true\naws_eni: eni-1\nvip_hold_down: 1m\naws-endpoint: http://127.0.0.1:1\n", check: func(c agent.Config) any {
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
