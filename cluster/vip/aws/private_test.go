package aws_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/rafterlb/rafter/cluster/awsec2"
	"github.com/rafterlb/rafter/cluster/clustertest"
	"github.com/rafterlb/rafter/cluster/vip"
	vipaws "github.com/rafterlb/rafter/cluster/vip/aws"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/fakeec2"
)

const (
	testPrivateIP = "10.0.9.100"
	testCIDR      = "10.200.0.10/32"
)

var testTables = []string{"rtb-a", "rtb-b"}

func privateVIP(name string) fsm.VIP {
	return fsm.VIP{Name: name, Spec: fsm.VIPSpec{Provider: fsm.ProviderAWSPrivateIP, PrivateIP: testPrivateIP, HomeNode: "node1"}}
}

func routeVIP(name string) fsm.VIP {
	return fsm.VIP{Name: name, Spec: fsm.VIPSpec{Provider: fsm.ProviderAWSRoute, RouteTableIDs: testTables, CIDR: testCIDR, HomeNode: "node1"}}
}

// fastTiming keeps the movers' retries and polls short in tests.
func fastTiming() vipaws.Timing {
	return vipaws.Timing{RetryBase: time.Millisecond, RetryMax: 5 * time.Millisecond, PollInterval: 5 * time.Millisecond, PollMax: 20 * time.Millisecond}
}

// privateMovers builds both movers over one client.
func privateMovers(t *testing.T, client *awsec2.Client, targets vipaws.Targets, f vipaws.Fencer, tm vipaws.Timing) map[string]vip.Mover {
	t.Helper()
	p, err := vipaws.NewPrivateIP(vipaws.PrivateIPConfig{Client: client, Targets: targets, Fence: f, Timing: tm})
	if err != nil {
		t.Fatal(err)
	}
	r, err := vipaws.NewRoute(vipaws.RouteConfig{Client: client, Targets: targets, Fence: f, Timing: tm})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]vip.Mover{fsm.ProviderAWSPrivateIP: p, fsm.ProviderAWSRoute: r}
}

