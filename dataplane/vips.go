package dataplane

import (
	"net"
	"net/netip"
	"slices"

	"github.com/rafterlb/rafter/fsm"
)

// vipIPs lists the addresses of the linux VIPs this node may hold: every
// listener binds them too. Empty unless Options.NodeID is set and BindIP
// is a specific address (a wildcard bind already covers them).
func (d *Dataplane) vipIPs(cfg *fsm.Config) []string {
	bind := net.ParseIP(d.opts.BindIP)
	if cfg == nil || d.opts.NodeID == "" || bind == nil || bind.IsUnspecified() {
		return nil
	}
	var out []string
	for _, v := range cfg.VIPs {
		if v.Spec.Provider != fsm.ProviderLinux {
			continue
		}
		if !v.Spec.MayHold(d.opts.NodeID) {
			continue
		}
		p, err := netip.ParsePrefix(v.Spec.Address)
		if err != nil || p.Addr().String() == bind.String() {
			continue
		}
		if ip := p.Addr().String(); !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	slices.Sort(out)
	return out
}
