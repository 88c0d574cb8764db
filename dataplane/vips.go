package dataplane

import (
	"net"
	"net/netip"
	"slices"

	"github.com/rafterlb/rafter/fsm"
)

// vipIPs lists the addresses of the VIPs this node may hold that arrive
// on it as themselves: linux VIPs, aws-private-ip VIPs and aws-route VIPs
// whose CIDR is one address. Every listener binds them too. Empty unless
// Options.NodeID is set and BindIP is a specific address (a wildcard bind
// already covers them).
func (d *Dataplane) vipIPs(cfg *fsm.Config) []string {
	bind := net.ParseIP(d.opts.BindIP)
	if cfg == nil || d.opts.NodeID == "" || bind == nil || bind.IsUnspecified() {
		return nil
	}
	var out []string
	for _, v := range cfg.VIPs {
		if !v.Spec.MayHold(d.opts.NodeID) {
			continue
		}
		addr, ok := vipAddr(&v.Spec)
		if !ok || addr.String() == bind.String() {
			continue
		}
		if ip := addr.String(); !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	slices.Sort(out)
	return out
}

// vipAddr is the one address a VIP's traffic arrives for, when it has one.
func vipAddr(s *fsm.VIPSpec) (netip.Addr, bool) {
	switch s.Provider {
	case fsm.ProviderLinux:
		p, err := netip.ParsePrefix(s.Address)
		return p.Addr(), err == nil
	case fsm.ProviderAWSPrivateIP:
		a, err := netip.ParseAddr(s.PrivateIP)
		return a, err == nil
	case fsm.ProviderAWSRoute:
		p, err := netip.ParsePrefix(s.CIDR)
		return p.Addr(), err == nil && p.IsSingleIP()
	}
	return netip.Addr{}, false
}
