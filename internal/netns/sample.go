//go:build linux

package netns

import (
	"context"
	"net"
	"sort"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Sample is which namespaces held an address at one instant.
type Sample struct {
	At      time.Time
	Holders []string // roles (n1, client...), sorted
	Err     error    // set when a namespace could not be read at this instant
}

// SampleAddresses reads, every interval until ctx ends, which of the rig's
// namespaces have addr on an interface, and returns the samples in order.
// Run it in a goroutine next to the actions a test takes; two holders in one
// sample is a split brain.
func (r *Rig) SampleAddresses(ctx context.Context, every time.Duration, addr string) []Sample {
	want := net.ParseIP(addr)
	r.mu.Lock()
	type nsh struct {
		role string
		h    *netlink.Handle
		err  error
	}
	var hs []nsh
	for role, h := range r.handles {
		if role == Bridge || !h.IsOpen() {
			continue
		}
		nh, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
		hs = append(hs, nsh{role: role, h: nh, err: err})
	}
	r.mu.Unlock()
	defer func() {
		for _, h := range hs {
			if h.h != nil {
				h.h.Close()
			}
		}
	}()
	var out []Sample
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		s := Sample{At: time.Now()}
		for _, h := range hs {
			if h.err != nil {
				s.Err = h.err
				continue
			}
			addrs, err := h.h.AddrList(nil, unix.AF_UNSPEC)
			if err != nil {
				s.Err = err
				continue
			}
			for _, a := range addrs {
				if a.IP.Equal(want) {
					s.Holders = append(s.Holders, h.role)
					break
				}
			}
		}
		sort.Strings(s.Holders)
		out = append(out, s)
		select {
		case <-ctx.Done():
			return out
		case <-tick.C:
		}
	}
}
