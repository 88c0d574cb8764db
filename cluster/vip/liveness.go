package vip

import (
	"errors"
	"sync"
	"time"

	"github.com/rafterlb/rafter/cluster"
)

// StatusSource is what StatusLiveness needs of the cluster node.
type StatusSource interface {
	Status() cluster.Status
}

// DefaultDetectAfter is how long the leader must have had no Raft contact
// with a node before StatusLiveness calls it dead. It equals Raft's
// heartbeat timeout: the time after which followers start an election.
const DefaultDetectAfter = 500 * time.Millisecond

// statusMaxAge is how long one Status answer is reused: a plan asks for
// every node in a row, and Status reads Raft's configuration each time.
const statusMaxAge = 10 * time.Millisecond

// StatusLiveness implements Liveness from the leader's Raft heartbeat
// observations (cluster.Node.Status): a member is alive while its last
// contact is within DetectAfter. Only the leader hears from every member;
// on a follower every other node except the leader counts as dead, which
// is harmless because only the leader acts on liveness.
//
// Raft reports a failed heartbeat when the RPC fails: at once for a
// crashed process (connection refused), but only after the transport's I/O
// timeout (1s by default) on a silent partition, so there detection takes
// about that timeout rather than DetectAfter.
type StatusLiveness struct {
	src         StatusSource
	detectAfter time.Duration
	now         func() time.Time

	mu      sync.Mutex
	fetched time.Time
	status  cluster.Status
	state   map[string]liveState
}

type liveState struct {
	alive bool
	since time.Time
}

// NewStatusLiveness returns a Liveness over src. detectAfter 0 means
// DefaultDetectAfter; now nil means time.Now.
func NewStatusLiveness(src StatusSource, detectAfter time.Duration, now func() time.Time) (*StatusLiveness, error) {
	if src == nil {
		return nil, errors.New("vip: liveness: status source required")
	}
	if detectAfter < 0 {
		return nil, errors.New("vip: liveness.detect_after: must not be negative")
	}
	if detectAfter == 0 {
		detectAfter = DefaultDetectAfter
	}
	if now == nil {
		now = time.Now
	}
	return &StatusLiveness{src: src, detectAfter: detectAfter, now: now, state: map[string]liveState{}}, nil
}

// Alive reports whether nodeID is alive. For a live node since is when this
// StatusLiveness first saw it alive (after it was last dead); for a dead one
// its last contact, or when it was first seen dead if that is unknown.
func (l *StatusLiveness) Alive(nodeID string) (bool, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.fetched.IsZero() || now.Sub(l.fetched) >= statusMaxAge || now.Before(l.fetched) {
		l.status, l.fetched = l.src.Status(), now
	}
	alive, lastContact := l.judge(nodeID, now)
	prev, seen := l.state[nodeID]
	switch {
	case seen && prev.alive == alive && (alive || lastContact.IsZero() || !lastContact.After(prev.since)):
		return prev.alive, prev.since
	case alive:
		prev = liveState{alive: true, since: now}
	case !lastContact.IsZero():
		prev = liveState{alive: false, since: lastContact}
	default:
		prev = liveState{alive: false, since: now}
	}
	l.state[nodeID] = prev
	return prev.alive, prev.since
}

func (l *StatusLiveness) judge(id string, now time.Time) (alive bool, lastContact time.Time) {
	st := l.status
	if st.State == "Shutdown" {
		return false, time.Time{}
	}
	if id == st.NodeID {
		return true, now
	}
	for _, m := range st.Members {
		if m.ID != id {
			continue
		}
		if st.State != "Leader" {
			return m.Healthy, m.LastContact
		}
		return !m.LastContact.IsZero() && now.Sub(m.LastContact) < l.detectAfter, m.LastContact
	}
	return false, time.Time{}
}
