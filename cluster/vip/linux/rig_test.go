//go:build linux

package linux

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/nsthread"
	"github.com/rafterlb/rafter/internal/testutil"
)

// rig is a test's own network namespaces: "node" holds the VIPs on link
// vip0, whose veth peer peer0 sits in "wire" to observe what leaves it.
type rig struct {
	node, wire     netns.NsHandle
	nodePath       string
	nodeNL, wireNL *netlink.Handle
	link, peer     netlink.Link
}

const (
	nodeIface = "vip0"
	peerIface = "peer0"
	peerAddr  = "10.77.0.2/24"
)

// newNS creates a network namespace without leaving the test's thread in
// it; it fails the test (never skips) when the kernel refuses.
func newNS(t *testing.T) netns.NsHandle {
	t.Helper()
	type res struct {
		ns  netns.NsHandle
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			ch <- res{err: err}
			return
		}
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		}
		ch <- res{ns: ns}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("cannot create a network namespace (these tests need root / CAP_SYS_ADMIN): %v", r.err)
	}
	t.Cleanup(func() { r.ns.Close() })
	return r.ns
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{node: newNS(t), wire: newNS(t)}
	r.nodePath = fmt.Sprintf("/proc/self/fd/%d", int(r.node))
	var err error
	if r.nodeNL, err = netlink.NewHandleAt(r.node, unix.NETLINK_ROUTE); err != nil {
		t.Fatalf("netlink in node namespace: %v", err)
	}
	t.Cleanup(r.nodeNL.Close)
	if r.wireNL, err = netlink.NewHandleAt(r.wire, unix.NETLINK_ROUTE); err != nil {
		t.Fatalf("netlink in wire namespace: %v", err)
	}
	t.Cleanup(r.wireNL.Close)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: nodeIface},
		PeerName:      peerIface,
		PeerNamespace: netlink.NsFd(int(r.wire)),
	}
	if err := r.nodeNL.LinkAdd(veth); err != nil {
		t.Fatalf("creating veth pair: %v", err)
	}
	if r.link, err = r.nodeNL.LinkByName(nodeIface); err != nil {
		t.Fatalf("finding %s: %v", nodeIface, err)
	}
	if r.peer, err = r.wireNL.LinkByName(peerIface); err != nil {
		t.Fatalf("finding %s: %v", peerIface, err)
	}
	pa, err := netlink.ParseAddr(peerAddr)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.wireNL.AddrAdd(r.peer, pa); err != nil {
		t.Fatalf("addressing %s: %v", peerIface, err)
	}
	for _, l := range []struct {
		h    *netlink.Handle
		name string
	}{{r.nodeNL, nodeIface}, {r.nodeNL, "lo"}, {r.wireNL, peerIface}, {r.wireNL, "lo"}} {
		link, err := l.h.LinkByName(l.name)
		if err == nil {
			err = l.h.LinkSetUp(link)
		}
		if err != nil {
			t.Fatalf("bringing %s up: %v", l.name, err)
		}
	}
	return r
}

func (r *rig) holder(t *testing.T, o Options) *Holder {
	t.Helper()
	o.NetNS = r.nodePath
	if o.Interface == "" {
		o.Interface = nodeIface
	}
	h, err := NewHolder(o)
	if err != nil {
		t.Fatalf("NewHolder: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// addrOf returns the address prefix on vip0 as the kernel reports it.
func (r *rig) addrOf(t *testing.T, p netip.Prefix) (netlink.Addr, bool) {
	t.Helper()
	addrs, err := r.nodeNL.AddrList(r.link, unix.AF_UNSPEC)
	if err != nil {
		t.Fatalf("AddrList: %v", err)
	}
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		if netip.PrefixFrom(ip.Unmap(), ones) == p {
			return a, true
		}
	}
	return netlink.Addr{}, false
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, within, what, cond)
}

func testVIP(name, addr string) fsm.VIP {
	return fsm.VIP{Name: name, Spec: fsm.VIPSpec{Provider: fsm.ProviderLinux, Address: addr}}
}

// in runs fn inside ns on a locked thread.
func in(t *testing.T, ns netns.NsHandle, fn func() error) {
	t.Helper()
	if err := nsthread.Run(ns, fn); err != nil {
		t.Fatal(err)
	}
}
