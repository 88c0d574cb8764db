package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cluster/awsec2"
	"github.com/rafterlb/rafter/cluster/probe"
	"github.com/rafterlb/rafter/cluster/vip"
	vipaws "github.com/rafterlb/rafter/cluster/vip/aws"
	"github.com/rafterlb/rafter/fsm"
)

const (
	// handoverMargin is added to the linux holder's HandoverDelay for
	// clock rate differences (well under 1ms over two seconds) and for a
	// renewal that a stalled holder completes late: the Lease undoes one
	// that completes more than 50ms past the lease (vip/linux.Lease), and
	// the rest covers the undoing.
	handoverMargin = 100 * time.Millisecond
	// stopHandoverTimeout bounds how long a stopping node waits for its
	// VIPs to be assigned elsewhere before it stops serving anyway.
	stopHandoverTimeout = 5 * time.Second
)

// linuxKeeper holds this node's linux VIPs (cluster/vip/linux.Keeper).
type linuxKeeper interface {
	SetGrants(seq uint64, grants map[string]uint64)
	Report(seq uint64) map[string]uint64
	Holding() map[string]uint64
	Run(ctx context.Context)
	ReleaseAll() error
}

// vipDeps is what the VIP machinery needs from the agent.
type vipDeps struct {
	Node   *cluster.Node
	EC2    *awsec2.Client // nil without --vip
	Sender probe.Sender
	// HeartbeatTimeout is Raft's (see probe.TrackerConfig.PriorQuiet).
	HeartbeatTimeout time.Duration
	Logger           *slog.Logger
	Registerer       prometheus.Registerer
}

// vipRuntime is the agent's VIP machinery: the probe tracker (leader side)
// and prober (every node), the controller that assigns and moves VIPs while
// this node leads, and with --vip-linux the keeper that holds linux VIPs.
type vipRuntime struct {
	nodeID  string
	node    *cluster.Node
	log     *slog.Logger
	tracker *probe.Tracker
	prober  *probe.Prober
	keeper  linuxKeeper

	mu     sync.Mutex
	pinned [2]string // id and admin address of the leader to probe once Raft closes
}

// leader is whom the prober probes: the node's view of the leader, or
// after pinLeader the leader it knew then, so that an upgrade's old
// process keeps probing after its Raft node closed.
func (r *vipRuntime) leader() (id, adminAddr string) {
	r.mu.Lock()
	p := r.pinned
	r.mu.Unlock()
	if p[0] != "" {
		return p[0], p[1]
	}
	return r.node.Leader()
}

// pinLeader fixes the leader the prober probes to the current one.
func (r *vipRuntime) pinLeader() {
	id, addr := r.node.Leader()
	r.mu.Lock()
	r.pinned = [2]string{id, addr}
	r.mu.Unlock()
}

// tookOver reports whether this node's probes are answered and it holds
// the linux VIPs its replicated state assigns it: an upgrade's new
// process then needs the old one no longer.
func (r *vipRuntime) tookOver() bool {
	if r.prober.QuorumContact().IsZero() {
		return false
	}
	if r.keeper == nil {
		return true
	}
	cfg := r.node.Config()
	held := r.keeper.Holding()
	for name, a := range cfg.Assignments {
		if v, ok := cfg.VIPs[name]; ok && v.Spec.Provider == fsm.ProviderLinux && a.Holder == r.nodeID && held[name] != a.Token {
			return false
		}
	}
	return true
}

// startVIPs builds and starts the VIP machinery; its goroutines belong to
// wg and stop when ctx ends, except the prober and the linux keeper, which
// belong to localWG and stop when local ends: an upgrade's old process
// keeps them running after its Raft node closed, until the new process
// probes and holds the addresses itself.
func startVIPs(ctx, local context.Context, wg, localWG *sync.WaitGroup, cfg Config, d vipDeps) (*vipRuntime, error) {
	r := &vipRuntime{nodeID: cfg.NodeID, node: d.Node, log: d.Logger.With("component", "vip")}
	tracker, err := probe.NewTracker(probe.TrackerConfig{
		NodeID:       cfg.NodeID,
		VerifyLeader: d.Node.VerifyLeader,
		PriorQuiet:   d.HeartbeatTimeout,
		Voters:       d.Node.Voters,
		GrantLife:    linuxLeasePeriod() + handoverMargin,
		Logger:       d.Logger.With("component", "probe"),
	})
	if err != nil {
		return nil, err
	}
	r.tracker = tracker
	live, err := probe.NewLiveness(tracker, cfg.VIPDetectAfter, nil, func() (string, time.Time, bool) {
		p, ok := d.Node.Predecessor()
		// This node's own last contact with the predecessor, when it saw
		// the gap, is sharper than Raft's last contact as it took over.
		if pc, known := d.Node.PriorContact(); ok && known && pc.At.Before(p.LastContact) {
			p.LastContact = pc.At
		}
		return p.ID, p.LastContact, ok
	})
	if err != nil {
		return nil, fmt.Errorf("--vip-detect-after: %w", err)
	}
	fence := vip.NewFence(d.Node)
	handover := vip.NewHandover(d.Node, tracker, linuxHandoverDelay()+handoverMargin, nil)
	tracker.SetGranter(handover)
	movers := map[string]vip.Mover{
		// The leader only grants a linux VIP; its holder adds the address.
		fsm.ProviderLinux: &vip.LinuxMover{Fence: fence, Reports: tracker, Handover: handover, Logger: r.log},
	}
	if cfg.VIP {
		if err := addAWSMovers(movers, cfg.VIPProviders, d.EC2, fence, d.Logger); err != nil {
			return nil, err
		}
	}

	vc := vip.DefaultConfig()
	vc.Store = d.Node
	vc.Liveness = live
	vc.Movers = movers
	vc.HoldDown = cfg.VIPHoldDown
	vc.Registerer = d.Registerer
	vc.Logger = r.log
	ctrl, err := vip.New(vc)
	if err != nil {
		return nil, err
	}

	if cfg.VIPLinux {
		r.keeper, err = newLinuxKeeper(cfg, d.Node, func() time.Time { return r.prober.QuorumContact() },
			func() { r.prober.ProbeNow() }, d.Logger)
		if err != nil {
			return nil, err
		}
	}
	pc := probe.ProberConfig{
		NodeID: cfg.NodeID,
		Leader: r.leader,
		Local:  tracker.Handle,
		Prior: func() (string, uint64, time.Time, bool) {
			p, ok := d.Node.PriorContact()
			return p.Leader, p.Term, p.At, ok
		},
		Sender: d.Sender,
		Logger: d.Logger.With("component", "probe"),
	}
	if r.keeper != nil {
		pc.Holding = r.keeper.Report
		pc.OnResponse = func(seq uint64, resp probe.Response) { r.keeper.SetGrants(seq, resp.Grants) }
	}
	r.prober, err = probe.NewProber(pc)
	if err != nil {
		return nil, err
	}

	trackerLeads, cancelT := d.Node.WatchLeadership()
	wg.Go(func() {
		defer cancelT()
		_ = tracker.Run(ctx, trackerLeads)
	})
	ctrlLeads, cancelC := d.Node.WatchLeadership()
	wg.Go(func() {
		defer cancelC()
		_ = ctrl.Run(ctx, ctrlLeads)
	})
	localWG.Go(func() { r.prober.Run(local) })
	if r.keeper != nil {
		localWG.Go(func() { r.keeper.Run(local) })
	}
	return r, nil
}