// TestPrivateIPMove: AssignPrivateIpAddresses to the target interface
// (taking the address from node1's), verified with
// DescribeNetworkInterfaces; every write fenced; what may pass retried.
func TestPrivateIPMove(t *testing.T) {
	nodes := []string{"node1", "node2"}
	tests := []struct {
		name       string
		sdk        func(*awsec2.Options)
		tune       func(*vipaws.Timing)
		inject     func(*fakeec2.Server)
		spec       func(*fsm.VIPSpec)
		target     string
		fenceErr   error
		wantErr    error
		fails      bool   // an error without a sentinel
		wantOn     string // the interface holding the address afterwards
		wantAssign int
		wantChecks int
	}{
		{name: "assigns and verifies", target: "node2", wantOn: "eni-i-node2", wantAssign: 1, wantChecks: 1},
		{name: "describe lag waited out", target: "node2", wantOn: "eni-i-node2", wantAssign: 1, wantChecks: 1,
			inject: func(f *fakeec2.Server) { f.SetDescribeLag(300 * time.Millisecond) }},
		{name: "describe errors during verification ridden out", target: "node2", wantOn: "eni-i-node2", wantAssign: 1, wantChecks: 1,
			sdk:    func(o *awsec2.Options) { o.MaxAttempts = 1 },
			inject: func(f *fakeec2.Server) { f.FailInternal(fakeec2.ActionDescribeNetworkInterfaces, 3) }},
		{name: "throttling beyond the SDK's attempts retried, fenced each time", target: "node2", wantOn: "eni-i-node2", wantAssign: 5, wantChecks: 3,
			sdk:    func(o *awsec2.Options) { o.MaxAttempts = 2 },
			inject: func(f *fakeec2.Server) { f.Throttle(fakeec2.ActionAssignPrivateIPAddresses, 4) }},
		{name: "throttling without end gives up", target: "node2", fails: true, wantOn: "eni-i-node1", wantAssign: 6, wantChecks: 3,
			sdk:    func(o *awsec2.Options) { o.MaxAttempts = 2 },
			tune:   func(tm *vipaws.Timing) { tm.Attempts = 3 },
			inject: func(f *fakeec2.Server) { f.Throttle(fakeec2.ActionAssignPrivateIPAddresses, -1) }},
		{name: "permission denied is not retried", target: "node2", wantErr: awsec2.ErrUnauthorized, wantOn: "eni-i-node1", wantAssign: 1, wantChecks: 1,
			inject: func(f *fakeec2.Server) { f.Deny(fakeec2.ActionAssignPrivateIPAddresses) }},
		{name: "unknown node", target: "node9", wantErr: vipaws.ErrNoTarget, wantOn: "eni-i-node1"},
		{name: "fence refuses: EC2 untouched", target: "node2", fenceErr: vip.ErrStaleToken, wantErr: vip.ErrStaleToken, wantOn: "eni-i-node1", wantChecks: 1},
		{name: "not visible before the verify deadline", target: "node2", wantErr: vipaws.ErrNotVerified, wantOn: "eni-i-node2", wantAssign: 1, wantChecks: 1,
			tune:   func(tm *vipaws.Timing) { tm.VerifyTimeout = 100 * time.Millisecond },
			inject: func(f *fakeec2.Server) { f.SetDescribeLag(time.Hour) }},
		{name: "the spec's interface for the node wins", target: "node2", wantOn: "eni-i-node3", wantAssign: 1, wantChecks: 1,
			spec: func(s *fsm.VIPSpec) { s.ENIs = map[string]string{"node2": "eni-i-node3"} }},
		{name: "an interface EC2 does not know is not retried", target: "node2", wantErr: awsec2.ErrNotFound, wantOn: "eni-i-node1", wantAssign: 1, wantChecks: 1,
			spec: func(s *fsm.VIPSpec) { s.ENIs = map[string]string{"node2": "eni-gone"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, fake, targets := newEC2(t, append(nodes, "node3"), tt.sdk)
			v := privateVIP("internal")
			if tt.spec != nil {
				tt.spec(&v.Spec)
			}
			fake.MovePrivateIP(testPrivateIP, "eni-i-node1")
			if tt.inject != nil {
				tt.inject(fake)
			}
			tm := fastTiming()
			if tt.tune != nil {
				tt.tune(&tm)
			}
			f := &fence{err: tt.fenceErr}
			m := privateMovers(t, client, targets, f, tm)[fsm.ProviderAWSPrivateIP]
			err := m.Move(ctxT(t), v, fsm.Node{ID: tt.target}, 42)
			ok := tt.wantErr == nil && !tt.fails
			switch {
			case ok && err != nil:
				t.Fatalf("Move: %v", err)
			case !ok && err == nil:
				t.Fatal("Move succeeded, want an error")
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("Move: %v, want %v", err, tt.wantErr)
			}
			if got := fake.Calls(fakeec2.ActionAssignPrivateIPAddresses); got != tt.wantAssign {
				t.Errorf("AssignPrivateIpAddresses requests: %d, want %d", got, tt.wantAssign)
			}
			if f.checks != tt.wantChecks {
				t.Errorf("fence checks: %d, want %d", f.checks, tt.wantChecks)
			}
			for _, eni := range []string{"eni-i-node1", "eni-i-node2", "eni-i-node3"} {
				if has := slices.Contains(fake.SecondaryIPs(eni), testPrivateIP); has != (eni == tt.wantOn) {
					t.Errorf("%s has the address: %v (want it on %s only)", eni, has, tt.wantOn)
				}
			}
			if ok {
				// Move returned only once DescribeNetworkInterfaces showed it.
				fake.ClearFaults()
				ips, err := client.InterfaceIPs(ctxT(t), tt.wantOn)
				if err != nil || !slices.Contains(ips, testPrivateIP) {
					t.Errorf("describe after Move: %v, %v", ips, err)
				}
			}
		})
	}
}

// TestRouteMove: each table's route for the CIDR is created when absent
// and replaced when it points elsewhere, left alone when right, then
// verified with DescribeRouteTables; every write fenced.
func TestRouteMove(t *testing.T) {
	tests := []struct {
		name        string
		sdk         func(*awsec2.Options)
		tune        func(*vipaws.Timing)
		setup       func(*fakeec2.Server)
		spec        func(*fsm.VIPSpec)
		fenceErr    error
		wantErr     error
		wantMoved   bool
		wantCreate  int
		wantReplace int
		wantChecks  int
	}{
		{name: "created when absent", wantMoved: true, wantCreate: 2, wantChecks: 2},
		{name: "replaced when elsewhere, kept when right", wantMoved: true, wantReplace: 1, wantChecks: 2,
			setup: func(f *fakeec2.Server) {
				f.SetRoute("rtb-a", testCIDR, "eni-i-node1")
				f.SetRoute("rtb-b", testCIDR, "eni-i-node2")
			}},
		{name: "describe lag waited out", wantMoved: true, wantReplace: 2, wantChecks: 2,
			setup: func(f *fakeec2.Server) {
				f.SetRoute("rtb-a", testCIDR, "eni-i-node1")
				f.SetRoute("rtb-b", testCIDR, "eni-i-node1")
				f.SetDescribeLag(300 * time.Millisecond)
			}},
		{name: "throttling beyond the SDK's attempts retried, fenced each time", wantMoved: true, wantReplace: 2 + 4, wantChecks: 2 + 2,
			sdk: func(o *awsec2.Options) { o.MaxAttempts = 2 },
			setup: func(f *fakeec2.Server) {
				f.SetRoute("rtb-a", testCIDR, "eni-i-node1")
				f.SetRoute("rtb-b", testCIDR, "eni-i-node1")
				f.Throttle(fakeec2.ActionReplaceRoute, 4)
			}},
		{name: "throttling without end gives up", wantReplace: 6, wantChecks: 3,
			sdk:  func(o *awsec2.Options) { o.MaxAttempts = 2 },
			tune: func(tm *vipaws.Timing) { tm.Attempts = 3 },
			setup: func(f *fakeec2.Server) {
				f.SetRoute("rtb-a", testCIDR, "eni-i-node1")
				f.Throttle(fakeec2.ActionReplaceRoute, -1)
			}},
		{name: "permission denied is not retried", wantErr: awsec2.ErrUnauthorized, wantCreate: 1, wantChecks: 1,
			setup: func(f *fakeec2.Server) { f.Deny(fakeec2.ActionCreateRoute) }},
		{name: "a table EC2 does not know is not retried", wantErr: awsec2.ErrNotFound, wantChecks: 1,
			spec: func(s *fsm.VIPSpec) { s.RouteTableIDs = []string{"rtb-gone"} }},
		{name: "fence refuses: EC2 untouched", fenceErr: vip.ErrStaleToken, wantErr: vip.ErrStaleToken, wantChecks: 1},
		{name: "not visible before the verify deadline", wantErr: vipaws.ErrNotVerified, wantReplace: 2, wantChecks: 2,
			tune: func(tm *vipaws.Timing) { tm.VerifyTimeout = 100 * time.Millisecond },
			setup: func(f *fakeec2.Server) {
				f.SetRoute("rtb-a", testCIDR, "eni-i-node1")
				f.SetRoute("rtb-b", testCIDR, "eni-i-node1")
				f.SetDescribeLag(time.Hour)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, fake, targets := newEC2(t, []string{"node1", "node2"}, tt.sdk)
			for _, rt := range testTables {
				fake.AddRouteTable(rt)
			}
			v := routeVIP("overlay")
			if tt.spec != nil {
				tt.spec(&v.Spec)
			}
			if tt.setup != nil {
				tt.setup(fake)
			}
			tm := fastTiming()
			if tt.tune != nil {
				tt.tune(&tm)
			}
			f := &fence{err: tt.fenceErr}
			m := privateMovers(t, client, targets, f, tm)[fsm.ProviderAWSRoute]
			err := m.Move(ctxT(t), v, fsm.Node{ID: "node2"}, 42)
			switch {
			case tt.wantMoved && err != nil:
				t.Fatalf("Move: %v", err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("Move: %v, want %v", err, tt.wantErr)
			case !tt.wantMoved && err == nil:
				t.Fatal("Move succeeded, want an error")
			}
			if got := fake.Calls(fakeec2.ActionCreateRoute); got != tt.wantCreate {
				t.Errorf("CreateRoute requests: %d, want %d", got, tt.wantCreate)
			}
			if got := fake.Calls(fakeec2.ActionReplaceRoute); got != tt.wantReplace {
				t.Errorf("ReplaceRoute requests: %d, want %d", got, tt.wantReplace)
			}
			if f.checks != tt.wantChecks {
				t.Errorf("fence checks: %d, want %d", f.checks, tt.wantChecks)
			}
			if tt.wantMoved {
				for _, rt := range testTables {
					if eni, ok := fake.Route(rt, testCIDR); !ok || eni != "eni-i-node2" {
						t.Errorf("%s: route at %q (%v), want eni-i-node2", rt, eni, ok)
					}
				}
			}
			if tt.fenceErr != nil {
				for _, rt := range testTables {
					if _, ok := fake.Route(rt, testCIDR); ok {
						t.Errorf("%s: a route was written past the fence", rt)
					}
				}
			}
		})
	}
}

// TestPrivateInPlace: what the reconciler asks of both movers.
func TestPrivateInPlace(t *testing.T) {
	client, fake, targets := newEC2(t, []string{"node1", "node2"}, nil)
	for _, rt := range testTables {
		fake.AddRouteTable(rt)
	}
	movers := privateMovers(t, client, targets, &fence{}, fastTiming())
	check := func(name string, m vip.Mover, v fsm.VIP, holder string, want bool, wantErr error) {
		t.Helper()
		got, err := m.(vip.Checker).InPlace(ctxT(t), v, fsm.Node{ID: holder})
		if got != want || !errors.Is(err, wantErr) || (wantErr == nil) != (err == nil) {
			t.Errorf("%s: InPlace = %v, %v; want %v, %v", name, got, err, want, wantErr)
		}
	}
	p, r := movers[fsm.ProviderAWSPrivateIP], movers[fsm.ProviderAWSRoute]
	check("private ip unassigned", p, privateVIP("a"), "node1", false, nil)
	fake.MovePrivateIP(testPrivateIP, "eni-i-node1")
	check("private ip on the holder", p, privateVIP("a"), "node1", true, nil)
	fake.MovePrivateIP(testPrivateIP, "eni-i-node2")
	check("private ip moved by hand", p, privateVIP("a"), "node1", false, nil)
	check("private ip holder without a target", p, privateVIP("a"), "node9", false, vipaws.ErrNoTarget)
	check("wrong provider", p, routeVIP("b"), "node1", false, vipaws.ErrWrongProvider)

	check("no route yet", r, routeVIP("b"), "node1", false, nil)
	fake.SetRoute("rtb-a", testCIDR, "eni-i-node1")
	check("one table of two", r, routeVIP("b"), "node1", false, nil)
	fake.SetRoute("rtb-b", testCIDR, "eni-i-node1")
	check("both tables", r, routeVIP("b"), "node1", true, nil)
	fake.SetRoute("rtb-b", testCIDR, "eni-i-node2")
	check("one moved by hand", r, routeVIP("b"), "node1", false, nil)
	gone := routeVIP("b")
	gone.Spec.RouteTableIDs = []string{"rtb-gone"}
	check("table gone", r, gone, "node1", false, awsec2.ErrNotFound)
}

// TestPrivateFencing: a Move carrying a token a newer assignment replaced
// never reaches EC2, through the real vip.Fence of a cluster node.
func TestPrivateFencing(t *testing.T) {
	for _, v := range []fsm.VIP{privateVIP("web"), routeVIP("web")} {
		t.Run(v.Spec.Provider, func(t *testing.T) {
			c := clustertest.NewCluster(t, 3)
			client, fake, targets := newEC2(t, c.IDs(), nil)
			for _, rt := range testTables {
				fake.AddRouteTable(rt)
			}
			spec, _ := json.Marshal(v.Spec)
			c.Apply(t, fsm.PutCommand(fsm.Object{Kind: fsm.KindVIP, Name: "web", Spec: spec}, nil))
			assign := func(holder string) uint64 {
				return c.Apply(t, fsm.NewCommand(&fsm.Assign{Time: time.Now(),
					Assignment: &fsm.Assignment{VIP: "web", Holder: holder, Reason: "test"}}))
			}
			old := assign("node1")
			assign("node2")
			leader := c.Leader(t)
			m := privateMovers(t, client, targets, vip.NewFence(leader), fastTiming())[v.Spec.Provider]
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			err := m.Move(ctx, *leader.Config().VIPs["web"], fsm.Node{ID: "node1"}, old)
			if !errors.Is(err, vip.ErrStaleToken) {
				t.Fatalf("late Move: %v, want %v", err, vip.ErrStaleToken)
			}
			for _, a := range []string{fakeec2.ActionAssignPrivateIPAddresses, fakeec2.ActionCreateRoute, fakeec2.ActionReplaceRoute} {
				if n := fake.Calls(a); n != 0 {
					t.Errorf("EC2 got %d %s requests", n, a)
				}
			}
			if len(fake.SecondaryIPs("eni-i-node1")) != 0 {
				t.Error("the address was assigned past the fence")
			}
		})
	}
}
