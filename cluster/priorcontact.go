package cluster

import (
	"time"

	"github.com/hashicorp/raft"
)

// PriorContact is when this node last heard from any leader of a term
// before the current leader's: a bound a new leader uses to learn, soon
// after its election, when the lease of a node it has not heard from can
// have started at the latest (probe.TrackerConfig.Voters).
//
// Why it bounds a lease: every probe answer a leader gave was confirmed
// by a quorum whose members each accepted a heartbeat from that leader
// after the probe was sent. Every majority of voters shares a member with
// that quorum, so for any majority the latest of its members' prior
// contacts is after the send time of any answered probe of an earlier
// term.
type PriorContact struct {
	Leader string // the leader this bound is for
	Term   uint64 // its term
	At     time.Time
}

// priorState is observeLoop's record of leader changes; only that
// goroutine touches it.
type priorState struct {
	known   bool   // a leader change has been seen since the start or a loss of observations
	last    string // the leader last observed ("" for none)
	inGap   bool   // no leader since a leader was observed
	at      time.Time
	dropped uint64
}

// notePrior follows one leader observation. A gap (no leader) after a
// leader observed by this process starts the bound: Raft's last contact
// then is at least the last message from that leader (later messages
// come only from a new leader, or a vote this node granted, both later, so
// the bound only grows). A gap after this node led starts at the moment
// seen, because a leader's own acknowledgement has no record. The bound is
// published when the next leader appears, unless observations were lost
// or more are waiting: then the term read now may not be that leader's.
func (n *Node) notePrior(leaderID string) {
	s := &n.prior
	if d := n.observer.GetNumDropped(); d != s.dropped {
		s.dropped = d
		*s = priorState{dropped: d}
	}
	n.priorContact.Store(nil)
	if leaderID == "" {
		if !s.inGap && s.known && s.last != "" {
			s.inGap = true
			if s.last == n.cfg.NodeID {
				s.at = time.Now()
			} else {
				s.at = n.raft.LastContact()
			}
		}
		s.last = ""
		return
	}
	if s.inGap && !s.at.IsZero() {
		term := n.raft.CurrentTerm()
		if len(n.obsCh) == 0 && n.observer.GetNumDropped() == s.dropped {
			n.priorContact.Store(&PriorContact{Leader: leaderID, Term: term, At: s.at})
		}
	}
	s.inGap, s.at = false, time.Time{}
	s.last, s.known = leaderID, true
}

// PriorContact returns the bound for the current leader; ok is false when
// this process did not see the gap before it, or cannot be sure of the
// pairing of bound and term.
func (n *Node) PriorContact() (PriorContact, bool) {
	p := n.priorContact.Load()
	if p == nil || len(n.obsCh) != 0 || n.raft.CurrentTerm() != p.Term {
		return PriorContact{}, false
	}
	if _, id := n.raft.LeaderWithID(); string(id) != p.Leader {
		return PriorContact{}, false
	}
	return *p, true
}

// Voters lists the voting members of the latest Raft configuration.
func (n *Node) Voters() []string {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	var out []string
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			out = append(out, string(s.ID))
		}
	}
	return out
}
