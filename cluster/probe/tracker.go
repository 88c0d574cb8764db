package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/rafterlb/rafter/cluster/leading"
	"github.com/rafterlb/rafter/internal/conf"
)

// ErrNotLeader: this node does not lead, or a quorum did not confirm that
// it does; the prober tries the leader again at its next interval.
var ErrNotLeader = errors.New("probe: not the leader")

// ErrStale: the probe is not newer than one already recorded from the same
// process; it timed out at the node, which no longer waits for it.
var ErrStale = errors.New("probe: stale probe")

// TrackerConfig configures a Tracker.
type TrackerConfig struct {
	NodeID string
	// VerifyLeader asks a quorum whether this node still leads
	// (cluster.Node.VerifyLeader).
	VerifyLeader func(ctx context.Context) error
	// Granter computes the grants of each answer; nil: none. SetGranter
	// may set it later.
	Granter Granter
	// ConfirmTimeout bounds one confirmation round and a probe's wait for
	// one (default 1s).
	ConfirmTimeout time.Duration
	// PriorQuiet is Raft's heartbeat timeout, or 0. Every probe answer an
	// earlier leader gave was confirmed by a quorum, and a quorum that
	// elected this leader includes one of those nodes, which voted only
	// after hearing nothing for that long. So every lease an earlier
	// leader granted started at least PriorQuiet before this term began,
	// and a node not heard in this term counts as last heard then.
	PriorQuiet time.Duration
	// Voters lists the voting members (cluster.Node.Voters), read as each
	// term starts; nil: the bound below is not used. With it, once a
	// majority of voters has sent its Prior (its last contact with a
	// leader of an earlier term) in this term, a node not heard from
	// counts as last heard at the earliest instant by which every node of
	// some majority had last heard from an earlier leader, when that is
	// before the start of the term less PriorQuiet: every answer an
	// earlier leader gave was confirmed by a quorum that shares a member
	// with every majority, each of which accepted that leader's heartbeat
	// after the answered probe was sent. So a new leader may hand on the
	// previous leader's VIPs as if it had led all along, however long its
	// election took. Membership changes one server at a time, so the
	// majorities of the configurations in between share members too.
	Voters func() []string
	// GrantLife is how long after a probe arrived its node may still act
	// on the grants of the answer: it adds an address only while that
	// probe, sent before it arrived, is at most the lease period old, so
	// the lease period plus the hand-over margin. A grant stops counting
	// once a newer probe of the same process arrived, or once GrantLife
	// has passed, so a process that stopped probing (an upgrade's old one
	// that exited) holds nothing up. 0: only a newer probe ends it.
	GrantLife time.Duration
	Now       func() time.Time
	Logger    *slog.Logger
}

// Tracker is the leader's side of the protocol: it records every node's
// probes for the current term and answers them once a quorum has confirmed
// this node leads in a round that began after the probe arrived.
type Tracker struct {
	cfg TrackerConfig

	mu        sync.Mutex
	granter   Granter
	leading   bool
	term      uint64 // counts terms, so a waiter notices a new one
	raftTerm  uint64 // the Raft term of the current term
	termStart time.Time
	reports   map[string]Report
	// latest: per node, per incarnation, the highest Seq recorded.
	latest map[string]map[uint64]uint64
	// granted: per node, per VIP, per incarnation, the highest Seq whose
	// answer granted that VIP and when it arrived. Written together with computing the grants
	// (under grantMu), so no other node's grant is computed in between.
	granted map[string]map[string]map[uint64]grantMark
	grantMu sync.Mutex           // held around Granter.Grants and recording them; before mu
	voters  []string             // of this term (TrackerConfig.Voters)
	priors  map[string]time.Time // node -> latest instant its Prior can be, on this clock
	wake    chan struct{}        // buffered: a probe is waiting for a round
	// Rounds are numbered as they start; a probe needs one numbered above
	// the count at its arrival.
	started   uint64
	confirmed uint64 // highest successful round of this term
	failed    uint64 // highest failed round of this term
	lastErr   error
	roundDone chan struct{} // closed and replaced when a round ends
}

