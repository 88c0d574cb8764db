package vip

import (
	"context"
	"errors"
	"fmt"
	"github.com/rafterlb/rafter/cluster/leading"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// Controller assigns VIPs to nodes and has them moved while its node
// leads. Every node runs one; it is idle on followers.
type Controller struct {
	cfg Config
	log *slog.Logger
	m   metrics

	mu     sync.Mutex
	status []VIPStatus // published by the leader's term; nil when not leading
	term   uint64      // the Raft term being served; 0 when not leading
}

// VIPStatus is what the leading controller knows about one assigned VIP.
type VIPStatus struct {
	VIP    string `json:"vip"`
	Holder string `json:"holder"`
	Token  uint64 `json:"token"`
	// InPlace: the cloud showed the holder after the last move or check
	// (always true for provider none).
	InPlace   bool   `json:"in_place"`
	Moving    bool   `json:"moving"`
	Failures  int    `json:"failures,omitempty"` // consecutive failed moves of this token
	LastError string `json:"last_error,omitempty"`
}

// Status reports every assigned VIP this controller manages, by name,
// while its node leads; nil otherwise.
func (c *Controller) Status() []VIPStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.status)
}

func (c *Controller) publish(st []VIPStatus) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status = st
}

// New builds a Controller and registers its metrics.
func New(cfg Config) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("vip: %w", err)
	}
	cfg = cfg.withDefaults()
	c := &Controller{cfg: cfg, log: cfg.Logger, m: newMetrics()}
	if cfg.Registerer != nil {
		if err := c.m.register(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("vip: registering metrics: %w", err)
		}
	}
	return c, nil
}

// Term is the Raft term whose leader's work this controller runs; ok is
// false while its node does not lead.
func (c *Controller) Term() (term uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.term, c.term != 0
}

// Run follows leadership (as cluster.Node.WatchLeadership reports it) and
// runs the leader's work once per term while this node leads: a term that
// follows a lost and regained leadership starts from scratch, checking
// every assignment again. It returns when ctx ends or the channel closes,
// after that work has stopped.
func (c *Controller) Run(ctx context.Context, leadership <-chan leading.Leadership) error {
	return leading.Follow(ctx, leadership, c.startTerm, func(l leading.Leadership) {
		if l.Leader {
			c.log.Info("vip controller active: this node leads", "term", l.Term)
		} else {
			c.log.Info("vip controller idle: this node's term ended")
		}
	})
}

func (c *Controller) startTerm(ctx context.Context, raftTerm uint64) func() {
	c.mu.Lock()
	c.term = raftTerm
	c.mu.Unlock()
	tctx, cancel := context.WithCancel(ctx)
	t := &term{
		c:       c,
		ctx:     tctx,
		results: make(chan result),
		done:    map[string]uint64{},
		fresh:   map[string]uint64{},
		causes:  map[string]cause{},
		jobs:    map[string]*job{},
		retries: map[string]retryState{},
		stuck:   map[string]string{},
		avoid:   map[avoidKey]avoidance{},
		missed:  map[string]uint64{},
	}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t.run()
	}()
	return func() {
		cancel()
		<-finished
		c.mu.Lock()
		c.status, c.term = nil, 0
		c.mu.Unlock()
	}
}

// leaving asks the Liveness, when it can tell, whether a node is stopping.
func (c *Controller) leaving(id string) bool {
	l, ok := c.cfg.Liveness.(interface{ Leaving(string) bool })
	return ok && l.Leaving(id)
}

// managed: the controller assigns the VIP (and moves it when its provider
// has a Mover).
func (c *Controller) managed(v *fsm.VIP) bool {
	return v.Spec.Provider == fsm.ProviderNone || c.cfg.Movers[v.Spec.Provider] != nil
}

