package aws_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafterlb/rafter/cluster/awsec2"
	"github.com/rafterlb/rafter/cluster/vip"
	vipaws "github.com/rafterlb/rafter/cluster/vip/aws"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/fakeec2"
)

// newEC2 starts a fake EC2 with one instance per node id ("i-<id>",
// "eni-i-<id>", zones us-east-1a, b, c in turn) and returns a client of it
// that cannot reach AWS or the instance metadata service.
func newEC2(t *testing.T, nodeIDs []string, tune func(*awsec2.Options)) (*awsec2.Client, *fakeec2.Server, vipaws.StaticTargets) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	for _, k := range []string{"AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_REGION", "AWS_DEFAULT_REGION",
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS"} {
		t.Setenv(k, "")
	}
	fake := fakeec2.New(t)
	targets := vipaws.StaticTargets{}
	for i, id := range nodeIDs {
		ip := fmt.Sprintf("10.0.%d.10", i+1)
		fake.AddInstance(fakeec2.Instance{ID: "i-" + id, PrivateIP: ip, Zone: "us-east-1" + string(rune('a'+i%3))})
		targets[id] = vipaws.Target{ENI: "eni-i-" + id, PrivateIP: ip, InstanceID: "i-" + id}
	}
	o := awsec2.Options{
		Region:      "us-east-1",
		Endpoint:    fake.URL(),
		Credentials: &awsec2.StaticCredentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"},
		BaseDelay:   time.Millisecond, ThrottleDelay: 2 * time.Millisecond, MaxBackoff: 10 * time.Millisecond,
	}
	if tune != nil {
		tune(&o)
	}
	c, err := awsec2.New(context.Background(), o)
	if err != nil {
		t.Fatalf("awsec2.New: %v", err)
	}
	return c, fake, targets
}

// fence is a Fencer whose answer the test sets; it counts its checks.
type fence struct {
	mu     sync.Mutex
	err    error
	checks int
}

func (f *fence) Check(context.Context, string, uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks++
	return f.err
}

