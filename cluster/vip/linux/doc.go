//go:build linux

// Package linux holds Linux virtual IPs on the local node: it adds a VIP's
// address to an interface, announces it with gratuitous ARP, keeps it alive
// while this node's lease on the cluster holds, and removes it.
//
// It owns the node-local half of provider "linux". The leader decides who
// holds each VIP (cluster/vip); the holder named by the assignment calls
// Holder.Claim with the assignment's token. Holder refuses a token older than
// one it has already seen for the VIP, so a late, reordered claim cannot
// take an address back.
//
// Never two holders rests on three things:
//
//   - every address carries a short kernel lifetime (valid_lft =
//     Options.Lifetime), so the kernel removes it by itself when nothing
//     renews it, even after the process was killed or froze;
//   - Lease renews the lifetimes (and Keeper adds an address) only while
//     this node's last answered probe was sent within Options.LeasePeriod,
//     undoes a renewal that completed late, and never renews an address
//     whose lifetime may have run out;
//   - the leader moves a Linux VIP away from an unreachable holder only
//     after Options.HandoverDelay (LeasePeriod + Lifetime + kernel
//     granularity) plus its own margin, and counts a holder's report of
//     not holding it only from a probe written after the holder could last
//     act on a grant: Keeper acts on a grant only while the probe it
//     answered is its newest (Keeper.Report).
//
// FreebindListen lets the dataplane listen on VIP addresses before they
// arrive (IP_FREEBIND), so a VIP serves the moment it is claimed.
//
// The package needs CAP_NET_ADMIN (addresses) and CAP_NET_RAW (ARP); errors
// caused by their absence match ErrPermission and name the capability.
//
// It imports fsm, internal/conf, internal/nsthread, vishvananda/netlink
// (and netns) and mdlayher/arp. It must not import cluster, cluster/vip or
// hashicorp/raft: cluster/vip adapts it to a Mover, and the node wiring
// feeds Lease its quorum contact.
package linux