// term is one leadership term's state; the previous leader's is unknown,
// so every term starts from scratch.
type term struct {
	c   *Controller
	ctx context.Context
	wg  sync.WaitGroup // jobs and sweeps

	results chan result
	// done: VIP -> the token whose move is complete (the cloud agrees).
	done map[string]uint64
	// fresh: VIP -> the token this term wrote; its move is known to be
	// needed, so no describe precedes it.
	fresh   map[string]uint64
	causes  map[string]cause
	jobs    map[string]*job
	retries map[string]retryState
	stuck   map[string]string // VIP -> reason already warned about
	// avoid: nodes that did not claim a Linux VIP in time (ErrNotClaimed),
	// kept from it until the time given.
	avoid map[avoidKey]avoidance
	// missed: VIP -> the assignment token whose holder did not claim it;
	// the plan gives the VIP to another node.
	missed map[string]uint64

	sweeping  bool
	lastSweep time.Time
}

type cause struct {
	token  uint64
	reason string
	start  time.Time // the lost holder's last contact, or the decision
}

type avoidKey struct{ vip, node string }

type avoidance struct {
	until   time.Time
	strikes int // failed claims in a row; each doubles the time kept away
}

// maxAvoid bounds how long a node that did not claim a VIP is kept from it.
const maxAvoid = 10 * time.Minute

// avoided reports whether node is kept from vip now.
func (t *term) avoided(now time.Time) func(vip, node string) bool {
	return func(vip, node string) bool {
		a, ok := t.avoid[avoidKey{vip, node}]
		return ok && now.Before(a.until)
	}
}

// notClaimed keeps node from vip: for the hold-down (at least 30s), doubled
// for each failed claim in a row, up to maxAvoid. The plan then gives the
// VIP to another node (node only when no other may hold it), and fails it
// back only once that time has passed.
func (t *term) notClaimed(vip, node string, token uint64, now time.Time, err error) {
	k := avoidKey{vip, node}
	a := t.avoid[k]
	a.strikes++
	d := max(t.c.cfg.HoldDown, 30*time.Second)
	for i := 1; i < a.strikes && d < maxAvoid; i++ {
		d *= 2
	}
	d = min(d, maxAvoid)
	a.until = now.Add(d)
	t.avoid[k] = a
	t.missed[vip] = token
	t.c.log.Warn("vip not claimed by its holder in time; giving it to another node if one may hold it", "vip", vip, "node", node, "token", token,
		"kept_away_for", d, "failed_claims", a.strikes, "err", err,
		"action", "check that node's log (`linux vip assigned to this node is still not claimed` says why); it gets the vip back after that time")
}

type job struct {
	token  uint64
	cancel context.CancelFunc
}

type retryState struct {
	token    uint64
	failures int
	at       time.Time
	err      error
}

type resultKind int

const (
	resultMove resultKind = iota
	resultDrift
	resultSweepDone
)

type result struct {
	kind  resultKind
	vip   string
	node  string // the target of a move
	token uint64
	err   error
}

func (t *term) run() {
	defer t.wg.Wait()
	tick := time.NewTicker(t.c.cfg.Tick)
	defer tick.Stop()
	for {
		changed := t.c.cfg.Store.Changed()
		t.step()
		t.publish()
		// With no VIP there is nothing a tick could find: wait for the
		// state to change instead of waking the node 1/Tick times a second.
		var ticks <-chan time.Time
		if t.busy() {
			ticks = tick.C
		}
		select {
		case <-t.ctx.Done():
			return
		case <-ticks:
		case <-changed:
		case r := <-t.results:
			t.handle(r)
		}
	}
}

// busy reports whether the term has VIPs to watch or moves under way.
func (t *term) busy() bool {
	return len(t.jobs) > 0 || len(t.c.cfg.Store.Config().VIPs) > 0
}

// publish makes the term's view available to Controller.Status.
func (t *term) publish() {
	cfg := t.c.cfg.Store.Config()
	var st []VIPStatus
	for _, name := range slices.Sorted(maps.Keys(cfg.Assignments)) {
		a := cfg.Assignments[name]
		v, ok := cfg.VIPs[name]
		if !ok || a.Holder == "" || !t.c.managed(v) {
			continue
		}
		s := VIPStatus{VIP: name, Holder: a.Holder, Token: a.Token, InPlace: t.done[name] == a.Token}
		if j, ok := t.jobs[name]; ok && j.token == a.Token {
			s.Moving = true
		}
		if r, ok := t.retries[name]; ok && r.token == a.Token {
			s.Failures = r.failures
			if r.err != nil {
				s.LastError = r.err.Error()
			}
		}
		st = append(st, s)
	}
	t.c.publish(st)
}

