package aws_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cluster/awsec2"
	"github.com/rafterlb/rafter/cluster/clustertest"
	"github.com/rafterlb/rafter/cluster/probe"
	"github.com/rafterlb/rafter/cluster/vip"
	vipaws "github.com/rafterlb/rafter/cluster/vip/aws"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/fakeec2"
	"github.com/rafterlb/rafter/internal/testutil"
)

// wait bounds every poll of these tests: generous, for -race on a busy machine.
const wait = 20 * time.Second

// rig is a 3-node in-memory cluster with a vip Controller and the EIP,
// private IP and route Movers on every node, all moving addresses in one
// fake EC2.
type rig struct {
	t       *testing.T
	c       *clustertest.Cluster
	fake    *fakeec2.Server
	client  *awsec2.Client
	targets vipaws.StaticTargets
	tune    func(*vip.Config)
	logs    *testutil.SyncBuffer

	mu       sync.Mutex
	ctrls    map[string]*runningController
	trackers map[string]*probe.Tracker
}

// Send delivers a probe in-process to the leader's Tracker, as long as the
// partition lets the two nodes talk and the leader runs.
func (r *rig) send(from string) probe.Sender { return rigSender{r, from} }

type rigSender struct {
	r    *rig
	from string
}

func (s rigSender) Send(ctx context.Context, leaderID, _ string, req probe.Request) (probe.Response, error) {
	s.r.mu.Lock()
	tr := s.r.trackers[leaderID]
	s.r.mu.Unlock()
	if tr == nil || !s.r.c.Connected(s.from, leaderID) {
		<-ctx.Done() // silently dropped, like a partition
		return probe.Response{}, ctx.Err()
	}
	return tr.Handle(ctx, req)
}

type runningController struct {
	ctrl *vip.Controller
	reg  *prometheus.Registry
	stop func()
}

type rigOptions struct {
	sdk  func(*awsec2.Options)
	tune func(*vip.Config)
}

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	c := clustertest.NewCluster(t, 3)
	client, fake, targets := newEC2(t, c.IDs(), o.sdk)
	r := &rig{t: t, c: c, fake: fake, client: client, targets: targets, tune: o.tune, logs: &testutil.SyncBuffer{}, ctrls: map[string]*runningController{}, trackers: map[string]*probe.Tracker{}}
	t.Cleanup(func() {
		r.mu.Lock()
		ids := make([]string, 0, len(r.ctrls))
		for id := range r.ctrls {
			ids = append(ids, id)
		}
		r.mu.Unlock()
		for _, id := range ids {
			r.stopController(id)
		}
		if t.Failed() {
			t.Logf("controller logs:\n%s", r.logs.String())
		}
	})
	r.waitNodes()
	for _, id := range c.IDs() {
		r.startController(id)
	}
	return r
}

// waitNodes waits until the fsm knows every member and its zone.
func (r *rig) waitNodes() {
	r.poll("every node recorded with its zone", func() bool {
		nodes := r.c.Leader(r.t).Config().Nodes
		if len(nodes) != 3 {
			return false
		}
		for _, n := range nodes {
			if n.Zone == "" {
				return false
			}
		}
		return true
	})
}

