//go:build linux

package linux

import (
	"context"
	"time"
)

// Lease is the holder's self-fencing loop: it renews the Holder's
// addresses only while this node has recently had quorum contact, and
// lets them run out by themselves once it has not.
//
// Timing contract. Let C be the instant quorumContact last returned: the
// send time of the newest probe the leader answered, which is no later
// than the leader's record A of that probe's arrival. The Lease renews
// (and the Keeper claims) only while now-C <= LeasePeriod, so the last
// renewal happens by C+LeasePeriod and the address is gone by
// C+LeasePeriod+Lifetime+kernelSlack; this holds when the process is
// killed or frozen too, because the kernel drops the address itself. A
// renewal that a stall of this process delayed past the lease is undone at
// once (see Run). The leader therefore must not give a Linux VIP of a
// silent holder to another node before Options.HandoverDelay() plus a
// margin has passed since A.
//
// Because the lifetime bridges the gaps, LeasePeriod need only cover one
// probe's round trip, not the gap between answers: the Lease renews as
// each answer arrives (Kick), and a node whose answers stall for less than
// the lifetime keeps its addresses without a blink. It never renews an
// address whose lifetime has run out (Holder.Renew): once the leader may
// have given it away, it must not come back.
//
// That reasoning needs C to be no later than the leader's record of
// hearing from this node. quorumContact must therefore return the send
// time of the last request of this node that a quorum (or the leader)
// answered — not the last time a heartbeat arrived, which a one-way
// partition keeps fresh while the leader hears nothing.
type Lease struct {
	h    *Holder
	kick chan struct{}
}

// NewLease returns the Lease of h; its timing comes from h's Options.
func NewLease(h *Holder) *Lease { return &Lease{h: h, kick: make(chan struct{}, 1)} }

// lateRenewal is how far past the lease a renewal may complete before it
// is undone: the check and the netlink call are two steps, and a process
// frozen between them (SIGSTOP, a starved CPU) would otherwise renew on a
// lease that has long run out. The hand-over margin covers what is left.
const lateRenewal = 50 * time.Millisecond

// Kick has the Lease renew now (a probe was just answered).
func (l *Lease) Kick() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Run checks the lease now, on every Kick and every Options.RenewEvery
// until ctx ends. It leaves the addresses in place when it returns: they
// expire by themselves unless the owner calls Holder.Close (graceful stop)
// first.
func (l *Lease) Run(ctx context.Context, quorumContact func() time.Time) {
	o := l.h.opts
	tick := time.NewTicker(o.RenewEvery)
	defer tick.Stop()
	lapsed := false
	for {
		contact := quorumContact()
		age := o.Now().Sub(contact)
		switch {
		case contact.IsZero() || age > o.LeasePeriod:
			if held := l.h.Held(); len(held) > 0 && !lapsed {
				attrs := []any{"lease_period", o.LeasePeriod, "lifetime", o.lifetimeSeconds(), "vips", len(held)}
				if contact.IsZero() {
					attrs = append(attrs, "last_quorum_contact", "never")
				} else {
					attrs = append(attrs, "last_quorum_contact_ago", age.Round(time.Millisecond))
				}
				o.Logger.Warn("no quorum contact within the lease period; linux vips are no longer renewed and lapse within their lifetime unless contact returns", attrs...)
			}
			lapsed = true
			if err := l.h.DropExpired(); err != nil {
				o.Logger.Error("letting go of lapsed linux vips failed", "err", err, "action", "none needed: the kernel lifetime has removed the addresses")
			}
		default:
			if lapsed {
				o.Logger.Info("quorum contact regained; linux vips still alive are renewed again")
				lapsed = false
			}
			if err := l.h.Renew(); err != nil {
				o.Logger.Error("renewing linux vip addresses failed", "err", err, "action", "check that rafter still has CAP_NET_ADMIN and the interface exists; the addresses lapse otherwise")
			}
			if late := o.Now().Sub(contact); late > o.LeasePeriod+lateRenewal {
				o.Logger.Warn("a renewal completed after the lease had run out (the process stalled); releasing every linux vip",
					"last_quorum_contact_ago", late.Round(time.Millisecond))
				if err := l.h.ReleaseAll(); err != nil {
					o.Logger.Error("releasing linux vips after a late renewal failed", "err", err, "action", "none needed: the kernel lifetime removes the addresses within seconds")
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-l.kick:
		}
	}
}
