//go:build linux

package linux

import (
	"context"
	"time"
)

// Lease is the holder's self-fencing loop: it renews the Holder's
// addresses only while this node has recently had quorum contact, and
// releases them all by itself once it has not.
//
// Timing contract. Let C be the instant quorumContact last returned. The
// Lease renews only while now-C <= LeasePeriod, so the last renewal happens
// by C+LeasePeriod and expires by C+LeasePeriod+Lifetime (+ about 1s of
// kernel granularity); this holds even when the process is killed or
// frozen, because the kernel drops the address itself. The leader
// therefore must not hand a Linux VIP of an unreachable holder to another
// node before Options.HandoverDelay() plus a margin has passed since its
// own record of last hearing from that holder.
//
// That reasoning needs C to be no later than the leader's record of
// hearing from this node. quorumContact must therefore return the send
// time of the last request of this node that a quorum (or the leader)
// answered — not the last time a heartbeat arrived, which a one-way
// partition keeps fresh while the leader hears nothing.
type Lease struct {
	h *Holder
}

// NewLease returns the Lease of h; its timing comes from h's Options.
func NewLease(h *Holder) *Lease { return &Lease{h: h} }

// Run checks the lease now and every Options.RenewEvery until ctx ends. It
// leaves the addresses in place when it returns: they expire by themselves
// unless the owner calls Holder.Close (graceful stop) first.
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
			if held := l.h.Held(); len(held) > 0 || !lapsed {
				if len(held) > 0 {
					attrs := []any{"lease_period", o.LeasePeriod, "vips", len(held)}
					if contact.IsZero() {
						attrs = append(attrs, "last_quorum_contact", "never")
					} else {
						attrs = append(attrs, "last_quorum_contact_ago", age.Round(time.Millisecond))
					}
					o.Logger.Warn("no quorum contact within the lease period; releasing every linux vip so another node may take them", attrs...)
				}
				if err := l.h.ReleaseAll(); err != nil {
					// The kernel lifetime still removes them shortly.
					o.Logger.Error("releasing linux vips after losing the lease failed", "err", err, "action", "none needed: the kernel lifetime removes the addresses within seconds")
				}
			}
			lapsed = true
		default:
			if lapsed {
				o.Logger.Info("quorum contact regained; linux vips are renewed again once claimed")
				lapsed = false
			}
			if err := l.h.Renew(); err != nil {
				o.Logger.Error("renewing linux vip addresses failed", "err", err, "action", "check that rafter still has CAP_NET_ADMIN and the interface exists; the addresses lapse otherwise")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
