package awsec2_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/cluster/awsec2"
	"github.com/rafterlb/rafter/internal/fakeec2"
)

// newClient points a real SDK client at a fresh fake, with nothing taken
// from the machine's AWS setup and the metadata service disabled.
func newClient(t *testing.T, tune func(*awsec2.Options)) (*awsec2.Client, *fakeec2.Server) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	for _, k := range []string{"AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS"} {
		t.Setenv(k, "")
	}
	fake := fakeec2.New(t)
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
		t.Fatalf("New: %v", err)
	}
	return c, fake
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestAssociateDescribeDisassociate(t *testing.T) {
	c, fake := newClient(t, nil)
	ctx := ctxT(t)
	fake.AddInstance(fakeec2.Instance{ID: "i-a", PrivateIP: "10.0.1.10", SecondaryIPs: []string{"10.0.1.11"}, Zone: "us-east-1a"})
	fake.AddInstance(fakeec2.Instance{ID: "i-b", PrivateIP: "10.0.2.10", Zone: "us-east-1b"})
	fake.AddAddress("eipalloc-1", "203.0.113.1")

	a, err := c.DescribeAddress(ctx, "eipalloc-1")
	if err != nil || a.AssociationID != "" || a.PublicIP != "203.0.113.1" {
		t.Fatalf("DescribeAddress before = %+v, %v", a, err)
	}
	assoc, err := c.AssociateAddress(ctx, "eipalloc-1", "eni-i-a", "10.0.1.11")
	if err != nil || assoc == "" {
		t.Fatalf("AssociateAddress = %q, %v", assoc, err)
	}
	want := awsec2.Address{AllocationID: "eipalloc-1", PublicIP: "203.0.113.1", AssociationID: assoc,
		NetworkInterfaceID: "eni-i-a", PrivateIP: "10.0.1.11", InstanceID: "i-a"}
	if a, err = c.DescribeAddress(ctx, "eipalloc-1"); err != nil || a != want {
		t.Fatalf("DescribeAddress = %+v, %v; want %+v", a, err, want)
	}
	// Reassociation is allowed: the address moves from i-a to i-b.
	assoc2, err := c.AssociateAddress(ctx, "eipalloc-1", "eni-i-b", "")
	if err != nil || assoc2 == assoc {
		t.Fatalf("AssociateAddress again = %q, %v", assoc2, err)
	}
	if a, _ := c.DescribeAddress(ctx, "eipalloc-1"); a.InstanceID != "i-b" || a.PrivateIP != "10.0.2.10" {
		t.Fatalf("after move: %+v", a)
	}
	if err := c.DisassociateAddress(ctx, assoc); !errors.Is(err, awsec2.ErrNotFound) {
		t.Fatalf("Disassociate stale association = %v, want ErrNotFound", err)
	}
	if err := c.DisassociateAddress(ctx, assoc2); err != nil {
		t.Fatalf("Disassociate: %v", err)
	}
	if a, _ := c.DescribeAddress(ctx, "eipalloc-1"); a.AssociationID != "" || a.InstanceID != "" {
		t.Fatalf("after disassociate: %+v", a)
	}
	if _, err := c.DescribeAddress(ctx, "eipalloc-nope"); !errors.Is(err, awsec2.ErrNotFound) {
		t.Fatalf("DescribeAddress unknown = %v, want ErrNotFound", err)
	}
	if _, err := c.AssociateAddress(ctx, "eipalloc-1", "eni-nope", ""); !errors.Is(err, awsec2.ErrNotFound) {
		t.Fatalf("AssociateAddress unknown eni = %v, want ErrNotFound", err)
	}
}

func TestDescribeLagsAssociate(t *testing.T) {
	c, fake := newClient(t, nil)
	ctx := ctxT(t)
	now := time.Unix(1_700_000_000, 0)
	fake.SetClock(func() time.Time { return now })
	fake.SetDescribeLag(5 * time.Second)
	fake.AddInstance(fakeec2.Instance{ID: "i-a", PrivateIP: "10.0.1.10", Zone: "us-east-1a"})
	fake.AddAddress("eipalloc-1", "203.0.113.1")

	if _, err := c.AssociateAddress(ctx, "eipalloc-1", "eni-i-a", ""); err != nil {
		t.Fatal(err)
	}
	if a, _ := c.DescribeAddress(ctx, "eipalloc-1"); a.AssociationID != "" {
		t.Fatalf("describe inside the lag shows the new state already: %+v", a)
	}
	if a, ok := fake.Address("eipalloc-1"); !ok || a.InstanceID != "i-a" {
		t.Fatalf("true state = %+v", a)
	}
	later := now.Add(6 * time.Second)
	fake.SetClock(func() time.Time { return later })
	if a, _ := c.DescribeAddress(ctx, "eipalloc-1"); a.InstanceID != "i-a" {
		t.Fatalf("describe after the lag = %+v", a)
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name     string
		inject   func(*fakeec2.Server)
		attempts int
		wantErr  bool
		calls    int
	}{
		{"throttling ridden out", func(f *fakeec2.Server) { f.Throttle(fakeec2.ActionDescribeInstances, 3) }, 5, false, 3 + 2},
		{"internal errors ridden out", func(f *fakeec2.Server) { f.FailInternal("", 2) }, 5, false, 2 + 2},
		{"throttling beyond max attempts", func(f *fakeec2.Server) { f.Throttle("", -1) }, 3, true, 3},
		{"failed second page fails the listing", func(f *fakeec2.Server) { f.FailPage(2, -1) }, 2, true, 1 + 2},
		{"failed page retried", func(f *fakeec2.Server) { f.FailPage(2, 1) }, 3, false, 1 + 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, fake := newClient(t, func(o *awsec2.Options) { o.MaxAttempts = tc.attempts; o.PageSize = 5 })
			for i := range 8 {
				fake.AddInstance(fakeec2.Instance{ID: "i-" + string(rune('a'+i)), PrivateIP: "10.0.0." + string(rune('1'+i)), Zone: "us-east-1a", Tags: map[string]string{"svc": "web"}})
			}
			tc.inject(fake)
			got, err := c.ListInstances(ctxT(t), map[string]string{"svc": "web"})
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ListInstances succeeded with %d instances, want an error", len(got))
				}
			} else if err != nil || len(got) != 8 {
				t.Fatalf("ListInstances = %d instances, %v; want 8", len(got), err)
			}
			if n := fake.Calls(fakeec2.ActionDescribeInstances); n != tc.calls {
				t.Fatalf("DescribeInstances calls = %d, want %d", n, tc.calls)
			}
		})
	}
}

