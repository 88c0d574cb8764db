//go:build linux

package linux

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/conf"
)

// KeeperConfig configures a Keeper.
type KeeperConfig struct {
	NodeID string
	// Store is this node's replicated state (cluster.Node).
	Store interface {
		Config() *fsm.Config
		Changed() <-chan struct{}
	}
	Holder *Holder
	// QuorumContact is the send time of this node's last probe the leader
	// answered (probe.Prober.QuorumContact); the lease runs from it.
	QuorumContact func() time.Time
	// WantGrant, if set, is called while the state names this node holder
	// of a VIP it has no grant for, so the next probe goes out at once
	// (probe.Prober.ProbeNow).
	WantGrant func()
	// Every bounds how long a change in lease or grants waits to be acted
	// on (default 100ms).
	Every  time.Duration
	Logger *slog.Logger
}

// Keeper holds the Linux VIPs this node should hold, and only those. A VIP
// is claimed when three things agree: the local replicated state names
// this node holder, the leader granted that same token (it does so only
// once no other node can still have the address), and the lease holds.
// Anything else releases it. The Lease it runs renews the addresses' kernel
// lifetime while the lease holds and drops them all when it lapses.
type Keeper struct {
	cfg   KeeperConfig
	log   *slog.Logger
	wake  chan struct{}
	lease *Lease

	// probed: the Seq of the newest probe composed (Report). A grant is
	// acted on only while the probe it answered is still the newest: the
	// leader counts this node's later reports of not holding a VIP as
	// clearance to give it to another node.
	probed atomic.Uint64

	// reconcileMu serialises reconcile between Run and Report; announce
	// (VIP -> token) lists the addresses added whose gratuitous ARP Run
	// has yet to send. Both under reconcileMu.
	reconcileMu sync.Mutex
	announce    map[string]uint64

	mu     sync.Mutex
	grants map[string]uint64
	// grantsSeq: the probe whose answer carried grants.
	grantsSeq uint64
	// grantsSent: when the probe was sent whose answer carried grants.
	grantsSent time.Time
	stopped    bool
	failures   map[string]string // VIP -> last claim error logged
}

// NewKeeper checks cfg.
func NewKeeper(cfg KeeperConfig) (*Keeper, error) {
	switch {
	case cfg.NodeID == "":
		return nil, errors.New("vip/linux: keeper.node_id: required")
	case cfg.Store == nil:
		return nil, errors.New("vip/linux: keeper.store: required")
	case cfg.Holder == nil:
		return nil, errors.New("vip/linux: keeper.holder: required")
	case cfg.QuorumContact == nil:
		return nil, errors.New("vip/linux: keeper.quorum_contact: required")
	case cfg.Every < 0:
		return nil, errors.New("vip/linux: keeper.every: must not be negative")
	}
	conf.Default(&cfg.Every, 100*time.Millisecond)
	conf.Logger(&cfg.Logger)
	return &Keeper{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1), lease: NewLease(cfg.Holder), announce: map[string]uint64{}, failures: map[string]string{}}, nil
}

// SetGrants records the leader's grants in answer to probe seq and wakes
// the Keeper. They answer the probe QuorumContact reports as sent last (the
// prober calls SetGrants after it recorded that probe's answer).
func (k *Keeper) SetGrants(seq uint64, g map[string]uint64) {
	sent := k.cfg.QuorumContact()
	k.mu.Lock()
	k.grants = maps.Clone(g)
	k.grantsSeq = seq
	k.grantsSent = sent
	k.mu.Unlock()
	k.lease.Kick() // an answer: renew on it while it is fresh
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// Report is what probe seq reports, called as the prober composes it:
// the VIPs held now, name -> token. From this call on, grants answering
// earlier probes are void, and a claim on one either happened before this
// list was taken (so the probe reports it) or does not happen.
//
// A grant still waiting for the keeper's loop is acted on first, so that
// the next probe never voids it: a keeper slower than the probes (a busy
// CPU, ProbeNow in a loop) would otherwise never claim.
func (k *Keeper) Report(seq uint64) map[string]uint64 {
	k.reconcileMu.Lock()
	k.reconcile()
	k.probed.Store(seq)
	pending := len(k.announce) > 0
	k.reconcileMu.Unlock()
	if pending {
		k.poke() // Run sends the gratuitous ARP
	}
	return k.Holding()
}

func (k *Keeper) poke() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// Holding returns the VIPs held now, name -> token.
func (k *Keeper) Holding() map[string]uint64 {
	held := k.cfg.Holder.Held()
	out := make(map[string]uint64, len(held))
	for _, h := range held {
		out[h.VIP] = h.Token
	}
	return out
}

// ReleaseAll removes every address now and claims nothing afterwards: the
// graceful stop.
func (k *Keeper) ReleaseAll() error {
	k.mu.Lock()
	k.stopped = true
	k.mu.Unlock()
	return k.cfg.Holder.ReleaseAll()
}

// Run keeps the addresses in line until ctx ends; held addresses are then
// left to expire (a graceful stop calls ReleaseAll first).
func (k *Keeper) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { k.lease.Run(ctx, k.cfg.QuorumContact) })
	tick := time.NewTicker(k.cfg.Every)
	defer tick.Stop()
	for {
		changed := k.cfg.Store.Changed()
		k.reconcileMu.Lock()
		k.reconcile()
		announce := k.announce
		k.announce = map[string]uint64{}
		k.reconcileMu.Unlock()
		for _, name := range slices.Sorted(maps.Keys(announce)) {
			if err := k.cfg.Holder.announceHeld(ctx, name, announce[name]); err != nil {
				k.log.Error("announcing linux vip failed", "vip", name, "err", err,
					"action", "check CAP_NET_RAW; neighbours learn the address when their ARP entries expire")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-k.wake:
		case <-tick.C:
		}
	}
}