// step writes the assignments the plan asks for, then starts the moves
// and drift checks that are due.
func (t *term) step() {
	c := t.c
	now := c.cfg.Now()
	moves, stuck := plan(planInput{
		cfg:      c.cfg.Store.Config(),
		alive:    c.cfg.Liveness.Alive,
		now:      now,
		holdDown: c.cfg.HoldDown,
		managed:  c.managed,
		leaving:  c.leaving,
		avoid:    t.avoided(now),
		missed:   func(vip string, token uint64) bool { return t.missed[vip] == token },
	})
	t.warnStuck(stuck)
	for _, d := range moves {
		if t.ctx.Err() != nil {
			return
		}
		t.assign(d, now)
	}
	cfg := c.cfg.Store.Config()
	for name := range t.done {
		if _, ok := cfg.VIPs[name]; !ok {
			delete(t.done, name)
			delete(t.fresh, name)
			delete(t.causes, name)
			delete(t.retries, name)
		}
	}
	for k := range t.avoid {
		if _, ok := cfg.VIPs[k.vip]; !ok {
			delete(t.avoid, k)
		}
	}
	for name, token := range t.missed {
		if a, ok := cfg.Assignments[name]; !ok || a.Token != token {
			delete(t.missed, name) // reassigned: the miss is history
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Assignments)) {
		t.dispatch(cfg, name, now)
	}
	t.maybeSweep(cfg, now)
}

func (t *term) warnStuck(stuck []Decision) {
	seen := make(map[string]bool, len(stuck))
	for _, d := range stuck {
		seen[d.VIP] = true
		if t.stuck[d.VIP] == d.Reason {
			continue
		}
		t.stuck[d.VIP] = d.Reason
		t.c.log.Warn("vip needs a new holder but no node is usable (live, member, zone not evacuated, candidate)",
			"vip", d.VIP, "holder", d.From, "reason", d.Reason,
			"action", "start a node that may hold it, restore an evacuated zone, or add candidates to the vip")
	}
	for name := range t.stuck {
		if !seen[name] {
			delete(t.stuck, name)
		}
	}
}

// assign writes one decision through Raft, compare-and-set on the token
// it replaces.
func (t *term) assign(d Decision, now time.Time) {
	c := t.c
	cas := d.CAS
	cmd := fsm.NewCommand(&fsm.Assign{
		Assignment: &fsm.Assignment{VIP: d.VIP, Holder: d.To, Reason: d.Reason},
		CAS:        &cas,
		Time:       now,
	})
	ctx, cancel := context.WithTimeout(t.ctx, c.cfg.ApplyTimeout)
	token, err := c.cfg.Store.Apply(ctx, cmd)
	cancel()
	if err != nil {
		level := slog.LevelWarn
		if errors.Is(err, fsm.ErrConflict) || t.ctx.Err() != nil {
			level = slog.LevelDebug // a concurrent write won or the term ended; the next plan decides again
		}
		c.log.Log(t.ctx, level, "writing vip assignment failed", "vip", d.VIP, "from", d.From, "to", d.To, "reason", d.Reason, "err", err)
		return
	}
	start := now
	attrs := []any{"vip", d.VIP, "from", d.From, "to", d.To, "reason", d.Reason, "token", token}
	if !d.LostSince.IsZero() {
		start = d.LostSince
		attrs = append(attrs, "holder_silent_for", now.Sub(d.LostSince).Round(time.Millisecond))
	}
	c.log.Info("vip assigned", attrs...)
	c.m.moves.WithLabelValues(d.Reason).Inc()
	t.fresh[d.VIP] = token
	t.causes[d.VIP] = cause{token: token, reason: d.Reason, start: start}
}

