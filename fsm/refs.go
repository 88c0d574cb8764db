package fsm

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// checkRefs checks what one object requires of the rest of the document:
// a route's listener and pools exist, listener ports and VIP addresses are
// unique, a listener's port is no member's admin or Raft port, and (when
// checkNodes and the document knows its members) a VIP's nodes are
// members.
func checkRefs(c *Config, kind Kind, name, p string, checkNodes bool) error {
	switch kind {
	case KindListener:
		l := c.Listeners[name]
		for _, other := range sortedKeys(c.Listeners) {
			if other != name && c.Listeners[other].Spec.Port == l.Spec.Port {
				return conflictf(p+".port", "port %d is already used by listener %q", l.Spec.Port, other)
			}
		}
		if err := checkListenerCertificates(c, l, p); err != nil {
			return err
		}
		// Checked even for a restored document: every node binds every
		// listener, and one bound on a node's own admin or Raft port would
		// keep that node's API or Raft from starting again.
		for _, id := range sortedKeys(c.Nodes) {
			for _, np := range nodePorts(c.Nodes[id]) {
				if np.port == l.Spec.Port {
					return invalidf(p+".port", "%d is node %s's %s port", l.Spec.Port, id, np.what)
				}
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
	case KindRollout:
		return checkRolloutRefs(c, name, p)
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
			if field, what := samePrivateTarget(&v.Spec, &o); field != "" {
				return invalidf(p+"."+field, "%s is already used by vip %q", what, other)
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
		for _, n := range sortedKeys(v.Spec.ENIs) {
			if _, ok := c.Nodes[n]; !ok {
				return invalidf(p+".enis."+n, "node %q is not a cluster member", n)
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

// nodePort is a port a node listens on for the cluster itself.
type nodePort struct {
	field string // "admin_addr", "raft_addr"
	what  string // "admin", "Raft"
	port  int
}

// nodePorts lists the admin and Raft ports of n (those its addresses name).
func nodePorts(n *Node) []nodePort {
	var out []nodePort
	for _, a := range []struct{ field, what, addr string }{
		{"admin_addr", "admin", n.AdminAddr},
		{"raft_addr", "Raft", n.RaftAddr},
	} {
		if port := addrPort(a.addr); port != 0 {
			out = append(out, nodePort{a.field, a.what, port})
		}
	}
	return out
}

// addrPort is the port of a host:port address, or 0.
func addrPort(addr string) int {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return 0
	}
	return n
}

// checkNodePorts refuses a node record whose admin or Raft port a
// listener of c already uses: every node binds every listener.
func checkNodePorts(c *Config, field string, n *Node) error {
	for _, np := range nodePorts(n) {
		for _, name := range sortedKeys(c.Listeners) {
			if c.Listeners[name].Spec.Port == np.port {
				return invalidf(field+"."+np.field, "port %d is used by listener %q; node %s cannot use it as its %s port", np.port, name, n.ID, np.what)
			}
		}
	}
	return nil
}
