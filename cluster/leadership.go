package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rafterlb/rafter/cluster/leading"
)

// healthyWithin is how recently the leader must have reached a peer for it
// to count as healthy: a few missed heartbeats, not one.
const healthyWithin = 2 * time.Second

// WatchLeadership reports this node's leadership: the current value first,
// then every change. Each gain of leadership is reported with its Raft
// term, so a reader that sees two reports of leadership in a row knows by
// their terms whether leadership was lost and regained in between. Only
// the latest report is kept for a slow reader, so a consumer always ends on
// the truth. The channel is closed by cancel or when the node closes;
// cancel may be called more than once.
func (n *Node) WatchLeadership() (ch <-chan leading.Leadership, cancel func()) {
	c := make(chan leading.Leadership, 1)
	n.mu.Lock()
	if n.closing {
		n.mu.Unlock()
		c <- leading.Leadership{}
		close(c)
		return c, func() {}
	}
	id := n.nextSub
	n.nextSub++
	n.subs[id] = c
	c <- n.leadership
	n.mu.Unlock()
	return c, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if _, ok := n.subs[id]; ok {
			delete(n.subs, id)
			close(c)
		}
	}
}

// publishLeadership replaces any unread report in each subscriber's buffer
// with l; it never blocks on a slow subscriber.
func (n *Node) publishLeadership(l leading.Leadership) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.leader.Store(l.Leader)
	n.leadership = l
	for _, c := range n.subs {
		select {
		case <-c:
		default:
		}
		c <- l
	}
}

func (n *Node) closeSubscribers() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.leader.Store(false)
	n.leadership = leading.Leadership{}
	for id, c := range n.subs {
		select {
		case <-c:
		default:
		}
		c <- leading.Leadership{}
		close(c)
		delete(n.subs, id)
	}
}

// leadershipLoop follows Raft's leadership notifications, runs the
// leader's duties once per term and tells subscribers.
//
// Raft's LeaderCh keeps only its latest value, so a loss and regain
// between two reads shows as true, true and the new term would go
// unnoticed. This loop reads Config.NotifyCh instead, through drainNotify,
// which stamps every gain with its term: a report of leadership in a term
// other than the running one ends that term before the new one starts,
// however many changes were passed over meanwhile.
func (n *Node) leadershipLoop() {
	latest := make(chan leading.Leadership, 1)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		n.drainNotify(latest)
	}()
	defer func() { <-drained }()

	var (
		stop func() // ends the current leader term's duties and waits for them
		term uint64 // the term whose duties run, while stop is set
	)
	endTerm := func() {
		if stop != nil {
			stop()
			stop, term = nil, 0
		}
		n.health.reset()
	}
	defer endTerm()
	for {
		select {
		case <-n.ctx.Done():
			return
		case l := <-latest:
			if stop != nil && (!l.Leader || l.Term != term) {
				n.log.Info("lost leadership", "node", n.cfg.NodeID, "term", term)
				// This node led after whoever it had seen leading
				// before: should it lead again next, it has no
				// predecessor to judge by.
				n.lastLeader.Store(nil)
				endTerm()
				n.publishLeadership(leading.Leadership{})
			}
			if !l.Leader || stop != nil {
				continue
			}
			n.health.begin(time.Now())
			n.notePredecessor()
			ctx, cancel := context.WithCancel(n.ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				n.leaderDuties(ctx, l.Term)
			}()
			stop, term = func() { cancel(); <-done }, l.Term
			n.log.Info("became leader", "node", n.cfg.NodeID, "term", l.Term)
			n.publishLeadership(l)
		}
	}
}

// drainNotify takes each change from Raft's NotifyCh as soon as Raft
// hands it over and leaves only the latest in latest (it is the only
// sender), so Raft, which blocks on NotifyCh, never waits for the leader's
// duties to stop: those may themselves wait for Raft. Raft cannot change
// its term while it waits to hand over a gain, nor lead again before the
// loss has been taken, so the term read just after a gain is the term
// gained, or (when leadership is already being lost) a later one in which
// this node does not lead; either way each gain is stamped with a term
// larger than the gain before.
func (n *Node) drainNotify(latest chan leading.Leadership) {
	for {
		select {
		case <-n.ctx.Done():
			return
		case v := <-n.notifyCh:
			l := leading.Leadership{}
			if v {
				l = leading.Leadership{Leader: true, Term: n.raft.CurrentTerm()}
			}
			select {
			case <-latest:
			default:
			}
			latest <- l
		}
	}
}

