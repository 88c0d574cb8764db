package fsm

import (
	"fmt"
	"net/netip"
)

// checkRefs checks what one object requires of the rest of the document:
// a route's listener and pools exist, listener ports and VIP addresses are
// unique, and (when checkNodes and the document knows its members) a VIP's
// nodes are members.
func checkRefs(c *Config, kind Kind, name, p string, checkNodes bool) error {
	switch kind {
	case KindListener:
		l := c.Listeners[name]
		for _, other := range sortedKeys(c.Listeners) {
			if other != name && c.Listeners[other].Spec.Port == l.Spec.Port {
				return conflictf(p+".port", "port %d is already used by listener %q", l.Spec.Port, other)
			}
		}
	case KindRoute:
		r := c.Routes[name]
		if _, ok := c.Listeners[r.Spec.Listener]; !ok {
			return invalidf(p+".listener", "listener %q does not exist", r.Spec.Listener)
		}
		for i, wp := range r.Spec.Action.Split {
			if _, ok := c.Pools[wp.Pool]; !ok {
				return invalidf(fmt.Sprintf("%s.action.split[%d].pool", p, i), "pool %q does not exist", wp.Pool)
			}
		}
	case KindVIP:
		v := c.VIPs[name]
		addr := vipAddr(v.Spec.Address)
		for _, other := range sortedKeys(c.VIPs) {
			if other == name {
				continue
			}
			o := c.VIPs[other].Spec
			if addr.IsValid() && vipAddr(o.Address) == addr {
				return invalidf(p+".address", "address %s is already used by vip %q", addr, other)
			}
			if v.Spec.AllocationID != "" && o.AllocationID == v.Spec.AllocationID {
				return invalidf(p+".allocation_id", "%q is already used by vip %q", o.AllocationID, other)
			}
		}
		if !checkNodes || len(c.Nodes) == 0 {
			return nil
		}
		if h := v.Spec.HomeNode; h != "" {
			if _, ok := c.Nodes[h]; !ok {
				return invalidf(p+".home_node", "node %q is not a cluster member", h)
			}
		}
		for i, n := range v.Spec.Candidates {
			if _, ok := c.Nodes[n]; !ok {
				return invalidf(fmt.Sprintf("%s.candidates[%d]", p, i), "node %q is not a cluster member", n)
			}
		}
	}
	return nil
}

// vipAddr is the address of a VIP's "address" field, in CIDR or plain form.
func vipAddr(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	if pfx, err := netip.ParsePrefix(s); err == nil {
		return pfx.Addr().Unmap()
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}