func (r *rig) startController(id string) {
	t := r.t
	t.Helper()
	node := r.c.Node(id)
	log := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", id)
	// Liveness comes from probes, as in the agent.
	tracker, err := probe.NewTracker(probe.TrackerConfig{NodeID: id, VerifyLeader: node.VerifyLeader, PriorQuiet: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	live, err := probe.NewLiveness(tracker, 0, nil, func() (string, time.Time, bool) {
		p, ok := node.Predecessor()
		return p.ID, p.LastContact, ok
	})
	if err != nil {
		t.Fatal(err)
	}
	prober, err := probe.NewProber(probe.ProberConfig{NodeID: id, Leader: node.Leader, Local: tracker.Handle, Sender: r.send(id)})
	if err != nil {
		t.Fatal(err)
	}
	mover, err := vipaws.New(vipaws.Config{
		Client: r.client, Targets: r.targets, Fence: vip.NewFence(node), Logger: log,
		RetryBase: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		VerifyTimeout: 5 * time.Second, PollInterval: 10 * time.Millisecond, PollMax: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	timing := vipaws.Timing{RetryBase: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		VerifyTimeout: 5 * time.Second, PollInterval: 10 * time.Millisecond, PollMax: 50 * time.Millisecond}
	private, err := vipaws.NewPrivateIP(vipaws.PrivateIPConfig{Client: r.client, Targets: r.targets, Fence: vip.NewFence(node), Logger: log, Timing: timing})
	if err != nil {
		t.Fatal(err)
	}
	route, err := vipaws.NewRoute(vipaws.RouteConfig{Client: r.client, Targets: r.targets, Fence: vip.NewFence(node), Logger: log, Timing: timing})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := vip.Config{
		Store: node, Liveness: live,
		Movers: map[string]vip.Mover{fsm.ProviderAWSEIP: mover, fsm.ProviderAWSPrivateIP: private, fsm.ProviderAWSRoute: route},
		Logger: log, Registerer: reg,
		Tick: 20 * time.Millisecond, HoldDown: time.Hour, ReconcileInterval: 100 * time.Millisecond,
		RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
	}
	if r.tune != nil {
		r.tune(&cfg)
	}
	ctrl, err := vip.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	leadership, unwatch := node.WatchLeadership()
	trackerLeads, unwatchT := node.WatchLeadership()
	done := make(chan error, 1)
	go func() { done <- ctrl.Run(ctx, leadership) }()
	var bg sync.WaitGroup
	bg.Go(func() { _ = tracker.Run(ctx, trackerLeads) })
	bg.Go(func() { prober.Run(ctx) })
	r.mu.Lock()
	r.trackers[id] = tracker
	r.ctrls[id] = &runningController{ctrl: ctrl, reg: reg, stop: func() {
		r.mu.Lock()
		delete(r.trackers, id)
		r.mu.Unlock()
		cancel()
		unwatch()
		unwatchT()
		if err := <-done; err != nil {
			t.Errorf("controller %s: %v", id, err)
		}
		bg.Wait()
	}}
	r.mu.Unlock()
}

func (r *rig) stopController(id string) {
	r.mu.Lock()
	rc := r.ctrls[id]
	delete(r.ctrls, id)
	r.mu.Unlock()
	if rc != nil {
		rc.stop()
	}
}

// kill stops a node's controller, then the node, as a crash would.
func (r *rig) kill(id string) {
	r.stopController(id)
	r.c.Kill(id)
}

func (r *rig) restart(id string) {
	r.c.Restart(id)
	r.startController(id)
}

func (r *rig) registry(id string) *prometheus.Registry {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rc, ok := r.ctrls[id]; ok {
		return rc.reg
	}
	return nil
}

// moves sums rafter_vip_moves_total{reason} over every running controller.
func (r *rig) moves(reason string) float64 {
	var sum float64
	for _, id := range r.c.IDs() {
		reg := r.registry(id)
		if reg == nil {
			continue
		}
		mfs, err := reg.Gather()
		if err != nil {
			r.t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "rafter_vip_moves_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" && l.GetValue() == reason {
						sum += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	return sum
}

func (r *rig) poll(what string, cond func() bool) {
	r.t.Helper()
	testutil.WaitFor(r.t, wait, what, cond)
}

// addVIPs creates one EIP per node, homed there, and waits until each is
// associated with its home node's interface.
func (r *rig) addVIPs(extra func(*fsm.VIPSpec)) []string {
	r.t.Helper()
	var names []string
	for i, id := range r.c.IDs() {
		name := "edge-" + id
		spec := fsm.VIPSpec{Provider: fsm.ProviderAWSEIP, AllocationID: "eipalloc-" + id, HomeNode: id}
		if extra != nil {
			extra(&spec)
		}
		r.fake.AddAddress(spec.AllocationID, fmt.Sprintf("203.0.113.%d", i+1))
		b, err := json.Marshal(spec)
		if err != nil {
			r.t.Fatal(err)
		}
		r.c.Apply(r.t, fsm.PutCommand(fsm.Object{Kind: fsm.KindVIP, Name: name, Spec: b}, nil))
		names = append(names, name)
	}
	for _, id := range r.c.IDs() {
		r.waitOn("eipalloc-"+id, id)
	}
	r.waitSettled(len(names))
	return names
}

// waitSettled waits until the leader's controller has verified n VIPs in
// place and moves none.
func (r *rig) waitSettled(n int) {
	r.t.Helper()
	r.poll(fmt.Sprintf("%d vips in place", n), func() bool {
		r.mu.Lock()
		rc := r.ctrls[r.leaderID()]
		r.mu.Unlock()
		if rc == nil {
			return false
		}
		st := rc.ctrl.Status()
		in := 0
		for _, s := range st {
			if s.InPlace && !s.Moving {
				in++
			}
		}
		return in == n
	})
}

// waitOn waits until EC2 (the fake's true state) has the address on node.
func (r *rig) waitOn(alloc, node string) {
	r.t.Helper()
	r.poll(alloc+" on "+node, func() bool { return r.on(alloc) == node })
}

// on returns the node whose interface holds the address, "" when none.
func (r *rig) on(alloc string) string {
	a, _ := r.fake.Address(alloc)
	for id, tg := range r.targets {
		if a.NetworkInterfaceID == tg.ENI && a.PrivateIP == tg.PrivateIP {
			return id
		}
	}
	return ""
}

func (r *rig) zone(id string) string {
	for _, in := range r.fake.Instances() {
		if in.ID == "i-"+id {
			return in.Zone
		}
	}
	r.t.Fatalf("no instance for %s", id)
	return ""
}

func (r *rig) leaderID() string { return r.c.ID(r.c.Leader(r.t)) }

func (r *rig) followerID() string {
	return r.c.ID(r.c.Followers(r.c.Leader(r.t))[0])
}

// TestFailover: the lost holder's EIP is associated to a live node in
// another zone, and returns home after the hold-down once the node is back.
func TestFailover(t *testing.T) {
	tests := []struct {
		name   string
		victim func(*rig) string
	}{
		{"follower holder killed", (*rig).followerID},
		{"leader holder killed", (*rig).leaderID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, rigOptions{tune: func(c *vip.Config) { c.HoldDown = 300 * time.Millisecond }})
			r.addVIPs(nil)
			victim := tt.victim(r)
			alloc := "eipalloc-" + victim
			before := r.fake.Calls(fakeec2.ActionAssociateAddress)
			killed := time.Now()
			r.kill(victim)
			r.poll("AssociateAddress after the kill", func() bool { return r.fake.Calls(fakeec2.ActionAssociateAddress) > before })
			issued := time.Since(killed)
			r.poll(alloc+" on a live node", func() bool { n := r.on(alloc); return n != "" && n != victim })
			moved := time.Since(killed)
			t.Logf("%s: holder loss to AssociateAddress issued %s (target 1.2s), to association %s", tt.name, issued.Round(time.Millisecond), moved.Round(time.Millisecond))
			if issued > 15*time.Second {
				t.Errorf("AssociateAddress issued %s after the loss", issued)
			}
			to := r.on(alloc)
			if r.zone(to) == r.zone(victim) {
				t.Errorf("moved to %s in the lost holder's zone %s", to, r.zone(victim))
			}
			if r.c.Node(to) == nil {
				t.Errorf("moved to %s, which is not running", to)
			}
			a := r.c.Leader(t).Config().Assignments["edge-"+victim]
			if a.Holder != to || a.Reason != vip.ReasonUnreachable {
				t.Errorf("assignment %+v, want holder %s reason %s", a, to, vip.ReasonUnreachable)
			}
			for _, id := range r.c.IDs() {
				if id != victim && r.on("eipalloc-"+id) != id {
					t.Errorf("eipalloc-%s moved off its live home", id)
				}
			}
			if got := r.moves(vip.ReasonUnreachable); got < 1 {
				t.Errorf("rafter_vip_moves_total{reason=holder_unreachable} = %v", got)
			}

			r.restart(victim)
			r.waitOn(alloc, victim)
			a = r.c.Leader(t).Config().Assignments["edge-"+victim]
			if a.Holder != victim || a.Reason != vip.ReasonFailback {
				t.Errorf("after failback: assignment %+v", a)
			}
		})
	}
}

// TestNoFailbackWhenDisabled: spec.failback false keeps the VIP where it
// went, even after the home node is back well past the hold-down.
func TestNoFailbackWhenDisabled(t *testing.T) {
	off := false
	r := newRig(t, rigOptions{tune: func(c *vip.Config) { c.HoldDown = 50 * time.Millisecond }})
	r.addVIPs(func(s *fsm.VIPSpec) { s.Failback = &off })
	victim := r.followerID()
	alloc := "eipalloc-" + victim
	r.kill(victim)
	r.poll(alloc+" on a live node", func() bool { n := r.on(alloc); return n != "" && n != victim })
	to := r.on(alloc)
	r.restart(victim)
	// The leader sees the node back, then lets many hold-downs pass.
	r.poll("restarted node healthy on the leader", func() bool {
		for _, m := range r.c.Leader(t).Status().Members {
			if m.ID == victim {
				return m.Healthy
			}
		}
		return false
	})
	r.poll("several reconcile rounds", func() bool { return r.fake.Calls(fakeec2.ActionDescribeAddresses) > 20 })
	if got := r.on(alloc); got != to {
		t.Fatalf("%s moved to %s with failback off", alloc, got)
	}
	if got := r.moves(vip.ReasonFailback); got != 0 {
		t.Fatalf("failback moves: %v", got)
	}
}

// TestRidesOutThrottlingAndDescribeLag: EC2 throttles AssociateAddress
// past the SDK's own attempts, fails describes, and shows moves late; the
// VIPs still land where assigned.
func TestRidesOutThrottlingAndDescribeLag(t *testing.T) {
	r := newRig(t, rigOptions{sdk: func(o *awsec2.Options) { o.MaxAttempts = 2 }})
	r.fake.SetDescribeLag(200 * time.Millisecond)
	r.fake.Throttle(fakeec2.ActionAssociateAddress, 7)
	r.fake.FailInternal(fakeec2.ActionDescribeAddresses, 3)
	r.addVIPs(nil)
	if got := r.fake.Calls(fakeec2.ActionAssociateAddress); got < 3+7 {
		t.Fatalf("AssociateAddress requests %d, want at least 10 (3 moves + 7 throttled)", got)
	}
	for _, id := range r.c.IDs() {
		a := r.c.Leader(t).Config().Assignments["edge-"+id]
		if a.Holder != id || a.Reason != vip.ReasonInitial {
			t.Errorf("assignment %+v", a)
		}
	}
}

// TestDriftRepaired: an EIP moved by hand goes back to its holder.
func TestDriftRepaired(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.addVIPs(nil)
	holder := r.followerID()
	var other string
	for _, id := range r.c.IDs() {
		if id != holder {
			other = id
		}
	}
	alloc := "eipalloc-" + holder
	token := r.c.Leader(t).Config().Assignments["edge-"+holder].Token
	if !r.fake.MoveAddress(alloc, "i-"+other) {
		t.Fatal("MoveAddress failed")
	}
	r.waitOn(alloc, holder)
	r.waitSettled(3)
	if got := r.moves(vip.ReasonDrift); got < 1 {
		t.Errorf("rafter_vip_moves_total{reason=drift} = %v", got)
	}
	if a := r.c.Leader(t).Config().Assignments["edge-"+holder]; a.Token != token {
		t.Errorf("drift repair rewrote the assignment: token %d -> %d", token, a.Token)
	}
}

// TestZoneEvacuation: VIPs held in an evacuated zone leave it, and come
// back when the zone is restored.
func TestZoneEvacuation(t *testing.T) {
	r := newRig(t, rigOptions{tune: func(c *vip.Config) { c.HoldDown = 100 * time.Millisecond }})
	r.addVIPs(nil)
	victim := r.followerID()
	zone := r.c.Leader(t).Config().Nodes[victim].Zone
	alloc := "eipalloc-" + victim
	r.c.Apply(t, fsm.NewCommand(&fsm.ZoneChange{Zone: &fsm.ZoneState{Zone: zone, Evacuated: true}}))
	r.poll(alloc+" out of the evacuated zone", func() bool { n := r.on(alloc); return n != "" && n != victim })
	a := r.c.Leader(t).Config().Assignments["edge-"+victim]
	if a.Reason != vip.ReasonEvacuated {
		t.Errorf("assignment %+v, want reason %s", a, vip.ReasonEvacuated)
	}
	if got := r.moves(vip.ReasonEvacuated); got < 1 {
		t.Errorf("rafter_vip_moves_total{reason=zone_evacuated} = %v", got)
	}
	r.c.Apply(t, fsm.NewCommand(&fsm.ZoneChange{Zone: &fsm.ZoneState{Zone: zone, Evacuated: false}}))
	r.waitOn(alloc, victim)
}

// TestFencing: a late Move by a deposed leader, or with a token an newer
// assignment replaced, never reaches EC2.
func TestFencing(t *testing.T) {
	tests := []struct {
		name string
		// act returns the node whose fence guards the call and the token it
		// carries; the assignment's holder is node "to".
		act  func(t *testing.T, c *clustertest.Cluster, assign func(holder string) uint64) (guard *cluster.Node, token uint64)
		want error
	}{
		{
			name: "token replaced by a newer assignment",
			act: func(t *testing.T, c *clustertest.Cluster, assign func(string) uint64) (*cluster.Node, uint64) {
				old := assign("node1")
				assign("node2")
				return c.Leader(t), old
			},
			want: vip.ErrStaleToken,
		},
		{
			name: "deposed leader partitioned away",
			act: func(t *testing.T, c *clustertest.Cluster, assign func(string) uint64) (*cluster.Node, uint64) {
				tok := assign("node1")
				old := c.Leader(t)
				c.Partition(c.ID(old))
				t.Cleanup(c.Heal)
				// The majority elects a new leader, which reassigns the VIP;
				// the old leader's local state still shows its own token.
				deadline := time.Now().Add(wait)
				for {
					if n := c.Leader(t); n != old {
						ctx, cancel := context.WithTimeout(context.Background(), wait)
						_, err := n.Apply(ctx, fsm.NewCommand(&fsm.Assign{Time: time.Now(),
							Assignment: &fsm.Assignment{VIP: "web", Holder: "node2", Reason: "test"}}))
						cancel()
						if err == nil {
							break
						}
					}
					if time.Now().After(deadline) {
						t.Fatal("no new leader on the majority side")
					}
					time.Sleep(10 * time.Millisecond)
				}
				if got := old.Config().Assignments["web"].Token; got != tok {
					t.Fatalf("partitioned node saw token %d, want %d", got, tok)
				}
				return old, tok
			},
			want: vip.ErrNotLeader,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := clustertest.NewCluster(t, 3)
			// An assignment names a member the fsm knows: wait until every
			// node has recorded itself.
			for deadline := time.Now().Add(clustertest.WaitTimeout); len(c.Leader(t).Config().Nodes) < 3; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the fsm knows %d of 3 members after %s", len(c.Leader(t).Config().Nodes), clustertest.WaitTimeout)
				}
			}
			client, fake, targets := newEC2(t, c.IDs(), nil)
			fake.AddAddress("eipalloc-web", "203.0.113.10")
			spec, _ := json.Marshal(fsm.VIPSpec{Provider: fsm.ProviderAWSEIP, AllocationID: "eipalloc-web", HomeNode: "node1"})
			c.Apply(t, fsm.PutCommand(fsm.Object{Kind: fsm.KindVIP, Name: "web", Spec: spec}, nil))
			assign := func(holder string) uint64 {
				return c.Apply(t, fsm.NewCommand(&fsm.Assign{Time: time.Now(),
					Assignment: &fsm.Assignment{VIP: "web", Holder: holder, Reason: "test"}}))
			}
			guard, token := tt.act(t, c, assign)
			m, err := vipaws.New(vipaws.Config{Client: client, Targets: targets, Fence: vip.NewFence(guard)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			v := *guard.Config().VIPs["web"]
			err = m.Move(ctx, v, fsm.Node{ID: "node1"}, token)
			if !errors.Is(err, tt.want) {
				t.Fatalf("late Move: %v, want %v", err, tt.want)
			}
			if n := fake.Calls(fakeec2.ActionAssociateAddress); n != 0 {
				t.Fatalf("EC2 got %d AssociateAddress requests", n)
			}
			if a, _ := fake.Address("eipalloc-web"); a.AssociationID != "" {
				t.Fatalf("address associated: %+v", a)
			}
		})
	}
}