// NewTracker checks cfg and returns an idle Tracker; Run makes it follow
// leadership.
func NewTracker(cfg TrackerConfig) (*Tracker, error) {
	switch {
	case cfg.NodeID == "":
		return nil, errors.New("probe: tracker.node_id: required")
	case cfg.VerifyLeader == nil:
		return nil, errors.New("probe: tracker.verify_leader: required")
	}
	if err := conf.NotNegative(
		conf.Field("probe: tracker.confirm_timeout", cfg.ConfirmTimeout),
		conf.Field("probe: tracker.prior_quiet", cfg.PriorQuiet),
	); err != nil {
		return nil, err
	}
	conf.Default(&cfg.ConfirmTimeout, time.Second)
	conf.Now(&cfg.Now)
	conf.Logger(&cfg.Logger)
	return &Tracker{
		cfg:       cfg,
		granter:   cfg.Granter,
		reports:   map[string]Report{},
		wake:      make(chan struct{}, 1),
		roundDone: make(chan struct{}),
	}, nil
}

// SetGranter sets the Granter consulted for every answer.
func (t *Tracker) SetGranter(g Granter) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.granter = g
}

// Run follows leadership (cluster.Node.WatchLeadership) until ctx ends or
// the channel closes. Each term starts with no reports: every node counts
// as last heard when the term began. That holds after leadership was lost
// and regained too: another leader may have answered probes in between.
func (t *Tracker) Run(ctx context.Context, leadership <-chan leading.Leadership) error {
	return leading.Follow(ctx, leadership, t.startTerm, nil)
}

func (t *Tracker) startTerm(ctx context.Context, raftTerm uint64) func() {
	var voters []string
	if t.cfg.Voters != nil {
		voters = t.cfg.Voters()
	}
	t.mu.Lock()
	t.voters = voters
	t.priors = map[string]time.Time{}
	t.leading = true
	t.term++
	t.raftTerm = raftTerm
	t.termStart = t.cfg.Now()
	t.reports = map[string]Report{}
	t.latest = map[string]map[uint64]uint64{}
	t.granted = map[string]map[string]map[uint64]grantMark{}
	t.started, t.confirmed, t.failed, t.lastErr = 0, 0, 0, nil
	term := t.term
	t.mu.Unlock()

	tctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.confirmLoop(tctx, term)
	}()
	return func() {
		cancel()
		<-done
		t.mu.Lock()
		t.leading = false
		t.reports = map[string]Report{}
		t.latest = map[string]map[uint64]uint64{}
		t.granted = map[string]map[string]map[uint64]grantMark{}
		t.endRound()
		t.mu.Unlock()
	}
}

// confirmLoop runs one VerifyLeader round whenever probes wait; rounds
// run back to back while they keep arriving, and each serves every probe
// that arrived before it started.
func (t *Tracker) confirmLoop(ctx context.Context, term uint64) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.wake:
		}
		t.mu.Lock()
		if t.term != term {
			t.mu.Unlock()
			return
		}
		t.started++
		n := t.started
		t.mu.Unlock()

		rctx, cancel := context.WithTimeout(ctx, t.cfg.ConfirmTimeout)
		err := t.cfg.VerifyLeader(rctx)
		cancel()

		t.mu.Lock()
		if t.term == term {
			if err == nil {
				t.confirmed = n
			} else {
				t.failed, t.lastErr = n, err
			}
			t.endRound()
		}
		t.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			t.cfg.Logger.Debug("leadership not confirmed for probes", "err", err)
		}
	}
}

// endRound wakes every waiter; t.mu is held.
func (t *Tracker) endRound() {
	close(t.roundDone)
	t.roundDone = make(chan struct{})
}

// Handle records req as arrived now and answers it once a quorum confirms
// this node leads in a round that started after that.
func (t *Tracker) Handle(ctx context.Context, req Request) (Response, error) {
	if req.Node == "" {
		return Response{}, errors.New("probe: node: required")
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.ConfirmTimeout)
	defer cancel()
	t.mu.Lock()
	if !t.leading {
		t.mu.Unlock()
		return Response{}, ErrNotLeader
	}
	if req.Seq != 0 {
		seqs := t.latest[req.Node]
		if last, ok := seqs[req.Incarnation]; ok && req.Seq <= last {
			t.mu.Unlock()
			return Response{}, fmt.Errorf("%w: probe %d of %s arrived after probe %d", ErrStale, req.Seq, req.Node, last)
		}
		if seqs == nil {
			seqs = map[uint64]uint64{}
			t.latest[req.Node] = seqs
		}
		seqs[req.Incarnation] = req.Seq
	}
	term, need := t.term, t.started+1
	arrived := t.cfg.Now()
	if p := req.Prior; p != nil && p.Leader == t.cfg.NodeID && p.Term == t.raftTerm {
		// The node last heard from an earlier leader Ago before it sent
		// this probe, which was no later than now.
		at := arrived.Add(-p.Ago)
		if old, ok := t.priors[req.Node]; !ok || at.Before(old) {
			t.priors[req.Node] = at
		}
	}
	t.reports[req.Node] = Report{
		Arrived:  arrived,
		Reported: true,
		Holding:  maps.Clone(req.Holding),
		Leaving:  req.Leaving,
	}
	for {
		switch {
		case t.term != term || !t.leading:
			t.mu.Unlock()
			return Response{}, fmt.Errorf("%w: leadership changed", ErrNotLeader)
		case t.confirmed >= need:
			g := t.granter
			t.mu.Unlock()
			resp := Response{Leader: t.cfg.NodeID}
			if g != nil {
				var err error
				if resp.Grants, err = t.grant(g, term, req, arrived); err != nil {
					return Response{}, err
				}
			}
			return resp, nil
		case t.failed >= need:
			err := t.lastErr
			t.mu.Unlock()
			return Response{}, fmt.Errorf("%w: %w", ErrNotLeader, err)
		}
		done := t.roundDone
		if t.started < need {
			// No round that can answer this probe has started: ask for
			// one. Once one has, waking the loop again would only start
			// a round nobody waits for.
			select {
			case t.wake <- struct{}{}:
			default:
			}
		}
		t.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return Response{}, fmt.Errorf("%w: no confirmation: %w", ErrNotLeader, ctx.Err())
		}
		t.mu.Lock()
	}
}

