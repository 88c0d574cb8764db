package cluster

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// raftRule is how one of hashicorp/raft's messages reaches the operator:
// at what level, with which advice, and whether it reports a peer that
// cannot be reached.
type raftRule struct {
	level hclog.Level
	// action is what the operator should do; it goes into the line as
	// "action" so that no WARN or ERROR leaves them guessing.
	action string
	// peerDown: the message says a peer did not answer. It is expected
	// while that peer restarts, so it goes to debug, and peerWatch warns
	// once the peer has stayed unreachable for longer than a restart.
	peerDown bool
}

// raftRules re-levels the messages hashicorp/raft logs as WARN or ERROR
// although they are part of a normal bootstrap, restart or election:
// forming a cluster ("no known peers", "failed to get previous log" on a
// follower that is empty), catching a follower up, a peer that is down
// for a restart, votes refused because a leader exists.
var raftRules = map[string]raftRule{
	"no known peers, aborting election":                   {level: hclog.Debug},
	"not part of stable configuration, aborting election": {level: hclog.Debug},
	"heartbeat timeout reached, not part of a stable configuration or a non-voter, not triggering a leader election": {level: hclog.Debug},
	"failed to get previous log":                    {level: hclog.Debug},
	"previous log term mis-match":                   {level: hclog.Debug},
	"appendEntries rejected, sending older logs":    {level: hclog.Debug},
	"skipping application of old log":               {level: hclog.Debug},
	"duplicate requestVote from":                    {level: hclog.Debug},
	"heartbeat timeout reached, starting election":  {level: hclog.Info},
	"Election timeout reached, restarting election": {level: hclog.Info},
	"new leader elected, stepping down":             {level: hclog.Info},
	"peer has newer term, stopping replication":     {level: hclog.Info},
	"failed to make requestVote RPC":                {level: hclog.Debug, peerDown: true},
	"failed to heartbeat to":                        {level: hclog.Debug, peerDown: true},
	"failed to appendEntries to":                    {level: hclog.Debug, peerDown: true},
	"failed to pipeline appendEntries":              {level: hclog.Debug, peerDown: true},
	"failed to start pipeline replication to":       {level: hclog.Debug, peerDown: true},
	"failed to contact":                             {level: hclog.Debug},
	// One step-down is an election's worth of unavailability, which a
	// stall of a few hundred milliseconds causes; stepDowns warns when they
	// repeat.
	stepDown: {level: hclog.Info},
	"installSnapshot rejected to": {level: hclog.Warn,
		action: "a follower refused a snapshot: read that follower's log for the reason (disk space under --data-dir)"},
	"failed to send snapshot to": {level: hclog.Warn,
		action: "retried automatically; if it repeats, check the follower's disk space and the network between the nodes"},
	"failed to take snapshot": {level: hclog.Error,
		action: "check free space and permissions under --data-dir; the log keeps growing until a snapshot succeeds"},
}

// decodeFailed is raft's message for an incoming connection that broke.
// When the connection was closed (this node stopping, a peer restarting)
// it is part of a normal restart; anything else is a peer speaking in a
// way this node cannot read.
const decodeFailed = "failed to decode incoming command"

// connClosed reports whether a raft message's "error" argument says only
// that the connection went away.
func connClosed(args []any) bool {
	for i := 0; i+1 < len(args); i += 2 {
		if k, _ := args[i].(string); k != "error" {
			continue
		}
		e := fmt.Sprint(args[i+1])
		for _, s := range []string{"transport shutdown", "connection reset", "use of closed network connection", "broken pipe", "EOF"} {
			if strings.Contains(e, s) {
				return true
			}
		}
	}
	return false
}

// stepDown is raft's message when a leader loses contact with a majority.
const stepDown = "failed to contact quorum of nodes, stepping down"

// Leadership flapping: this many step-downs within stepDownWindow are
// worth a warning (at most one per window).
const (
	stepDownsToWarn = 3
	stepDownWindow  = 5 * time.Minute
)