// leaseHolds: the last answered probe is recent enough.
func (k *Keeper) leaseHolds() bool {
	c := k.cfg.QuorumContact()
	o := k.cfg.Holder.opts
	return !c.IsZero() && o.Now().Sub(c) <= o.LeasePeriod
}

// reconcile releases and adds addresses (Run sends the gratuitous ARP of
// those added); k.reconcileMu is held.
func (k *Keeper) reconcile() {
	cfg := k.cfg.Store.Config()
	k.mu.Lock()
	grants, grantsSeq, grantsSent, stopped := k.grants, k.grantsSeq, k.grantsSent, k.stopped
	k.mu.Unlock()
	fresh := k.leaseHolds()
	held := k.Holding()

	for _, name := range slices.Sorted(maps.Keys(held)) {
		token := held[name]
		a, assigned := cfg.Assignments[name]
		v, exists := cfg.VIPs[name]
		keep := exists && v.Spec.Provider == fsm.ProviderLinux && assigned &&
			a.Holder == k.cfg.NodeID && a.Token == token && !stopped
		if keep {
			continue
		}
		reason := "reassigned"
		switch {
		case stopped:
			reason = "stopping"
		case !exists:
			reason = "vip deleted"
		}
		if err := k.cfg.Holder.Release(name); err != nil {
			k.log.Error("releasing linux vip failed", "vip", name, "err", err, "action", "retried; the kernel lifetime removes the address within seconds")
			continue
		}
		k.log.Info("linux vip released", "vip", name, "token", token, "reason", reason)
	}
	if stopped || !fresh {
		return
	}
	// Grants answering a probe sent before the last release say nothing
	// about now: a later probe told the leader this node holds nothing,
	// and the leader may have given the address to another node on that
	// word. Claim only on the answer to a probe sent since.
	if grantsSent.Before(k.cfg.Holder.LastRelease()) {
		if len(grants) > 0 && k.cfg.WantGrant != nil {
			k.cfg.WantGrant()
		}
		return
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Assignments)) {
		a := cfg.Assignments[name]
		v, ok := cfg.VIPs[name]
		if !ok || v.Spec.Provider != fsm.ProviderLinux || a.Holder != k.cfg.NodeID {
			continue
		}
		if tok, ok := held[name]; ok && tok == a.Token {
			continue
		}
		if g, ok := grants[name]; !ok || g != a.Token {
			// The leader has not yet seen every other node let go; ask
			// again at once rather than at the next probe interval.
			if k.cfg.WantGrant != nil {
				k.cfg.WantGrant()
			}
			continue
		}
		err := k.cfg.Holder.addIf(*v, a.Token, func() error {
			if p := k.probed.Load(); p != grantsSeq {
				return fmt.Errorf("%w: the grant answered probe %d, and probe %d has gone out since", errGrantVoid, grantsSeq, p)
			}
			if !k.leaseHolds() {
				// Checked again next to the syscall: the lease bounds
				// when an address may be added (Lease's timing contract).
				return fmt.Errorf("%w: the lease ran out before the claim", errGrantVoid)
			}
			return nil
		})
		if errors.Is(err, errGrantVoid) {
			// The answer to the newer probe brings the grant again if it
			// still holds.
			if k.cfg.WantGrant != nil {
				k.cfg.WantGrant()
			}
			continue
		}
		if err != nil {
			if k.failures[name] != err.Error() {
				k.failures[name] = err.Error()
				k.log.Error("claiming linux vip failed; retrying", "vip", name, "token", a.Token, "err", err,
					"action", "check CAP_NET_ADMIN/CAP_NET_RAW and --vip-interface; `rafter vip status` shows the failure")
			}
			continue
		}
		delete(k.failures, name)
		k.announce[name] = a.Token
	}
}
