package awsec2_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/rafterlb/rafter/cluster/awsec2"
	"github.com/rafterlb/rafter/internal/fakeec2"
)

func TestPrivateIPCalls(t *testing.T) {
	c, fake := newClient(t, nil)
	fake.AddInstance(fakeec2.Instance{ID: "i-1", PrivateIP: "10.0.1.10", Subnet: "subnet-a"})
	fake.AddInstance(fakeec2.Instance{ID: "i-2", PrivateIP: "10.0.1.20", Subnet: "subnet-a"})
	fake.AddInstance(fakeec2.Instance{ID: "i-3", PrivateIP: "10.0.2.30", Subnet: "subnet-b"})

	if err := c.AssignPrivateIP(ctxT(t), "eni-i-1", "10.0.1.100"); err != nil {
		t.Fatal(err)
	}
	ips, err := c.InterfaceIPs(ctxT(t), "eni-i-1")
	if err != nil || !slices.Equal(ips, []string{"10.0.1.10", "10.0.1.100"}) {
		t.Fatalf("InterfaceIPs = %v, %v; want the primary first, then the secondary", ips, err)
	}
	// Reassigned: taken from i-1.
	if err := c.AssignPrivateIP(ctxT(t), "eni-i-2", "10.0.1.100"); err != nil {
		t.Fatal(err)
	}
	if got := fake.SecondaryIPs("eni-i-1"); len(got) != 0 {
		t.Fatalf("the address stayed on eni-i-1 too: %v", got)
	}
	if got := fake.SecondaryIPs("eni-i-2"); !slices.Equal(got, []string{"10.0.1.100"}) {
		t.Fatalf("eni-i-2 has %v", got)
	}
	// Another subnet: refused by EC2 (and not a NotFound).
	err = c.AssignPrivateIP(ctxT(t), "eni-i-3", "10.0.1.100")
	if err == nil || errors.Is(err, awsec2.ErrNotFound) {
		t.Fatalf("assign across subnets: %v", err)
	}
	if _, err := c.InterfaceIPs(ctxT(t), "eni-gone"); !errors.Is(err, awsec2.ErrNotFound) {
		t.Fatalf("unknown interface: %v, want ErrNotFound", err)
	}
	if err := c.AssignPrivateIP(ctxT(t), "eni-gone", "10.0.1.101"); !errors.Is(err, awsec2.ErrNotFound) {
		t.Fatalf("assign to an unknown interface: %v, want ErrNotFound", err)
	}
}

func TestRouteCalls(t *testing.T) {
	c, fake := newClient(t, nil)
	fake.AddInstance(fakeec2.Instance{ID: "i-1", PrivateIP: "10.0.1.10"})
	fake.AddInstance(fakeec2.Instance{ID: "i-2", PrivateIP: "10.0.2.20"})
	fake.AddRouteTable("rtb-1")
	for _, cidr := range []string{"10.200.0.10/32", "fd00:200::/64"} {
		t.Run(cidr, func(t *testing.T) {
			if _, err := c.DescribeRoute(ctxT(t), "rtb-1", cidr); !errors.Is(err, awsec2.ErrNoRoute) || errors.Is(err, awsec2.ErrNotFound) {
				t.Fatalf("no route yet: %v, want ErrNoRoute only", err)
			}
			if err := c.ReplaceRoute(ctxT(t), "rtb-1", cidr, "eni-i-1"); err == nil {
				t.Fatal("ReplaceRoute of a missing route succeeded")
			}
			if err := c.CreateRoute(ctxT(t), "rtb-1", cidr, "eni-i-1"); err != nil {
				t.Fatal(err)
			}
			if err := c.CreateRoute(ctxT(t), "rtb-1", cidr, "eni-i-1"); err == nil {
				t.Fatal("CreateRoute of an existing route succeeded")
			}
			if err := c.ReplaceRoute(ctxT(t), "rtb-1", cidr, "eni-i-2"); err != nil {
				t.Fatal(err)
			}
			r, err := c.DescribeRoute(ctxT(t), "rtb-1", cidr)
			if err != nil || r.NetworkInterfaceID != "eni-i-2" || r.State != "active" {
				t.Fatalf("DescribeRoute = %+v, %v", r, err)
			}
		})
	}
	if _, err := c.DescribeRoute(ctxT(t), "rtb-gone", "10.200.0.10/32"); !errors.Is(err, awsec2.ErrNotFound) {
		t.Fatalf("unknown table: %v, want ErrNotFound", err)
	}
	if err := c.CreateRoute(ctxT(t), "rtb-gone", "10.200.0.10/32", "eni-i-1"); !errors.Is(err, awsec2.ErrNotFound) {
		t.Fatalf("create in an unknown table: %v, want ErrNotFound", err)
	}
}
