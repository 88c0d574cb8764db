package cluster

import (
	"errors"

	"github.com/rafterlb/rafter/api"
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
	// ErrTooSoon: the leader took office too recently to know which
	// members answer it; a change of votes waits for that.
	ErrTooSoon = errors.New("too soon after taking office")
)

// Status (GET /v1/status), Member and PeerInfo (what nodes forming a
// cluster tell each other, and the body of POST /v1/nodes) are wire types
// of the admin API, defined once in package api.
type (
	Status   = api.Status
	Member   = api.Member
	PeerInfo = api.PeerInfo
)
