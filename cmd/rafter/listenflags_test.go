package main

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/rafterlb/rafter/agent"
)

func TestListenSocketsFlag(t *testing.T) {
	tests := []struct {
		args []string
		want int    // the value taken
		err  string // "" = valid
	}{
		{nil, 0, ""},
		{[]string{"--listen-sockets", "4"}, 4, ""},
		{[]string{"--listen-sockets", "-1"}, -1, "--listen-sockets"},
		{[]string{"--listen-sockets", "100000"}, 100000, "--listen-sockets"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			c := agent.DefaultConfig()
			c.NodeID, c.Zone, c.DataDir, c.BootstrapExpect = "n1", "a", t.TempDir(), 1
			fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
			BindAgentFlags(fs, &c)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if c.ListenSockets != tt.want {
				t.Fatalf("ListenSockets = %d, want %d", c.ListenSockets, tt.want)
			}
			err := c.Validate()
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err+":")):
				t.Fatalf("Validate = %v, want an error naming %s", err, tt.err)
			}
		})
	}
}
