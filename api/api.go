package api

import (
	"encoding/json"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail describes one error; Field is the offending field path for
// validation errors ("spec.port", "documents[2].spec.port", "cas").
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// Status is one node's view of the cluster (GET /v1/status).
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

// Member is one Raft server as seen from the answering node.
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

// PeerInfo is what a node tells another that forms a cluster with it
// (GET /v1/internal/peer), and the body of POST /v1/nodes
// (`rafter node join`).
type PeerInfo struct {
	ID        string `json:"id"`
	Zone      string `json:"zone"`
	RaftAddr  string `json:"raft_addr"`
	AdminAddr string `json:"admin_addr"`
	DataAddr  string `json:"data_addr,omitempty"`
	// The node's AWS identity, recorded in its node record.
	InstanceID string `json:"instance_id,omitempty"`
	ENI        string `json:"eni,omitempty"`
	PrivateIP  string `json:"private_ip,omitempty"`
	// Role is "voter" (also when empty) or "proxy": a non-voting member
	// that receives the log and serves but never counts toward quorum.
	Role string `json:"role,omitempty"`
	// Bootstrapped: the node has Raft state (it is, or was, part of a cluster).
	Bootstrapped bool   `json:"bootstrapped"`
	Leader       string `json:"leader,omitempty"`      // leader id as this node knows it
	LeaderAddr   string `json:"leader_addr,omitempty"` // leader's admin address
}

// SuffrageChange is the body of POST /v1/nodes/promote and
// POST /v1/nodes/demote: the members whose vote changes together, so that
// the voter count goes from one odd number to the next (3 to 5 takes two
// proxies promoted at once).
type SuffrageChange struct {
	IDs []string `json:"ids"`
}

// SuffrageResult answers a promotion or demotion: the voters afterwards.
type SuffrageResult struct {
	Index  uint64   `json:"index"`
	Voters []string `json:"voters"`
}

// Item is one managed object as GET answers it. ModifyIndex is always
// present (fsm.Object omits a zero one). Assignment is set for VIPs that
// have a holder.
type Item struct {
	Kind        fsm.Kind        `json:"kind"`
	Name        string          `json:"name"`
	Spec        json.RawMessage `json:"spec"`
	ModifyIndex uint64          `json:"modify_index"`
	Assignment  *VIPAssignment  `json:"assignment,omitempty"`
	// Status is a rollout's progress (rollouts only).
	Status *fsm.RolloutStatus `json:"status,omitempty"`
	// Certificate describes a certificate (certificates only).
	Certificate *CertificateView `json:"certificate,omitempty"`
}

// RolloutActionResult answers POST /v1/rollouts/{name}/{pause,resume,
// promote,abort}: the index of the write and the status it left.
type RolloutActionResult struct {
	Index  uint64             `json:"index"`
	Status *fsm.RolloutStatus `json:"status,omitempty"`
}

// VIPAssignment is a VIP's current holder. Token is the Raft index of the
// entry that made the assignment; Settled: the hand-over to Holder
// completed (linux: every other node let go).
type VIPAssignment struct {
	Holder  string    `json:"holder"`
	Token   uint64    `json:"token"`
	Since   time.Time `json:"since"`
	Reason  string    `json:"reason,omitempty"`
	Settled bool      `json:"settled,omitempty"`
}

// List answers GET /v1/{kinds}.
type List struct {
	Items []Item `json:"items"`
	Index uint64 `json:"index"`
}

// WriteResult answers writes: the Raft index at which the write applied.
type WriteResult struct {
	Index uint64 `json:"index"`
}

// ApplyResult answers POST /v1/apply. Index is absent on a dry run, which
// writes nothing, and when the manifest changes nothing.
type ApplyResult struct {
	Index   uint64       `json:"index,omitempty"`
	Changes []fsm.Change `json:"changes"`
}

// LeaseGrant is the body of POST /v1/leases.
type LeaseGrant struct {
	TTL fsm.Duration `json:"ttl"`
}

// Lease answers POST /v1/leases (with Index) and
// PUT /v1/leases/{id}/keepalive (without).
type Lease struct {
	ID    uint64       `json:"id"`
	TTL   fsm.Duration `json:"ttl"`
	Index uint64       `json:"index,omitempty"`
}

// BackendRegistration is the body of PUT and DELETE
// /v1/pools/{pool}/backends/{addr}. Weight absent means 1.
type BackendRegistration struct {
	Lease  uint64 `json:"lease"`
	Weight *int   `json:"weight,omitempty"`
	Zone   string `json:"zone,omitempty"`
}

// MoveRequest is the body of POST /v1/vips/{name}/move.
type MoveRequest struct {
	To string `json:"to"`
}

// MoveResult answers it with the new assignment.
type MoveResult struct {
	Assignment fsm.Assignment `json:"assignment"`
	Index      uint64         `json:"index"`
}

// Zone is one availability zone as GET /v1/zones answers it. A zone is
// known from a node's --zone, a pool backend's zone or an
// evacuate/restore; ModifyIndex is 0 for a zone never evacuated nor
// restored.
type Zone struct {
	Zone        string   `json:"zone"`
	Evacuated   bool     `json:"evacuated"`
	ModifyIndex uint64   `json:"modify_index"`
	Nodes       []string `json:"nodes"`    // ids of the members in the zone, sorted
	Backends    int      `json:"backends"` // pool backends in the zone, over every pool
}

// ZoneList answers GET /v1/zones.
type ZoneList struct {
	Items []Zone `json:"items"`
	Index uint64 `json:"index"`
}

// ZoneResult answers POST and DELETE /v1/zones/{zone}/evacuate.
//
// Evacuating a zone is never refused, even when it leaves a pool with no
// backend to send to: the lever is pulled during incidents, when the zone
// may really be gone, and a guard rail that blocks it would do more harm
// than the 503s it prevents. Warning says so instead, and StrandedPools
// names the pools that now answer 503 (no backend outside the evacuated
// zones and not draining).
type ZoneResult struct {
	Index         uint64   `json:"index"`
	Zone          string   `json:"zone"`
	Evacuated     bool     `json:"evacuated"`
	Warning       string   `json:"warning,omitempty"`
	StrandedPools []string `json:"stranded_pools,omitempty"`
}
