package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/fakeec2"
)

// fakeAWSEnv points the AWS SDK at nothing but the fake: static test
// credentials, no shared files, no instance metadata.
func fakeAWSEnv(t *testing.T) {
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_ACCESS_KEY_ID":           "AKIDTEST",
		"AWS_SECRET_ACCESS_KEY":       "secret",
		"AWS_SESSION_TOKEN":           "",
		"AWS_REGION":                  "us-east-1",
		"AWS_DEFAULT_REGION":          "",
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_ENDPOINT_URL":            "",
		"AWS_ENDPOINT_URL_EC2":        "",
		"AWS_MAX_ATTEMPTS":            "",
		"AWS_RETRY_MODE":              "",
	} {
		t.Setenv(k, v)
	}
}

// soloAWSAgent runs one agent (bootstrap-expect 1) on loopback with its EC2
// API at fake, and returns a client once it leads.
func soloAWSAgent(t *testing.T, fake *fakeec2.Server, mod func(*Config)) (*client.Client, *Agent) {
	t.Helper()
	c := DefaultConfig()
	c.NodeID, c.Zone, c.DataDir = "n1", "us-east-1a", t.TempDir()
	c.AdminPort, c.RaftPort = 0, 0
	c.BootstrapExpect = 1
	c.AccessLog = "off"
	c.AWSEndpoint = fake.URL()
	mod(&c)
	ctx, cancel := context.WithCancel(context.Background())
	a, done := startAgent(t, ctx, c)
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("agent did not stop within 60s")
		}
	})
	cl := client.New(a.AdminAddr(), "", nil)
	eventually(t, "single node leader", func() error {
		st, _, err := cl.Status(ctx)
		if err != nil {
			return err
		}
		if st.Leader != "n1" {
			return fmt.Errorf("leader %q", st.Leader)
		}
		return nil
	})
	return cl, a
}

// TestAgentMovesElasticIP: with --vip, an aws-eip VIP homed on the node is
// associated with the node's --aws-eni and shown as held by it.
func TestAgentMovesElasticIP(t *testing.T) {
	fakeAWSEnv(t)
	fake := fakeec2.New(t)
	fake.AddInstance(fakeec2.Instance{ID: "i-0a1", PrivateIP: "10.0.0.11", ENI: "eni-0a1", Zone: "us-east-1a", State: fakeec2.StateRunning})
	fake.AddAddress("eipalloc-0001", "203.0.113.10")
	cl, a := soloAWSAgent(t, fake, func(c *Config) {
		c.VIP = true
		c.AWSInstanceID, c.AWSENI, c.AWSPrivateIP = "i-0a1", "eni-0a1", "10.0.0.11"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	eventually(t, "the node record carrying the AWS identity", func() error {
		n := a.Node().Config().Nodes["n1"]
		if n == nil {
			return fmt.Errorf("no node record")
		}
		if n.ENI != "eni-0a1" || n.PrivateIP != "10.0.0.11" || n.InstanceID != "i-0a1" {
			return fmt.Errorf("node record %+v", n)
		}
		return nil
	})
	if _, err := cl.Put(ctx, fsm.KindVIP, "public", fsm.VIPSpec{Provider: fsm.ProviderAWSEIP, AllocationID: "eipalloc-0001", HomeNode: "n1"}, nil); err != nil {
		t.Fatalf("put vip: %v", err)
	}
	eventually(t, "the address associated with the node's ENI", func() error {
		a, ok := fake.Address("eipalloc-0001")
		if !ok || a.NetworkInterfaceID != "eni-0a1" || a.PrivateIP != "10.0.0.11" {
			return fmt.Errorf("address %+v", a)
		}
		return nil
	})
	eventually(t, "GET /v1/vips showing holder n1", func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.AdminAddr()+"/v1/vips", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var list struct {
			Items []struct {
				Name       string `json:"name"`
				Assignment *struct {
					Holder string `json:"holder"`
				} `json:"assignment"`
			} `json:"items"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
			return err
		}
		for _, it := range list.Items {
			if it.Name == "public" && it.Assignment != nil && it.Assignment.Holder == "n1" {
				return nil
			}
		}
		return fmt.Errorf("vips %+v", list.Items)
	})
}

// TestAgentDiscoversBackends: with --discovery, a pool with discovery.ec2
// gets a backend for every running instance carrying its tags.
func TestAgentDiscoversBackends(t *testing.T) {
	fakeAWSEnv(t)
	fake := fakeec2.New(t)
	web := map[string]string{"svc": "web"}
	fake.AddInstance(fakeec2.Instance{ID: "i-0b1", PrivateIP: "10.0.1.1", Zone: "us-east-1a", State: fakeec2.StateRunning, Tags: web})
	fake.AddInstance(fakeec2.Instance{ID: "i-0b2", PrivateIP: "10.0.2.1", Zone: "us-east-1b", State: fakeec2.StateRunning, Tags: web})
	fake.AddInstance(fakeec2.Instance{ID: "i-0b3", PrivateIP: "10.0.3.1", Zone: "us-east-1c", State: fakeec2.StateRunning, Tags: map[string]string{"svc": "db"}})
	cl, _ := soloAWSAgent(t, fake, func(c *Config) { c.Discovery = true })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spec := fsm.PoolSpec{Discovery: &fsm.Discovery{EC2: &fsm.EC2Discovery{Tags: web, Port: 8080}}}
	if _, err := cl.Put(ctx, fsm.KindPool, "app", spec, nil); err != nil {
		t.Fatalf("put pool: %v", err)
	}
	want := []string{"10.0.1.1:8080/us-east-1a/ec2", "10.0.2.1:8080/us-east-1b/ec2"}
	eventually(t, "discovered backends", func() error {
		o, _, err := cl.Get(ctx, fsm.KindPool, "app")
		if err != nil {
			return err
		}
		var p fsm.PoolSpec
		if err := json.Unmarshal(o.Spec, &p); err != nil {
			return err
		}
		var got []string
		for _, b := range p.Backends {
			got = append(got, strings.Join([]string{b.Addr, b.Zone, b.Source}, "/"))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("backends %v, want %v", got, want)
		}
		return nil
	})
}

// TestAgentRefusesMissingEC2Permissions: the agent names the EC2 actions
// its credentials lack and does not start.
func TestAgentRefusesMissingEC2Permissions(t *testing.T) {
	fakeAWSEnv(t)
	fake := fakeec2.New(t)
	fake.Deny(fakeec2.ActionAssociateAddress)
	c := DefaultConfig()
	c.NodeID, c.Zone, c.DataDir = "n1", "us-east-1a", t.TempDir()
	c.AdminPort, c.RaftPort = 0, 0
	c.BootstrapExpect = 1
	c.AccessLog = "off"
	c.AWSEndpoint = fake.URL()
	c.VIP, c.Discovery = true, true
	c.AWSENI, c.AWSPrivateIP = "eni-0a1", "10.0.0.11"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	err = a.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "AssociateAddress") || strings.Contains(err.Error(), "DescribeInstances") {
		t.Fatalf("Run = %v, want a refusal naming AssociateAddress only", err)
	}
}