// stepDowns counts a leader's step-downs and says when they repeat.
type stepDowns struct {
	now func() time.Time

	mu     sync.Mutex
	times  []time.Time
	warned time.Time
}

// record notes one step-down; it returns how many happened within
// stepDownWindow when that is worth a warning now, else 0.
func (s *stepDowns) record() int {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.times[:0]
	for _, t := range s.times {
		if now.Sub(t) < stepDownWindow {
			kept = append(kept, t)
		}
	}
	s.times = append(kept, now)
	if len(s.times) < stepDownsToWarn || (!s.warned.IsZero() && now.Sub(s.warned) < stepDownWindow) {
		return 0
	}
	s.warned = now
	return len(s.times)
}

// raftRuleFor returns the rule for msg. Raft messages at WARN or above
// with no rule of their own keep their level and get generic advice.
func raftRuleFor(level hclog.Level, msg string, args []any) raftRule {
	if msg == decodeFailed {
		if connClosed(args) {
			return raftRule{level: hclog.Debug}
		}
		return raftRule{level: level, action: "a peer sent what this node cannot read: check that every node runs the same rafter version and that nothing else connects to the raft port"}
	}
	if r, ok := raftRules[msg]; ok {
		if r.level == hclog.NoLevel {
			r.level = level
		}
		return r
	}
	for _, prefix := range []string{"rejecting vote request since ", "rejecting pre-vote request since "} {
		if strings.HasPrefix(msg, prefix) {
			return raftRule{level: hclog.Debug}
		}
	}
	r := raftRule{level: level}
	if level >= hclog.Warn {
		r.action = "reported by the raft library: check `rafter status` on every node and the disk under --data-dir; docs/operations.md says how to replace a node"
	}
	return r
}

// Peer reachability: how long a peer may stay unreachable before it is
// worth a warning (longer than a restart takes), and how often the warning
// repeats while it stays so.
const (
	peerDownWarnAfter = 30 * time.Second
	peerDownRepeat    = 5 * time.Minute
	// peerDownGap: failures further apart than this start a new streak
	// (raft retries an unreachable peer at least every few hundred ms).
	peerDownGap = 5 * time.Second
)

// peerWatch follows failed exchanges with each peer and says when one
// has failed for longer than a restart takes.
type peerWatch struct {
	now func() time.Time

	mu      sync.Mutex
	streaks map[string]*peerStreak
}

type peerStreak struct {
	first, last, warned time.Time
}

func newPeerWatch(now func() time.Time) *peerWatch {
	return &peerWatch{now: now, streaks: map[string]*peerStreak{}}
}

// failed records a failed exchange with peer; it returns how long the
// peer has been failing when that is worth a warning now, else 0.
func (w *peerWatch) failed(peer string) time.Duration {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.streaks[peer]
	if s == nil || now.Sub(s.last) > peerDownGap {
		if s == nil {
			// Forget peers not heard of for long: the map stays as small
			// as the set of peers recently failing.
			for p, old := range w.streaks {
				if now.Sub(old.last) > peerDownRepeat {
					delete(w.streaks, p)
				}
			}
		}
		s = &peerStreak{first: now}
		w.streaks[peer] = s
	}
	s.last = now
	down := now.Sub(s.first)
	if down < peerDownWarnAfter || (!s.warned.IsZero() && now.Sub(s.warned) < peerDownRepeat) {
		return 0
	}
	s.warned = now
	return down
}

// raftPeer names the peer of a raft message from its arguments: "peer"
// (an address or a raft.Server) or "target" (a raft.Server).
func raftPeer(args []any) string {
	for i := 0; i+1 < len(args); i += 2 {
		k, _ := args[i].(string)
		if k != "peer" && k != "target" {
			continue
		}
		switch v := args[i+1].(type) {
		case raft.Server:
			return string(v.Address)
		case raft.ServerAddress:
			return string(v)
		case string:
			return v
		}
	}
	return ""
}