// grantMark is the newest probe of one process whose answer granted a VIP.
type grantMark struct {
	seq     uint64
	arrived time.Time
}

// grant computes req's grants and records them against its probe before
// any other node's grants are computed: a grant computed for another node
// right after must see that this node may now claim them.
func (t *Tracker) grant(g Granter, term uint64, req Request, arrived time.Time) (map[string]uint64, error) {
	t.grantMu.Lock()
	defer t.grantMu.Unlock()
	grants := g.Grants(req.Node)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.term != term || !t.leading {
		return nil, fmt.Errorf("%w: leadership changed", ErrNotLeader)
	}
	if req.Seq == 0 || len(grants) == 0 {
		return grants, nil
	}
	byVIP := t.granted[req.Node]
	if byVIP == nil {
		byVIP = map[string]map[uint64]grantMark{}
		t.granted[req.Node] = byVIP
	}
	for vip := range grants {
		marks := byVIP[vip]
		if marks == nil {
			marks = map[uint64]grantMark{}
			byVIP[vip] = marks
		}
		if m, ok := marks[req.Incarnation]; !ok || req.Seq > m.seq {
			marks[req.Incarnation] = grantMark{seq: req.Seq, arrived: arrived}
		}
	}
	return grants, nil
}

// Report returns the record of node in this term; ok is false when this
// node does not lead. A node not heard from in this term reports
// Arrived = the term's start less PriorQuiet, or the voters' prior bound
// when that is earlier (TrackerConfig.Voters), and Reported false.
func (t *Tracker) Report(node string) (Report, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.leading {
		return Report{}, false
	}
	r, ok := t.reports[node]
	if !ok {
		at := t.termStart.Add(-t.cfg.PriorQuiet)
		if b, ok := t.priorBound(); ok && b.Before(at) {
			at = b
		}
		return Report{Arrived: at}, true
	}
	r.Holding = maps.Clone(r.Holding)
	now := t.cfg.Now()
	for vip, marks := range t.granted[node] {
		for inc, m := range marks {
			usable := t.cfg.GrantLife == 0 || now.Sub(m.arrived) <= t.cfg.GrantLife
			if t.latest[node][inc] <= m.seq && usable {
				if r.Pending == nil {
					r.Pending = map[string]bool{}
				}
				r.Pending[vip] = true
			}
		}
	}
	return r, true
}

// priorBound is the earliest instant by which every member of some
// majority of voters had last heard from a leader of an earlier term
// (TrackerConfig.Voters); t.mu is held.
func (t *Tracker) priorBound() (time.Time, bool) {
	if len(t.voters) == 0 {
		return time.Time{}, false
	}
	need := len(t.voters)/2 + 1
	var known []time.Time
	for _, v := range t.voters {
		if at, ok := t.priors[v]; ok {
			known = append(known, at)
		}
	}
	if len(known) < need {
		return time.Time{}, false
	}
	slices.SortFunc(known, time.Time.Compare)
	return known[need-1], true
}

// Term is the Raft term this Tracker serves; ok is false when this node
// does not lead.
func (t *Tracker) Term() (term uint64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.raftTerm, t.leading
}

// TermStart is when this node's current term began; ok is false when it
// does not lead.
func (t *Tracker) TermStart() (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.termStart, t.leading
}
