// Package vip decides which node holds each virtual IP and has the leader
// make the cloud agree.
//
// The Controller runs on every node and acts only while its node leads. It
// writes assignments ({holder, token, since}) through Raft first — the token
// is the Raft index of that entry — and only then asks a Mover to move the
// address, so a stale actor can always be recognised by its token. It
// decides:
//
//   - initial: a VIP without a holder goes to its home node when that node
//     is live, else to a candidate;
//   - holder lost: no Raft contact for the liveness detection period, removed
//     from the cluster, or its zone evacuated: the VIP goes to a live
//     candidate, preferring another zone than the lost holder's and the node
//     holding the fewest VIPs;
//   - failback: once the home node has been live for the hold-down period
//     the VIP returns home (unless spec.failback is false);
//   - drift: a reconciler compares what the cloud reports with the
//     assignments, rate limited, and repairs a VIP moved by hand.
//
// Fence is the guard every Mover puts in front of a cloud write: the local
// node must still lead (VerifyLeader) and the token must not be older than
// the assignment in the local Config, so a deposed leader's late call is
// refused with ErrStaleToken.
//
// The package imports fsm, cluster/leading, cluster/probe and
// internal/conf, not cluster itself: the node reaches it through the small
// interfaces it declares. It must not import hashicorp/raft, the AWS SDK
// or cluster/awsec2: cloud movers live in subpackages (vip/aws) and are
// handed in as Movers. Nothing in cluster or dataplane may import it.
package vip
