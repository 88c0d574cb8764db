package dataplane

import "github.com/rafterlb/rafter/fsm"

// ConfigSource is where the data plane reads the replicated configuration.
// The data plane never knows where it comes from (Raft in the agent, a fake
// in tests).
//
// Changed returns a channel that is closed at the next change after the
// call; a consumer calls Changed before Snapshot so that no change between
// the two is missed.
type ConfigSource interface {
	Snapshot() *fsm.Config
	Changed() <-chan struct{}
}