// addAWSMovers adds a Mover for each AWS provider --vip-providers names.
func addAWSMovers(movers map[string]vip.Mover, providers []string, ec2 *awsec2.Client, fence *vip.Fence, log *slog.Logger) error {
	for _, p := range providers {
		var (
			m   vip.Mover
			err error
		)
		plog := log.With("component", "vip-"+p)
		switch p {
		case fsm.ProviderAWSEIP:
			mc := vipaws.DefaultConfig()
			mc.Client, mc.Fence, mc.Targets, mc.Logger = ec2, fence, vipaws.NodeTargets{}, plog
			m, err = vipaws.New(mc)
		case fsm.ProviderAWSPrivateIP:
			m, err = vipaws.NewPrivateIP(vipaws.PrivateIPConfig{Client: ec2, Targets: vipaws.NodeTargets{}, Fence: fence, Logger: plog})
		case fsm.ProviderAWSRoute:
			m, err = vipaws.NewRoute(vipaws.RouteConfig{Client: ec2, Targets: vipaws.NodeTargets{}, Fence: fence, Logger: plog})
		default:
			return fmt.Errorf("--vip-providers: %q is not an AWS provider", p)
		}
		if err != nil {
			return err
		}
		movers[p] = m
	}
	return nil
}

// handOver runs first on a graceful stop: it tells the leader this node is
// leaving, waits (bounded) until no VIP is assigned here any more, then
// drops the linux addresses and tells the leader, so their new holders may
// claim them. The data plane keeps serving meanwhile.
func (r *vipRuntime) handOver(ctx context.Context) {
	if r.holds() == 0 && (r.keeper == nil || len(r.keeper.Holding()) == 0) {
		r.prober.SetLeaving(true)
		r.prober.ProbeNow()
		return
	}
	start := time.Now()
	r.log.Info("handing VIPs over before stopping", "vips", r.holds())
	r.prober.SetLeaving(true)
	r.prober.ProbeNow()
	ctx, cancel := context.WithTimeout(ctx, stopHandoverTimeout)
	defer cancel()
	// Wait only while the leader answers: when the whole cluster stops at
	// once nobody is left to take the VIPs.
	for r.holds() > 0 && ctx.Err() == nil && time.Since(r.prober.QuorumContact()) < time.Second {
		select {
		case <-ctx.Done():
		case <-r.node.Changed():
		case <-time.After(50 * time.Millisecond):
		}
	}
	if n := r.holds(); n > 0 {
		r.log.Warn("VIPs still assigned to this node at stop; they move once the leader sees it gone", "vips", n)
	}
	if r.keeper != nil {
		if err := r.keeper.ReleaseAll(); err != nil {
			r.log.Error("releasing linux VIPs at stop", "err", err,
				"action", "none needed: the addresses' kernel lifetime removes them within seconds; `ip addr` shows whether one is left")
		}
		// One more answered probe tells the leader the addresses are gone,
		// which lets the new holders claim them without waiting out the lease.
		r.prober.ProbeNow()
		sent := time.Now()
		for r.prober.QuorumContact().Before(sent) && ctx.Err() == nil && time.Since(sent) < time.Second {
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	r.log.Info("VIP handover done", "took", time.Since(start).Round(time.Millisecond))
}

// holds counts the VIPs assigned to this node in its replicated state.
func (r *vipRuntime) holds() int {
	n := 0
	for _, a := range r.node.Config().Assignments {
		if a.Holder == r.nodeID {
			n++
		}
	}
	return n
}

// probeSender sends probes over the admin API with this node's own token.
func probeSender(transport http.RoundTripper, scheme, token string) probe.Sender {
	return probe.HTTPSender{
		Client: &http.Client{
			Transport:     transport,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Scheme: scheme,
		Token:  token,
	}
}
