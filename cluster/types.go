package cluster

import (
	"errors"
	"time"
)

// Sentinel errors; the admin API maps them to statuses in one place.
var (
	// ErrNotLeader: this node is not the leader; the write must go to the leader.
	ErrNotLeader = errors.New("not the leader")
	// ErrNoLeader: the cluster has no leader at the moment (no quorum or election running).
	ErrNoLeader = errors.New("no leader")
	// ErrTimeout: the operation did not finish within its deadline.
	ErrTimeout = errors.New("timed out")
	// ErrShutdown: the node is stopping.
	ErrShutdown = errors.New("node is shutting down")
)

// Status is one node's view of the cluster, served by GET /v1/status.
type Status struct {
	NodeID       string    `json:"node_id"`
	Zone         string    `json:"zone"`
	State        string    `json:"state"`       // Leader, Follower, Candidate, Shutdown
	Leader       string    `json:"leader"`      // leader node id, "" when none
	LeaderAddr   string    `json:"leader_addr"` // leader's admin address, "" when unknown
	Term         uint64    `json:"term"`
	CommitIndex  uint64    `json:"commit_index"`
	AppliedIndex uint64    `json:"applied_index"`
	LastContact  time.Time `json:"last_contact,omitempty"` // followers: last contact with the leader
	Members      []Member  `json:"members"`
	// Error, when set, is why this node stopped taking part in Raft (a
	// corrupt log entry) and how to recover.
	Error string `json:"error,omitempty"`
}

// Member is one Raft server as seen from this node.
type Member struct {
	ID        string `json:"id"`
	Zone      string `json:"zone,omitempty"`
	RaftAddr  string `json:"raft_addr"`
	AdminAddr string `json:"admin_addr,omitempty"`
	Suffrage  string `json:"suffrage"` // Voter, Nonvoter
	Leader    bool   `json:"leader"`
	// Healthy: for the leader's view, contacted within the failure-detection
	// period; on a follower, only the leader and this node are known healthy.
	Healthy bool `json:"healthy"`
	// Health is "healthy", "unhealthy", or "unknown" for a peer a
	// follower cannot vouch for (only the leader hears from everyone).
	Health      string    `json:"health"`
	LastContact time.Time `json:"last_contact,omitempty"`
}

// PeerInfo is what a node tells another that is forming a cluster with it
// (GET /v1/internal/peer).
type PeerInfo struct {
	ID        string `json:"id"`
	Zone      string `json:"zone"`
	RaftAddr  string `json:"raft_addr"`
	AdminAddr string `json:"admin_addr"`
	DataAddr  string `json:"data_addr,omitempty"`
	// The node's AWS identity (see Config), recorded in its fsm Node.
	InstanceID string `json:"instance_id,omitempty"`
	ENI        string `json:"eni,omitempty"`
	PrivateIP  string `json:"private_ip,omitempty"`
	// Bootstrapped: the node has Raft state (it is, or was, part of a cluster).
	Bootstrapped bool   `json:"bootstrapped"`
	Leader       string `json:"leader,omitempty"`      // leader id as this node knows it
	LeaderAddr   string `json:"leader_addr,omitempty"` // leader's admin address
}
