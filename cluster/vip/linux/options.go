//go:build linux

package linux

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rafterlb/rafter/internal/conf"
)

// Options configures a Holder and its Lease. Start from DefaultOptions.
type Options struct {
	// Interface receives VIPs whose spec names none.
	Interface string
	// Lifetime is the kernel lifetime (valid_lft and preferred_lft) every
	// address is added and renewed with; whole seconds, at least 1s
	// (default 1s). The kernel counts in seconds, so it is rounded up.
	Lifetime time.Duration
	// RenewEvery spaces the Lease's renewals (default Lifetime/3).
	RenewEvery time.Duration
	// LeasePeriod: the Lease renews addresses (and the Keeper claims) only
	// while the last quorum contact is at most this old (default 200ms). It
	// need cover only one probe's round trip: each answer renews, and the
	// lifetime bridges answers that come late (see Lease).
	LeasePeriod time.Duration
	// GARPCount gratuitous ARP rounds (a request and a reply each) follow
	// every claim of an IPv4 address, GARPInterval apart (defaults 3 and
	// 100ms). Zero count with a non-zero interval is invalid.
	GARPCount    int
	GARPInterval time.Duration
	// NetNS is the path of the network namespace file to act in (e.g.
	// /run/netns/blue); empty: the process's own namespace.
	NetNS  string
	Logger *slog.Logger
	Now    func() time.Time // default time.Now
}

// DefaultOptions returns the production settings.
func DefaultOptions() Options {
	return Options{
		Lifetime:     time.Second,
		RenewEvery:   250 * time.Millisecond,
		LeasePeriod:  200 * time.Millisecond,
		GARPCount:    3,
		GARPInterval: 100 * time.Millisecond,
	}
}

// Validate names the first invalid field.
func (o Options) Validate() error {
	if o.Lifetime != 0 && o.Lifetime < time.Second {
		return fmt.Errorf("vip.linux.lifetime: %s is below the kernel's 1s granularity", o.Lifetime)
	}
	if err := conf.NotNegative(
		conf.Field("vip.linux.renew_every", o.RenewEvery),
		conf.Field("vip.linux.lease_period", o.LeasePeriod),
		conf.Field("vip.linux.garp_count", o.GARPCount),
		conf.Field("vip.linux.garp_interval", o.GARPInterval),
	); err != nil {
		return err
	}
	switch {
	case o.Lifetime != 0 && o.RenewEvery >= o.Lifetime:
		return fmt.Errorf("vip.linux.renew_every: %s must be below lifetime %s", o.RenewEvery, o.Lifetime)
	case o.GARPCount == 0 && o.GARPInterval != 0:
		return errors.New("vip.linux.garp_count: required when garp_interval is set")
	}
	return nil
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	conf.Default(&o.Lifetime, d.Lifetime)
	conf.Default(&o.RenewEvery, o.Lifetime/3)
	conf.Default(&o.LeasePeriod, d.LeasePeriod)
	if o.GARPCount == 0 && o.GARPInterval == 0 {
		o.GARPCount, o.GARPInterval = d.GARPCount, d.GARPInterval
	}
	conf.Logger(&o.Logger)
	conf.Now(&o.Now)
	return o
}

// kernelSlack is how long after its lifetime an address may linger. The
// kernel (net/ipv4/devinet.c, check_lifetime) re-checks lifetimes at once
// whenever an address is added or replaced, as every renewal does, and
// schedules the next check at the earliest expiry, rounding it up to a
// whole second only when that adds less than a quarter second (HZ/4).
// TestKernelDropsExpiredAddress measures the lateness (at most 160ms here,
// polling included); this keeps the quarter second and 50ms for the
// kernel worker. One case lies outside: a check runs no sooner than a
// second after the previous one, so an IPv4 address added on the holder's
// host by something else within the second before the expiry can delay it
// by up to that second (docs/operations.md, "Never two holders").
const kernelSlack = 300 * time.Millisecond

// HandoverDelay is the least time the leader must let pass after the last
// moment this node could have had quorum contact before it gives one of
// this node's Linux VIPs to another node: the Lease stops renewing within
// LeasePeriod of that contact, and the last renewal expires within
// Lifetime plus the kernel's granularity. Add a margin for clock rate
// differences and scheduling.
func (o Options) HandoverDelay() time.Duration {
	o = o.withDefaults()
	return o.LeasePeriod + o.lifetimeSeconds() + kernelSlack
}

// lifetimeSeconds is Lifetime as the kernel will apply it.
func (o Options) lifetimeSeconds() time.Duration {
	return time.Duration(o.lft()) * time.Second
}

func (o Options) lft() int {
	return int((o.Lifetime + time.Second - 1) / time.Second)
}