// Predecessor is the node that led before this one and when this node
// last heard from it.
type Predecessor struct {
	ID          string
	LastContact time.Time
}

// notePredecessor records, as this node becomes leader, who led before and
// Raft's last contact: a follower's last message from its leader (or a
// vote it granted since, which is later), so at least as late as the
// predecessor's last sign of life as this node saw it.
func (n *Node) notePredecessor() {
	p := &Predecessor{LastContact: n.raft.LastContact()}
	if id := n.lastLeader.Load(); id != nil {
		p.ID = *id
	}
	n.predecessor.Store(p)
}

// Predecessor reports, while this node leads, the previous leader it knew
// of and when it last heard from it; ok is false when it does not lead or
// knows of none. A new leader can judge that node's liveness from it
// instead of waiting a full detection period from the start of its term;
// it says nothing of what the predecessor may still believe, so it is no
// ground for safety decisions.
func (n *Node) Predecessor() (p Predecessor, ok bool) {
	if !n.leader.Load() {
		return Predecessor{}, false
	}
	pp := n.predecessor.Load()
	if pp == nil || pp.ID == "" || pp.LastContact.IsZero() {
		return Predecessor{}, false
	}
	return *pp, true
}

// leaderDuties runs once per leadership term: a barrier so this leader has
// applied everything its predecessors committed, then the fsm Node records.
func (n *Node) leaderDuties(ctx context.Context, term uint64) {
	if err := n.awaitRetry(ctx, func() raft.Future { return n.raft.Barrier(n.cfg.ElectionTimeout * 4) }); err != nil {
		if ctx.Err() != nil {
			// The term ended first; the next leader runs its own barrier.
			n.log.Info("leader barrier abandoned: the leadership term ended", "node", n.cfg.NodeID, "err", err)
			return
		}
		n.log.Warn("leader barrier failed", "node", n.cfg.NodeID, "err", err, "action", "none if a new leader follows; otherwise check the network between the nodes")
		return
	}
	n.readyTerm.Store(term)
	n.reconcileNodes(ctx)
}

// awaitRetry runs a Raft operation until it succeeds, leadership ends or
// ctx is cancelled.
func (n *Node) awaitRetry(ctx context.Context, op func() raft.Future) error {
	backoff := 50 * time.Millisecond
	for {
		err := n.await(ctx, op())
		if err == nil || ctx.Err() != nil || !n.IsLeader() {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(backoff*2, time.Second)
	}
}

// observeLoop feeds the leader's view of peer health from Raft's
// heartbeat observations.
func (n *Node) observeLoop() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case o := <-n.obsCh:
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				n.health.failed(string(d.PeerID), d.LastContact)
			case raft.ResumedHeartbeatObservation:
				n.health.resumed(string(d.PeerID))
			case raft.LeaderObservation:
				n.metrics.leaderChanges.Inc()
				n.notePrior(string(d.LeaderID))
				if id := string(d.LeaderID); id != "" && id != n.cfg.NodeID {
					n.lastLeader.Store(&id)
				}
				if string(d.LeaderID) != n.cfg.NodeID {
					n.metrics.raft.notLeading()
				}
			}
		case o := <-n.peerObsCh:
			if d, ok := o.Data.(raft.PeerObservation); ok {
				if d.Removed {
					n.metrics.raft.peerLeft(string(d.Peer.ID))
				} else {
					n.metrics.raft.peerJoined(string(d.Peer.ID))
				}
			}
		}
	}
}

// peerHealth is the leader's record of peers whose heartbeats fail.
// Raft reports the first failure and the recovery, so a peer absent from
// the map is being heartbeated successfully.
type peerHealth struct {
	mu      sync.Mutex
	failing map[string]time.Time // peer id -> last successful contact
	since   time.Time            // when this node's current term began; zero when not leading
}

// begin records that this node's term began at now. Until healthyWithin
// has passed, a peer absent from failing may simply not have failed a
// heartbeat yet.
func (h *peerHealth) begin(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.since = now
}

// leadingSince is when the current term began (zero when not leading).
func (h *peerHealth) leadingSince() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.since
}

func (h *peerHealth) init() { h.failing = make(map[string]time.Time) }

func (h *peerHealth) failed(id string, lastContact time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failing[id] = lastContact
}

func (h *peerHealth) resumed(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.failing, id)
}

func (h *peerHealth) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.failing)
	h.since = time.Time{}
}

// lastContact returns when the leader last reached id (now, when its
// heartbeats are succeeding).
func (h *peerHealth) lastContact(id string, now time.Time) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t, ok := h.failing[id]; ok {
		return t
	}
	return now
}