// settle records that the move of a is complete: the address is where the
// assignment says and, for linux VIPs, no other node can still have it. A
// later leader then grants it again without waiting, and operators see it.
func (t *term) settle(a *fsm.Assignment) {
	if a.Settled {
		return
	}
	cmd := fsm.NewCommand(&fsm.Settle{Assignment: &fsm.Assignment{VIP: a.VIP, Token: a.Token}})
	ctx, cancel := context.WithTimeout(t.ctx, t.c.cfg.ApplyTimeout)
	defer cancel()
	if _, err := t.c.cfg.Store.Apply(ctx, cmd); err != nil && t.ctx.Err() == nil && !errors.Is(err, fsm.ErrConflict) {
		t.c.log.Warn("recording a completed vip move failed", "vip", a.VIP, "token", a.Token, "err", err, "action", "none: the next leader pass records it again")
	}
}

// dispatch starts the move of one VIP's assignment unless it is done,
// running, or backing off. A running move for an older token is cancelled;
// its successor starts once it has returned.
func (t *term) dispatch(cfg *fsm.Config, name string, now time.Time) {
	a := cfg.Assignments[name]
	v, ok := cfg.VIPs[name]
	if !ok || a.Holder == "" || !t.c.managed(v) || t.done[name] == a.Token {
		return
	}
	if j, ok := t.jobs[name]; ok {
		if j.token != a.Token {
			j.cancel()
		}
		return
	}
	mover := t.c.cfg.Movers[v.Spec.Provider]
	if mover == nil {
		t.done[name] = a.Token // provider "none": the assignment is all there is
		t.settle(a)
		return
	}
	if r, ok := t.retries[name]; ok && r.token == a.Token && now.Before(r.at) {
		return
	}
	node, ok := cfg.Nodes[a.Holder]
	if !ok {
		return // the plan reassigns it
	}
	check := t.fresh[name] != a.Token
	ctx, cancel := context.WithTimeout(t.ctx, t.c.cfg.MoveTimeout)
	t.jobs[name] = &job{token: a.Token, cancel: cancel}
	vv, nn, token := *v, *node, a.Token
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer cancel()
		err := move(ctx, mover, vv, nn, token, check)
		t.send(result{kind: resultMove, vip: name, node: nn.ID, token: token, err: err})
	}()
}

// move moves one VIP. check: the assignment was inherited from another
// term, so the cloud may already agree and a describe comes first.
func move(ctx context.Context, m Mover, v fsm.VIP, n fsm.Node, token uint64, check bool) error {
	if ch, ok := m.(Checker); ok && check {
		if in, err := ch.InPlace(ctx, v, n); err == nil && in {
			return nil
		}
	}
	return m.Move(ctx, v, n, token)
}

func (t *term) send(r result) {
	select {
	case t.results <- r:
	case <-t.ctx.Done():
	}
}

