package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/fakeec2"
)

// TestAgentMovesPrivateAddresses: with --vip and the private providers,
// an aws-private-ip VIP lands on the node's interface and an aws-route
// VIP's route in every table points at it.
func TestAgentMovesPrivateAddresses(t *testing.T) {
	fakeAWSEnv(t)
	fake := fakeec2.New(t)
	fake.AddInstance(fakeec2.Instance{ID: "i-0a1", PrivateIP: "10.0.0.11", ENI: "eni-0a1", Zone: "us-east-1a"})
	fake.AddRouteTable("rtb-0a")
	fake.AddRouteTable("rtb-0b")
	cl, _ := soloAWSAgent(t, fake, func(c *Config) {
		c.VIP = true
		c.VIPProviders = []string{fsm.ProviderAWSPrivateIP, fsm.ProviderAWSRoute}
		c.AWSInstanceID, c.AWSENI, c.AWSPrivateIP = "i-0a1", "eni-0a1", "10.0.0.11"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := cl.Put(ctx, fsm.KindVIP, "internal", fsm.VIPSpec{Provider: fsm.ProviderAWSPrivateIP, PrivateIP: "10.0.0.100", HomeNode: "n1"}, nil); err != nil {
		t.Fatalf("put aws-private-ip vip: %v", err)
	}
	if _, err := cl.Put(ctx, fsm.KindVIP, "overlay", fsm.VIPSpec{Provider: fsm.ProviderAWSRoute,
		RouteTableIDs: []string{"rtb-0a", "rtb-0b"}, CIDR: "10.200.0.10/32", HomeNode: "n1"}, nil); err != nil {
		t.Fatalf("put aws-route vip: %v", err)
	}
	eventually(t, "the private address on the node's interface", func() error {
		if ips := fake.SecondaryIPs("eni-0a1"); !slices.Contains(ips, "10.0.0.100") {
			return fmt.Errorf("eni-0a1 has %v", ips)
		}
		return nil
	})
	eventually(t, "both routes at the node's interface", func() error {
		for _, rt := range []string{"rtb-0a", "rtb-0b"} {
			if eni, ok := fake.Route(rt, "10.200.0.10/32"); !ok || eni != "eni-0a1" {
				return fmt.Errorf("%s: %q %v", rt, eni, ok)
			}
		}
		return nil
	})
}

// TestAgentRefusesMissingRoutePermission: the permissions of every
// provider --vip-providers names are checked at start.
func TestAgentRefusesMissingRoutePermission(t *testing.T) {
	fakeAWSEnv(t)
	fake := fakeec2.New(t)
	fake.Deny(fakeec2.ActionReplaceRoute, fakeec2.ActionAssignPrivateIPAddresses)
	c := DefaultConfig()
	c.NodeID, c.Zone, c.DataDir = "n1", "us-east-1a", t.TempDir()
	c.AdminPort, c.RaftPort = 0, 0
	c.BootstrapExpect = 1
	c.AccessLog = "off"
	c.AWSEndpoint = fake.URL()
	c.VIP = true
	c.VIPProviders = []string{fsm.ProviderAWSEIP, fsm.ProviderAWSPrivateIP, fsm.ProviderAWSRoute}
	c.AWSENI, c.AWSPrivateIP = "eni-0a1", "10.0.0.11"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	err = a.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "ReplaceRoute") || !strings.Contains(err.Error(), "AssignPrivateIpAddresses") ||
		strings.Contains(err.Error(), "CreateRoute") {
		t.Fatalf("Run = %v, want a refusal naming ReplaceRoute and AssignPrivateIpAddresses only", err)
	}
}
