package httpapi

import "github.com/rafterlb/rafter/cluster"

// The Raft node is the Store the agent serves this API from.
var _ Store = (*cluster.Node)(nil)