func (t *term) handle(r result) {
	c := t.c
	now := c.cfg.Now()
	switch r.kind {
	case resultSweepDone:
		t.sweeping, t.lastSweep = false, now
	case resultDrift:
		if t.done[r.vip] != r.token {
			return // moved or reassigned since the sweep looked
		}
		delete(t.done, r.vip)
		t.fresh[r.vip] = r.token
		t.causes[r.vip] = cause{token: r.token, reason: ReasonDrift, start: now}
		c.m.moves.WithLabelValues(ReasonDrift).Inc()
		c.m.drift.WithLabelValues(r.vip).Inc()
		c.log.Warn("vip is not where its assignment says; moving it back", "vip", r.vip, "token", r.token, "reason", ReasonDrift)
	case resultMove:
		if j, ok := t.jobs[r.vip]; ok && j.token == r.token {
			delete(t.jobs, r.vip)
		}
		if r.err == nil {
			t.done[r.vip] = r.token
			delete(t.retries, r.vip)
			delete(t.avoid, avoidKey{r.vip, r.node})
			delete(t.missed, r.vip)
			if a, ok := c.cfg.Store.Config().Assignments[r.vip]; ok && a.Token == r.token {
				t.settle(a)
			}
			attrs := []any{"vip", r.vip, "token", r.token}
			if cs, ok := t.causes[r.vip]; ok && cs.token == r.token {
				took := now.Sub(cs.start)
				c.m.lastMove.Set(took.Seconds())
				attrs = append(attrs, "reason", cs.reason, "since_cause", took.Round(time.Millisecond))
				delete(t.causes, r.vip)
			}
			c.log.Info("vip moved", attrs...)
			return
		}
		if t.ctx.Err() != nil || errors.Is(r.err, context.Canceled) || errors.Is(r.err, ErrStaleToken) {
			c.log.Debug("vip move abandoned", "vip", r.vip, "token", r.token, "err", r.err)
			return
		}
		notClaimed := errors.Is(r.err, ErrNotClaimed)
		if notClaimed {
			// The next plan gives the VIP to another node; the backoff
			// below spaces the retries when there is none.
			t.notClaimed(r.vip, r.node, r.token, now, r.err)
		}
		rs := t.retries[r.vip]
		if rs.token != r.token {
			rs = retryState{token: r.token}
		}
		rs.failures++
		rs.err = r.err
		wait := Backoff(c.cfg.RetryBase, c.cfg.RetryMax, rs.failures)
		rs.at = now.Add(wait)
		t.retries[r.vip] = rs
		c.m.failures.WithLabelValues(r.vip).Inc()
		if notClaimed {
			return
		}
		c.log.Warn("vip move failed; retrying", "vip", r.vip, "token", r.token, "failures", rs.failures, "retry_in", wait.Round(time.Millisecond), "err", r.err)
	}
}

// Backoff is the wait before retry number failures: exponential from base
// up to limit, with equal jitter, never less than half the bound, so
// retries neither hammer the API nor fall in step across VIPs. The
// controller spaces failed moves with it, and Movers their own retries.
func Backoff(base, limit time.Duration, failures int) time.Duration {
	bound := base
	for i := 1; i < failures && bound < limit; i++ {
		bound *= 2
	}
	bound = min(bound, limit)
	if bound <= 1 {
		return bound
	}
	half := bound / 2
	return half + rand.N(bound-half)
}

// maybeSweep starts a drift check of every settled VIP whose Mover can
// describe it, at most once per ReconcileInterval and one sweep at a time.
func (t *term) maybeSweep(cfg *fsm.Config, now time.Time) {
	c := t.c
	if t.sweeping || (!t.lastSweep.IsZero() && now.Sub(t.lastSweep) < c.cfg.ReconcileInterval) {
		return
	}
	type item struct {
		v     fsm.VIP
		n     fsm.Node
		token uint64
		ch    Checker
	}
	var items []item
	for _, name := range slices.Sorted(maps.Keys(cfg.Assignments)) {
		a := cfg.Assignments[name]
		v, ok := cfg.VIPs[name]
		if !ok || a.Holder == "" || t.done[name] != a.Token {
			continue
		}
		ch, ok := c.cfg.Movers[v.Spec.Provider].(Checker)
		n, known := cfg.Nodes[a.Holder]
		if !ok || !known {
			continue
		}
		items = append(items, item{*v, *n, a.Token, ch})
	}
	if len(items) == 0 {
		t.lastSweep = now
		return
	}
	t.sweeping = true
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer t.send(result{kind: resultSweepDone})
		for _, it := range items {
			ctx, cancel := context.WithTimeout(t.ctx, c.cfg.MoveTimeout)
			in, err := it.ch.InPlace(ctx, it.v, it.n)
			cancel()
			switch {
			case t.ctx.Err() != nil:
				return
			case err != nil:
				c.log.Warn("vip drift check failed", "vip", it.v.Name, "err", err, "action", "retried on the next pass; if it repeats, check the cloud credentials and permissions")
			case !in:
				t.send(result{kind: resultDrift, vip: it.v.Name, token: it.token})
			}
		}
	}()
}
