// Package cluster owns the Raft node that replicates rafter's
// configuration: hashicorp/raft with raft-boltdb/v2 and file snapshots, the
// TCP / mutual-TLS stream layer (a peer's certificate must name the member
// it claims to be), forming a cluster (bootstrap-expect and
// join through peers' admin APIs), leader-only writes validated before they
// are proposed, linearizable reads, membership changes, status and a
// leadership observer. A log entry that fails its checksum stops this
// node's apply at the last good index and takes the node out of Raft.
//
// It adapts package fsm to raft.FSM; fsm itself stays free of Raft.
// cluster must not import dataplane or cluster/httpapi: the admin API
// calls into cluster, never the other way round (peers' admin APIs are
// reached over HTTP only, during forming).
package cluster
