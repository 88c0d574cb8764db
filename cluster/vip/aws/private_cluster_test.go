package aws_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rafterlb/rafter/cluster/awsec2"
	"github.com/rafterlb/rafter/cluster/vip"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/fakeec2"
)

// privateKind is what the controller tests need to know of a provider:
// the VIP of a node and where EC2 has it now.
type privateKind struct {
	provider string
	spec     func(i int, home string) fsm.VIPSpec
	// on returns the node whose interface has the address (every table's
	// route), "" when none or when the tables disagree.
	on func(r *rig, i int) string
	// drift moves it to node by hand.
	drift func(r *rig, i int, node string)
	write string // the action that moves it
}

var privateKinds = []privateKind{
	{
		provider: fsm.ProviderAWSPrivateIP,
		spec: func(i int, home string) fsm.VIPSpec {
			return fsm.VIPSpec{Provider: fsm.ProviderAWSPrivateIP, PrivateIP: fmt.Sprintf("10.0.9.%d", 100+i), HomeNode: home}
		},
		on: func(r *rig, i int) string {
			ip := fmt.Sprintf("10.0.9.%d", 100+i)
			for id, tg := range r.targets {
				if slices.Contains(r.fake.SecondaryIPs(tg.ENI), ip) {
					return id
				}
			}
			return ""
		},
		drift: func(r *rig, i int, node string) {
			if !r.fake.MovePrivateIP(fmt.Sprintf("10.0.9.%d", 100+i), r.targets[node].ENI) {
				r.t.Fatal("MovePrivateIP failed")
			}
		},
		write: fakeec2.ActionAssignPrivateIPAddresses,
	},
	{
		provider: fsm.ProviderAWSRoute,
		spec: func(i int, home string) fsm.VIPSpec {
			return fsm.VIPSpec{Provider: fsm.ProviderAWSRoute, RouteTableIDs: testTables, CIDR: fmt.Sprintf("10.200.0.%d/32", 10+i), HomeNode: home}
		},
		on: func(r *rig, i int) string {
			cidr := fmt.Sprintf("10.200.0.%d/32", 10+i)
			holder := ""
			for j, rt := range testTables {
				eni, _ := r.fake.Route(rt, cidr)
				id := ""
				for n, tg := range r.targets {
					if tg.ENI == eni {
						id = n
					}
				}
				if j > 0 && id != holder {
					return ""
				}
				holder = id
			}
			return holder
		},
		drift: func(r *rig, i int, node string) {
			if !r.fake.SetRoute(testTables[1], fmt.Sprintf("10.200.0.%d/32", 10+i), r.targets[node].ENI) {
				r.t.Fatal("SetRoute failed")
			}
		},
		write: fakeec2.ActionReplaceRoute,
	},
}

// addPrivateVIPs creates one VIP of kind k per node, homed there, and
// waits until EC2 has each on its home node and the leader settled them.
func (r *rig) addPrivateVIPs(k privateKind) {
	r.t.Helper()
	for _, rt := range testTables {
		r.fake.AddRouteTable(rt)
	}
	for i, id := range r.c.IDs() {
		b, err := json.Marshal(k.spec(i, id))
		if err != nil {
			r.t.Fatal(err)
		}
		r.c.Apply(r.t, fsm.PutCommand(fsm.Object{Kind: fsm.KindVIP, Name: "internal-" + id, Spec: b}, nil))
	}
	for i, id := range r.c.IDs() {
		r.poll(fmt.Sprintf("%s vip %d on %s", k.provider, i, id), func() bool { return k.on(r, i) == id })
	}
	r.waitSettled(len(r.c.IDs()))
}

// TestPrivateProviders: for both private-address providers, through the
// controller of a 3-node cluster: the VIPs land on their home nodes
// while EC2 throttles and describes late, a hand move is put back (drift,
// the assignment unchanged), and a killed holder's VIP moves to a live
// node and back home once it returns.
func TestPrivateProviders(t *testing.T) {
	for _, k := range privateKinds {
		t.Run(k.provider, func(t *testing.T) {
			r := newRig(t, rigOptions{
				sdk:  func(o *awsec2.Options) { o.MaxAttempts = 2 },
				tune: func(c *vip.Config) { c.HoldDown = 300 * time.Millisecond },
			})
			r.fake.SetDescribeLag(200 * time.Millisecond)
			r.fake.Throttle(k.write, 5)
			r.fake.Throttle(fakeec2.ActionCreateRoute, 3)
			r.fake.FailInternal(fakeec2.ActionDescribeNetworkInterfaces, 2)
			r.fake.FailInternal(fakeec2.ActionDescribeRouteTables, 2)
			r.addPrivateVIPs(k)
			ids := r.c.IDs()
			r.fake.SetDescribeLag(0)

			// Drift: moved by hand, put back without a new assignment
			// (drift repair never writes one).
			holder := r.followerID()
			i := slices.Index(ids, holder)
			other := ids[(i+1)%len(ids)]
			k.drift(r, i, other)
			r.poll("drift repaired", func() bool { return k.on(r, i) == holder && r.moves(vip.ReasonDrift) >= 1 })
			r.waitSettled(len(ids))
			if a := r.c.Leader(t).Config().Assignments["internal-"+holder]; a.Reason == vip.ReasonDrift {
				t.Errorf("drift repair wrote an assignment: %+v", a)
			}

			// Failover and failback.
			victim := r.followerID()
			vi := slices.Index(ids, victim)
			r.kill(victim)
			r.poll("vip on a live node, as assigned", func() bool {
				n := k.on(r, vi)
				a := r.c.Leader(t).Config().Assignments["internal-"+victim]
				return n != "" && n != victim && a.Holder == n && a.Reason == vip.ReasonUnreachable
			})
			r.poll("the live nodes' vips on their homes", func() bool {
				for j, id := range ids {
					if id != victim && k.on(r, j) != id {
						return false
					}
				}
				return true
			})
			r.restart(victim)
			r.poll("vip back home", func() bool { return k.on(r, vi) == victim })
		})
	}
}
