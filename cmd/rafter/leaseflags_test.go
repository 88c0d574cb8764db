package main

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/rafterlb/rafter/agent"
)

func TestLeaseFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string // "" = valid
	}{
		{nil, ""},
		{[]string{"--lease-check-interval", "250ms", "--lease-drain-period", "0s"}, ""},
		{[]string{"--lease-check-interval", "0s"}, "--lease-check-interval"},
		{[]string{"--lease-drain-period", "-1s"}, "--lease-drain-period"},
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
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want+":")):
				t.Fatalf("Validate = %v, want an error naming %s", err, tt.want)
			}
		})
	}
	if c := agent.DefaultConfig(); c.LeaseCheckInterval != time.Second || c.LeaseDrainPeriod != 5*time.Second {
		t.Fatalf("defaults %v %v", c.LeaseCheckInterval, c.LeaseDrainPeriod)
	}
}