func eipVIP(name string) fsm.VIP {
	return fsm.VIP{Name: name, Spec: fsm.VIPSpec{Provider: fsm.ProviderAWSEIP, AllocationID: "eipalloc-" + name, HomeNode: "node1"}}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestMove(t *testing.T) {
	nodes := []string{"node1", "node2"}
	tests := []struct {
		name       string
		sdk        func(*awsec2.Options)
		tune       func(*vipaws.Config)
		inject     func(*fakeec2.Server)
		target     string
		fenceErr   error
		wantErr    error
		wantMoved  bool
		wantAssoc  int // AssociateAddress requests; -1: at least one
		wantChecks int // fence checks; -1: any
	}{
		{name: "associates and verifies", target: "node2", wantMoved: true, wantAssoc: 1, wantChecks: 1},
		{
			name: "describe lag waited out", target: "node2", wantMoved: true, wantAssoc: 1, wantChecks: 1,
			inject: func(f *fakeec2.Server) { f.SetDescribeLag(300 * time.Millisecond) },
		},
		{
			name: "describe errors during verification ridden out", target: "node2", wantMoved: true, wantAssoc: 1, wantChecks: 1,
			sdk:    func(o *awsec2.Options) { o.MaxAttempts = 1 },
			inject: func(f *fakeec2.Server) { f.FailInternal(fakeec2.ActionDescribeAddresses, 3) },
		},
		{
			name: "throttling beyond the SDK's attempts retried, fenced each time", target: "node2", wantMoved: true, wantAssoc: 5, wantChecks: 3,
			sdk:    func(o *awsec2.Options) { o.MaxAttempts = 2 },
			inject: func(f *fakeec2.Server) { f.Throttle(fakeec2.ActionAssociateAddress, 4) },
		},
		{
			name: "throttling without end gives up", target: "node2", wantAssoc: 6, wantChecks: 3,
			sdk:    func(o *awsec2.Options) { o.MaxAttempts = 2 },
			tune:   func(c *vipaws.Config) { c.Attempts = 3 },
			inject: func(f *fakeec2.Server) { f.Throttle(fakeec2.ActionAssociateAddress, -1) },
		},
		{
			name: "permission denied is not retried", target: "node2", wantErr: awsec2.ErrUnauthorized, wantAssoc: 1, wantChecks: 1,
			inject: func(f *fakeec2.Server) { f.Deny(fakeec2.ActionAssociateAddress) },
		},
		{name: "unknown node", target: "node9", wantErr: vipaws.ErrNoTarget, wantChecks: 0},
		{name: "fence refuses: EC2 untouched", target: "node2", fenceErr: vip.ErrStaleToken, wantErr: vip.ErrStaleToken, wantChecks: 1},
		{
			name: "not visible before the verify deadline", target: "node2", wantErr: vipaws.ErrNotVerified, wantAssoc: 1, wantChecks: 1,
			tune:   func(c *vipaws.Config) { c.VerifyTimeout = 100 * time.Millisecond },
			inject: func(f *fakeec2.Server) { f.SetDescribeLag(time.Hour) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, fake, targets := newEC2(t, nodes, tt.sdk)
			v := eipVIP("web")
			fake.AddAddress(v.Spec.AllocationID, "203.0.113.10")
			fake.MoveAddress(v.Spec.AllocationID, "i-node1")
			if tt.inject != nil {
				tt.inject(fake)
			}
			f := &fence{err: tt.fenceErr}
			cfg := vipaws.Config{Client: client, Targets: targets, Fence: f, RetryBase: time.Millisecond, RetryMax: 5 * time.Millisecond, PollInterval: 5 * time.Millisecond, PollMax: 20 * time.Millisecond}
			if tt.tune != nil {
				tt.tune(&cfg)
			}
			m, err := vipaws.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = m.Move(ctxT(t), v, fsm.Node{ID: tt.target}, 42)
			switch {
			case tt.wantMoved && err != nil:
				t.Fatalf("Move: %v", err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("Move: %v, want %v", err, tt.wantErr)
			case !tt.wantMoved && err == nil:
				t.Fatal("Move succeeded, want an error")
			}
			if got := fake.Calls(fakeec2.ActionAssociateAddress); got != tt.wantAssoc {
				t.Errorf("AssociateAddress requests: %d, want %d", got, tt.wantAssoc)
			}
			if f.checks != tt.wantChecks {
				t.Errorf("fence checks: %d, want %d", f.checks, tt.wantChecks)
			}
			a, _ := fake.Address(v.Spec.AllocationID)
			if moved := a.NetworkInterfaceID == "eni-i-node2"; moved != (tt.wantMoved || errors.Is(tt.wantErr, vipaws.ErrNotVerified)) {
				t.Errorf("address on %q", a.NetworkInterfaceID)
			}
			if tt.wantMoved {
				// Move returned only once DescribeAddresses showed the move.
				fake.ClearFaults()
				d, err := client.DescribeAddress(ctxT(t), v.Spec.AllocationID)
				if err != nil || d.NetworkInterfaceID != "eni-i-node2" || d.PrivateIP != targets["node2"].PrivateIP {
					t.Errorf("describe after Move: %+v, %v", d, err)
				}
			}
		})
	}
}

func TestInPlace(t *testing.T) {
	client, fake, targets := newEC2(t, []string{"node1", "node2"}, nil)
	v := eipVIP("web")
	fake.AddAddress(v.Spec.AllocationID, "203.0.113.10")
	m, err := vipaws.New(vipaws.Config{Client: client, Targets: targets, Fence: &fence{}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		on     string // instance the address is moved to by hand; "" unassociated
		holder string
		want   bool
		err    error
	}{
		{"unassociated", "", "node1", false, nil},
		{"on the holder", "i-node1", "node1", true, nil},
		{"moved by hand", "i-node2", "node1", false, nil},
		{"holder without a target", "i-node2", "node9", false, vipaws.ErrNoTarget},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake.MoveAddress(v.Spec.AllocationID, tt.on)
			got, err := m.InPlace(ctxT(t), v, fsm.Node{ID: tt.holder})
			if got != tt.want || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("InPlace = %v, %v; want %v, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	client, _, targets := newEC2(t, []string{"node1"}, nil)
	tests := []struct {
		name  string
		cfg   vipaws.Config
		field string
	}{
		{"no client", vipaws.Config{Targets: targets, Fence: &fence{}}, "aws_eip.client"},
		{"no targets", vipaws.Config{Client: client, Fence: &fence{}}, "aws_eip.targets"},
		{"no fence", vipaws.Config{Client: client, Targets: targets}, "aws_eip.fence"},
		{"attempts", vipaws.Config{Client: client, Targets: targets, Fence: &fence{}, Attempts: 99}, "aws_eip.attempts"},
		{"ok", vipaws.Config{Client: client, Targets: targets, Fence: &fence{}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := vipaws.New(tt.cfg)
			if tt.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("New: %v, want an error naming %s", err, tt.field)
			}
		})
	}
}

func TestNodeTargets(t *testing.T) {
	tests := []struct {
		name   string
		node   fsm.Node
		want   vipaws.Target
		wantOK bool
	}{
		{"identity recorded", fsm.Node{ID: "n1", ENI: "eni-1", PrivateIP: "10.0.0.1", InstanceID: "i-1"}, vipaws.Target{ENI: "eni-1", PrivateIP: "10.0.0.1", InstanceID: "i-1"}, true},
		{"primary address", fsm.Node{ID: "n1", ENI: "eni-1"}, vipaws.Target{ENI: "eni-1"}, true},
		{"no eni", fsm.Node{ID: "n1", PrivateIP: "10.0.0.1"}, vipaws.Target{PrivateIP: "10.0.0.1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := vipaws.NodeTargets{}.Target(tt.node)
			if ok != tt.wantOK || (ok && got != tt.want) {
				t.Fatalf("Target = %+v, %v; want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
