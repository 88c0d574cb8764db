// Package netns is a test rig of Linux network namespaces for rafter: a
// bridge namespace with a Linux bridge, one namespace per node (n1..nN in
// zones a, b, c...) and one client namespace, each wired to the bridge by a
// veth pair and addressed from 10.99.0.0/24, a subnet that exists only inside
// the rig's namespaces. It starts real `rafter agent` processes inside the
// node namespaces, runs functions and commands inside any namespace, gives an
// HTTP client that dials from the client namespace, cuts the bridge into
// partitions with nftables (silent drops, like a real network failure),
// puts delay and loss on a namespace's egress (Netem: tc netem, or an
// NFQUEUE consumer in the test process where the kernel has no sch_netem)
// and samples which namespaces hold an address, for VIP tests.
//
// It needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), iproute2 and nftables, and
// iptables for the netem emulation; when any of them is missing the test
// fails with the reason, it never skips.
// Everything a rig creates is removed in t.Cleanup, and namespaces left by a
// crashed earlier run (whose process is gone) are removed when a rig starts.
//
// It is test support: of rafter's packages it imports only internal/testutil
// (whose process harness runs the agents) and internal/nsthread (which the
// Linux VIP holder enters namespaces with too), and nothing outside internal/ may
// import it from non-test code.
package netns
