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
	Every time.Duration
	// WarnAfter is how long a VIP assigned to this node may stay unclaimed
	// before the Keeper says at WARN why (default 5s): longer than a
	// hand-over from a silent holder takes (Options.HandoverDelay), so a
	// warning means something is stuck.
	WarnAfter time.Duration
	Logger    *slog.Logger
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
	// has yet to send. Both, and waiting and failures, under reconcileMu.
	reconcileMu sync.Mutex
	announce    map[string]uint64
	waiting     map[string]*waiting // VIP -> assigned here, not yet claimed
	failures    map[string]string   // VIP -> last claim error logged

	mu     sync.Mutex
	grants map[string]uint64
	// grantsSeq: the probe whose answer carried grants.
	grantsSeq uint64
	// grantsSent: when the probe was sent whose answer carried grants.
	grantsSent time.Time
	stopped    bool
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
	case cfg.WarnAfter < 0:
		return nil, errors.New("vip/linux: keeper.warn_after: must not be negative")
	}
	conf.Default(&cfg.Every, 100*time.Millisecond)
	conf.Default(&cfg.WarnAfter, 5*time.Second)
	conf.Logger(&cfg.Logger)
	return &Keeper{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1), lease: NewLease(cfg.Holder), announce: map[string]uint64{},
		waiting: map[string]*waiting{}, failures: map[string]string{}}, nil
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
	if stopped {
		clear(k.waiting)
		return
	}
	now := k.cfg.Holder.opts.Now()
	for _, name := range slices.Sorted(maps.Keys(cfg.Assignments)) {
		a := cfg.Assignments[name]
		v, ok := cfg.VIPs[name]
		if !ok || v.Spec.Provider != fsm.ProviderLinux || a.Holder != k.cfg.NodeID {
			continue
		}
		if tok, ok := held[name]; ok && tok == a.Token {
			continue
		}
		why := k.claim(*v, a.Token, fresh, grants, grantsSeq, grantsSent)
		if why != "" {
			k.unclaimed(name, a.Token, now, why)
		}
	}
	// A grant of a token this node's state does not have yet: the leader
	// assigned the VIP here, and this node has not applied that write.
	for _, name := range slices.Sorted(maps.Keys(grants)) {
		a, ok := cfg.Assignments[name]
		if ok && a.Token >= grants[name] {
			continue
		}
		if w := k.waiting[name]; w != nil && w.seen {
			continue // assigned here at an older token: said above
		}
		have := "no assignment"
		if ok {
			have = fmt.Sprintf("token %d for node %s", a.Token, a.Holder)
		}
		k.unclaimed(name, grants[name], now, fmt.Sprintf(
			"the leader granted token %d, which this node's replicated state has not applied yet (it has %s, applied index %d)",
			grants[name], have, cfg.Index))
	}
	k.claimed(now)
}

// claim adds v's address if the lease holds and the leader granted token
// in answer to the newest probe; it returns why it did not ("" when it
// did). k.reconcileMu is held.
func (k *Keeper) claim(v fsm.VIP, token uint64, fresh bool, grants map[string]uint64, grantsSeq uint64, grantsSent time.Time) string {
	name := v.Name
	if !fresh {
		if c := k.cfg.QuorumContact(); !c.IsZero() {
			return fmt.Sprintf("no quorum contact within the lease period: the last probe the leader answered was sent %s ago",
				k.cfg.Holder.opts.Now().Sub(c).Round(time.Millisecond))
		}
		return "no probe answered by a leader yet"
	}
	// Grants answering a probe sent before the last release say nothing
	// about now: a later probe told the leader this node holds nothing,
	// and the leader may have given the address to another node on that
	// word. Claim only on the answer to a probe sent since.
	if grantsSent.Before(k.cfg.Holder.LastRelease()) {
		if len(grants) > 0 && k.cfg.WantGrant != nil {
			k.cfg.WantGrant()
		}
		return "the leader's last answer predates this node's last release of an address"
	}
	if g, ok := grants[name]; !ok || g != token {
		// The leader has not yet seen every other node let go; ask
		// again at once rather than at the next probe interval.
		if k.cfg.WantGrant != nil {
			k.cfg.WantGrant()
		}
		if ok {
			return fmt.Sprintf("the leader granted token %d, not %d (the two replicated states differ)", g, token)
		}
		return "not granted by the leader yet: it waits until every other node has reported not holding the address or has been silent for the hand-over delay"
	}
	err := k.cfg.Holder.addIf(v, token, func() error {
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
		return err.Error()
	}
	if err != nil {
		if k.failures[name] != err.Error() {
			k.failures[name] = err.Error()
			k.log.Error("claiming linux vip failed; retrying", "vip", name, "token", token, "err", err,
				"action", "check CAP_NET_ADMIN/CAP_NET_RAW and --vip-interface; `rafter vip status` shows the failure")
		}
		return err.Error()
	}
	delete(k.failures, name)
	k.announce[name] = token
	return ""
}

// waiting is a VIP assigned to this node and not yet claimed.
type waiting struct {
	token  uint64
	since  time.Time
	seen   bool // in the reconcile running now
	warned bool
}

// unclaimed records that VIP name, assigned here with token, is not held
// for reason why, and warns once per token when that has lasted
// KeeperConfig.WarnAfter. k.reconcileMu is held.
func (k *Keeper) unclaimed(name string, token uint64, now time.Time, why string) {
	w := k.waiting[name]
	if w == nil || w.token != token {
		w = &waiting{token: token, since: now}
		k.waiting[name] = w
	}
	w.seen = true
	if waited := now.Sub(w.since); !w.warned && waited >= k.cfg.WarnAfter {
		w.warned = true
		k.log.Warn("linux vip assigned to this node is still not claimed", "vip", name, "token", token,
			"waiting", waited.Round(time.Millisecond), "reason", why,
			"action", "check that this node reaches the leader's admin API (probes) and that the other nodes report in; `rafter vip status` shows the assignment")
	}
}

// claimed forgets the VIPs reconcile did not find waiting this time, and
// says so for those it warned of. k.reconcileMu is held.
func (k *Keeper) claimed(now time.Time) {
	for name, w := range k.waiting {
		if w.seen {
			w.seen = false
			continue
		}
		delete(k.waiting, name)
		if w.warned {
			k.log.Info("linux vip no longer waiting to be claimed", "vip", name, "token", w.token,
				"waited", now.Sub(w.since).Round(time.Millisecond), "claimed", k.cfg.Holder.holds(name, w.token))
		}
	}
}