func TestListInstancesFilters(t *testing.T) {
	c, fake := newClient(t, func(o *awsec2.Options) { o.PageSize = 5 })
	web := map[string]string{"svc": "web", "env": "prod"}
	for i, id := range []string{"i-01", "i-02", "i-03", "i-04", "i-05", "i-06", "i-07"} {
		fake.AddInstance(fakeec2.Instance{ID: id, PrivateIP: "10.0.0." + string(rune('1'+i)), Zone: "us-east-1" + string(rune('a'+i%3)), Tags: web})
	}
	fake.AddInstance(fakeec2.Instance{ID: "i-stopped", PrivateIP: "10.0.9.1", Zone: "us-east-1a", State: fakeec2.StateStopped, Tags: web})
	fake.AddInstance(fakeec2.Instance{ID: "i-staging", PrivateIP: "10.0.9.2", Zone: "us-east-1a", Tags: map[string]string{"svc": "web", "env": "staging"}})
	fake.AddInstance(fakeec2.Instance{ID: "i-untagged", PrivateIP: "10.0.9.3", Zone: "us-east-1a"})

	got, err := c.ListInstances(ctxT(t), map[string]string{"svc": "web", "env": "prod"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, in := range got {
		ids = append(ids, in.ID)
		if in.State != "running" || in.Zone == "" || in.PrivateIP == "" || in.Tags["svc"] != "web" {
			t.Errorf("instance %+v incomplete", in)
		}
	}
	if want := []string{"i-01", "i-02", "i-03", "i-04", "i-05", "i-06", "i-07"}; !slices.Equal(ids, want) {
		t.Fatalf("ids = %v, want %v", ids, want)
	}
	if n := fake.Calls(fakeec2.ActionDescribeInstances); n != 2 {
		t.Fatalf("pages fetched = %d, want 2", n)
	}
}

func TestCheckPermissions(t *testing.T) {
	all := []string{awsec2.ActionAssociateAddress, awsec2.ActionDisassociateAddress, awsec2.ActionDescribeAddresses, awsec2.ActionDescribeInstances,
		awsec2.ActionAssignPrivateIPAddresses, awsec2.ActionDescribeNetworkInterfaces,
		awsec2.ActionReplaceRoute, awsec2.ActionCreateRoute, awsec2.ActionDescribeRouteTables}
	tests := []struct {
		name   string
		denied []string
	}{
		{"all allowed", nil},
		{"associate denied", []string{awsec2.ActionAssociateAddress}},
		{"describes denied", []string{awsec2.ActionDescribeAddresses, awsec2.ActionDescribeInstances}},
		// AssignPrivateIpAddresses takes no DryRun: probed on an interface
		// that does not exist.
		{"private ip denied", []string{awsec2.ActionAssignPrivateIPAddresses, awsec2.ActionDescribeNetworkInterfaces}},
		{"routes denied", []string{awsec2.ActionReplaceRoute, awsec2.ActionCreateRoute, awsec2.ActionDescribeRouteTables}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, fake := newClient(t, nil)
			fake.Deny(tc.denied...)
			missing, err := c.CheckPermissions(ctxT(t), all)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(missing, tc.denied) {
				t.Fatalf("missing = %v, want %v", missing, tc.denied)
			}
			// A DryRun changes nothing.
			if _, ok := fake.Address("eipalloc-00000000000000000"); ok {
				t.Fatal("dry run created state")
			}
		})
	}
	c, _ := newClient(t, nil)
	if _, err := c.CheckPermissions(ctxT(t), []string{"TerminateInstances"}); err == nil {
		t.Fatal("unknown action accepted")
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name  string
		o     awsec2.Options
		field string
	}{
		{"ok", awsec2.DefaultOptions(), ""},
		{"attempts", awsec2.Options{MaxAttempts: 50}, "aws.max_attempts"},
		{"page", awsec2.Options{PageSize: 2}, "aws.page_size"},
		{"endpoint", awsec2.Options{Endpoint: "127.0.0.1:1"}, "aws.endpoint"},
		{"creds", awsec2.Options{Credentials: &awsec2.StaticCredentials{AccessKeyID: "x"}}, "aws.credentials"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.field)
			}
		})
	}
}
