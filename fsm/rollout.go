package fsm

import (
	"fmt"
	"slices"
	"time"
)

// Rollout is a progressive canary rollout: the share of a route's traffic
// that goes to the canary pool grows step by step while the figures every
// node reports pass the spec's criteria. Its progress is in
// Config.RolloutStatus, which only rollout commands change.
type Rollout struct {
	Name        string      `json:"name"`
	ModifyIndex uint64      `json:"modify_index"`
	Spec        RolloutSpec `json:"spec"`
}

// RolloutSpec is the operator-supplied part of a rollout. Creating a
// rollout (or changing its spec) starts it over: the route's split becomes
// [stable 100-steps[0], canary steps[0]], and while the rollout runs every
// write that touches the route gets that split back.
type RolloutSpec struct {
	Route  string `json:"route"`
	Stable string `json:"stable"`
	Canary string `json:"canary"`
	// Steps are the canary's shares in percent, strictly increasing, the
	// last one 100.
	Steps    []int    `json:"steps"`
	Interval Duration `json:"interval"` // each step's window, at least 1s
	// MinRequests: a step passes only once its window holds this many
	// canary requests, summed over every node (default 100).
	MinRequests int `json:"min_requests,omitempty"`
	// MaxErrorRate: the canary's share of 5xx answers and connection
	// failures a step tolerates, 0..1 (default 0.01).
	MaxErrorRate *float64 `json:"max_error_rate,omitempty"`
	// MaxP99 bounds the canary's 99th percentile time to response head;
	// MaxP99Ratio bounds it relative to the stable pool's in the same
	// window (1.5: at most 50 % slower). At most one is set; none: no check.
	MaxP99      Duration `json:"max_p99,omitempty"`
	MaxP99Ratio float64  `json:"max_p99_ratio,omitempty"`
	// Sticky keeps each user on one side while the share grows.
	Sticky *Sticky `json:"sticky,omitempty"`
}

// Sticky names the request header or cookie whose hash picks the leg of a
// split; exactly one is set.
type Sticky struct {
	Header string `json:"header,omitempty"`
	Cookie string `json:"cookie,omitempty"`
}

// Rollout states.
const (
	RolloutProgressing = "progressing"
	RolloutPaused      = "paused"
	RolloutSucceeded   = "succeeded"
	RolloutFailed      = "failed"
	RolloutAborted     = "aborted"
)

// Defaults of a rollout spec's optional criteria.
const (
	DefaultRolloutMinRequests  = 100
	DefaultRolloutMaxErrorRate = 0.01
)

// MinRequestsOrDefault is MinRequests, or its default when unset.
func (s *RolloutSpec) MinRequestsOrDefault() int {
	if s.MinRequests == 0 {
		return DefaultRolloutMinRequests
	}
	return s.MinRequests
}

// MaxErrorRateOrDefault is MaxErrorRate, or its default when unset.
func (s *RolloutSpec) MaxErrorRateOrDefault() float64 {
	if s.MaxErrorRate == nil {
		return DefaultRolloutMaxErrorRate
	}
	return *s.MaxErrorRate
}

// RolloutStatus is a rollout's progress, written only by committed
// rollout commands (the leader's decisions and operator actions).
type RolloutStatus struct {
	State string `json:"state"`
	// Step is the index in spec.steps of the step running (or the last
	// one run, once the rollout ended); Weight the canary's share now.
	Step   int `json:"step"`
	Weight int `json:"weight"`
	// Since is when the current step's window began on the leader's clock
	// (zero until a decision or an operator action stamped it).
	Since time.Time `json:"since,omitzero"`
	// Token is the index of the entry that last changed the status. A
	// decision names the token it was made on, so a decision made on an
	// older status (by a deposed leader, or twice) is refused.
	Token uint64 `json:"token"`
	// Term is the highest leader term that made a decision; a decision
	// from an older term is refused.
	Term   uint64 `json:"term,omitempty"`
	Reason string `json:"reason,omitempty"`
	// History holds every finished step, in order.
	History []RolloutStep `json:"history,omitempty"`
}

// RolloutStep is one finished step with the figures that decided it.
type RolloutStep struct {
	Step    int             `json:"step"`
	Weight  int             `json:"weight"`
	Result  string          `json:"result"` // passed | failed | promoted | aborted
	Reason  string          `json:"reason,omitempty"`
	Figures *RolloutFigures `json:"figures,omitempty"`
	Started time.Time       `json:"started,omitzero"`
	Ended   time.Time       `json:"ended,omitzero"`
	Term    uint64          `json:"term,omitempty"`
	Index   uint64          `json:"index"` // the entry that ended the step
}

// RolloutFigures are one step's window, summed over every node that
// reported.
type RolloutFigures struct {
	Requests       uint64   `json:"requests"` // canary
	Errors         uint64   `json:"errors"`   // canary 5xx and connection failures
	ErrorRate      float64  `json:"error_rate"`
	P99            Duration `json:"p99,omitempty"`
	StableRequests uint64   `json:"stable_requests"`
	StableErrors   uint64   `json:"stable_errors"`
	StableP99      Duration `json:"stable_p99,omitempty"`
	// Share is the canary's observed share of the route's requests, percent.
	Share  float64  `json:"share"`
	Window Duration `json:"window"`
	Nodes  int      `json:"nodes"`
}

// Rollout verdicts the leader commits and operator actions.
const (
	VerdictAdvance = "advance"
	VerdictFail    = "fail"

	RolloutPause   = "pause"
	RolloutResume  = "resume"
	RolloutPromote = "promote"
	RolloutAbort   = "abort"
)

// Terminal reports whether a rollout in state s has ended.
func (s *RolloutStatus) Terminal() bool {
	return s.State == RolloutSucceeded || s.State == RolloutFailed || s.State == RolloutAborted
}

func validateRollout(p string, s *RolloutSpec) error {
	if err := firstErr(
		validateName(p+".route", s.Route),
		validateName(p+".stable", s.Stable),
		validateName(p+".canary", s.Canary),
	); err != nil {
		return err
	}
	if s.Stable == s.Canary {
		return invalidf(p+".canary", "must differ from stable (%q)", s.Stable)
	}
	if len(s.Steps) == 0 {
		return invalidf(p+".steps", "required, e.g. [10, 50, 100]")
	}
	if err := maxItems(p+".steps", len(s.Steps), maxRolloutSteps); err != nil {
		return err
	}
	for i, w := range s.Steps {
		f := fmt.Sprintf("%s.steps[%d]", p, i)
		if err := intRange(f, w, 1, 100); err != nil {
			return err
		}
		if i > 0 && w <= s.Steps[i-1] {
			return invalidf(f, "%d is not above the step before (%d): steps must increase", w, s.Steps[i-1])
		}
	}
	if last := s.Steps[len(s.Steps)-1]; last != 100 {
		return invalidf(fmt.Sprintf("%s.steps[%d]", p, len(s.Steps)-1), "the last step must be 100, got %d", last)
	}
	if s.Interval == 0 {
		return invalidf(p+".interval", "required, e.g. \"30s\"")
	}
	if err := firstErr(
		durRange(p+".interval", s.Interval, minRolloutInterval, maxRolloutInterval),
		intRange(p+".min_requests", s.MinRequests, 0, maxRolloutRequests),
		durRange(p+".max_p99", s.MaxP99, 0, maxRolloutP99),
	); err != nil {
		return err
	}
	if r := s.MaxErrorRate; r != nil && (*r < 0 || *r > 1) {
		return invalidf(p+".max_error_rate", "%v is out of range 0..1", *r)
	}
	if r := s.MaxP99Ratio; r != 0 && (r < 1 || r > maxRolloutP99Ratio) {
		return invalidf(p+".max_p99_ratio", "%v is out of range 1..%d", r, maxRolloutP99Ratio)
	}
	if s.MaxP99 != 0 && s.MaxP99Ratio != 0 {
		return invalidf(p+".max_p99_ratio", "set at most one of max_p99, max_p99_ratio")
	}
	return validateSticky(p+".sticky", s.Sticky)
}

func validateSticky(p string, s *Sticky) error {
	if s == nil {
		return nil
	}
	if err := firstErr(
		maxLen(p+".header", s.Header, maxHeaderNameLen),
		maxLen(p+".cookie", s.Cookie, maxHeaderNameLen),
	); err != nil {
		return err
	}
	switch {
	case (s.Header == "") == (s.Cookie == ""):
		return invalidf(p, "set exactly one of header, cookie")
	case s.Header != "" && !isToken(s.Header):
		return invalidf(p+".header", "%q is not a valid header name", s.Header)
	case s.Cookie != "" && !isToken(s.Cookie):
		return invalidf(p+".cookie", "%q is not a valid cookie name", s.Cookie)
	}
	return nil
}

// checkRolloutRefs: the route exists, splits, and splits only between the
// rollout's stable and canary pools, which exist.
func checkRolloutRefs(c *Config, name, p string) error {
	ro := c.Rollouts[name]
	s := ro.Spec
	r, ok := c.Routes[s.Route]
	if !ok {
		return invalidf(p+".route", "route %q does not exist", s.Route)
	}
	if len(r.Spec.Action.Split) == 0 {
		return invalidf(p+".route", "route %q has no split action to roll out on", s.Route)
	}
	for _, f := range []struct{ field, pool string }{{"stable", s.Stable}, {"canary", s.Canary}} {
		if _, ok := c.Pools[f.pool]; !ok {
			return invalidf(p+"."+f.field, "pool %q does not exist", f.pool)
		}
	}
	for i, wp := range r.Spec.Action.Split {
		if wp.Pool != s.Stable && wp.Pool != s.Canary {
			return invalidf(p+".route", "route %q splits to pool %q (split[%d]); a rollout's route may split only to its stable and canary pools", s.Route, wp.Pool, i)
		}
	}
	for _, other := range sortedKeys(c.Rollouts) {
		if other == name || c.Rollouts[other].Spec.Route != s.Route {
			continue
		}
		if st := c.RolloutStatus[other]; st != nil && !st.Terminal() {
			return conflictf(p+".route", "route %q is already rolled out by rollout %q", s.Route, other)
		}
	}
	return nil
}

// rolloutUser names the first rollout (by name) that uses the route or
// pool, or returns "".
func rolloutUser(c *Config, kind Kind, name string) string {
	for _, rn := range sortedKeys(c.Rollouts) {
		s := c.Rollouts[rn].Spec
		if kind == KindRoute && s.Route == name || kind == KindPool && (s.Stable == name || s.Canary == name) {
			return rn
		}
	}
	return ""
}

// startRollouts gives every rollout the command created or changed a
// fresh status at its first step.
func (b *builder) startRollouts() {
	for _, name := range sortedKeys(b.c.Rollouts) {
		ro := b.c.Rollouts[name]
		st, ok := b.c.RolloutStatus[name]
		if ok && (ro.ModifyIndex != b.index || st.Token == b.index) {
			continue
		}
		b.rolloutStatus()[name] = &RolloutStatus{
			State: RolloutProgressing, Step: 0, Weight: ro.Spec.Steps[0], Token: b.index,
		}
	}
}

// enforceRollouts gives the route of every running rollout the split of
// its current step, and every ended one the split it ended with when its
// route still splits as it did, so that a manifest applied again does not
// undo a rollout.
func (b *builder) enforceRollouts() {
	for _, name := range sortedKeys(b.c.Rollouts) {
		st := b.c.RolloutStatus[name]
		if st == nil || st.Terminal() {
			continue
		}
		b.setSplit(&b.c.Rollouts[name].Spec, st.Weight)
	}
}

// setSplit makes the route of s split weight percent to the canary and the
// rest to the stable pool, in that order, so that a sticky user's bucket
// stays on the canary as its share grows.
func (b *builder) setSplit(s *RolloutSpec, weight int) {
	r, ok := b.c.Routes[s.Route]
	if !ok || len(r.Spec.Action.Split) == 0 {
		return
	}
	want := RouteAction{
		Split:  []WeightedPool{{Pool: s.Stable, Weight: 100 - weight}, {Pool: s.Canary, Weight: weight}},
		Sticky: s.Sticky,
	}
	cur := r.Spec.Action
	if slices.Equal(cur.Split, want.Split) && stickyEqual(cur.Sticky, want.Sticky) {
		return
	}
	nr := *r
	nr.Spec.Action = want
	nr.ModifyIndex = b.index
	b.setRoute(s.Route, &nr)
}

func stickyEqual(a, b *Sticky) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// RolloutDecide is the leader's verdict on the running step of rollout
// Name: advance to the next step (or succeed after the last) or fail.
// Token is the status token the decision was made on and Term the
// leader's term: a decision on an older status or from an older term is
// refused, so a deposed leader can neither skip nor repeat a step.
type RolloutDecide struct {
	Name    string          `json:"name"`
	Token   uint64          `json:"token"`
	Term    uint64          `json:"term"`
	Verdict string          `json:"verdict"`
	Reason  string          `json:"reason,omitempty"`
	Figures *RolloutFigures `json:"figures,omitempty"`
	Time    time.Time       `json:"time,omitzero"`
}

// RolloutControl is an operator's action on rollout Name: pause, resume,
// promote (100 % to the canary at once) or abort (back to stable).
type RolloutControl struct {
	Name   string    `json:"name"`
	Action string    `json:"action"`
	Time   time.Time `json:"time,omitzero"`
}

func (*RolloutDecide) commandType() CommandType  { return CmdRolloutDecide }
func (*RolloutControl) commandType() CommandType { return CmdRolloutControl }

// rolloutFor returns the rollout called name and its status.
func rolloutFor(c *Config, field, name string) (*Rollout, *RolloutStatus, error) {
	ro, ok := c.Rollouts[name]
	if !ok {
		return nil, nil, notFoundf(field, "rollout %q not found", name)
	}
	st, ok := c.RolloutStatus[name]
	if !ok {
		return nil, nil, notFoundf(field, "rollout %q has no status", name)
	}
	return ro, st, nil
}

func nextRolloutDecide(c *Config, index uint64, cmd *RolloutDecide) (*Config, error) {
	ro, st, err := rolloutFor(c, "name", cmd.Name)
	if err != nil {
		return nil, err
	}
	switch {
	case st.State != RolloutProgressing:
		return nil, conflictf("name", "rollout %q is %s, not progressing", cmd.Name, st.State)
	case cmd.Token != st.Token:
		return nil, conflictf("token", "rollout %q has status token %d, not %d", cmd.Name, st.Token, cmd.Token)
	case cmd.Term < st.Term:
		return nil, conflictf("term", "rollout %q was decided in term %d, after %d", cmd.Name, st.Term, cmd.Term)
	case cmd.Verdict != VerdictAdvance && cmd.Verdict != VerdictFail:
		return nil, invalidf("verdict", "%q is not advance or fail", cmd.Verdict)
	}
	if err := maxLen("reason", cmd.Reason, maxRolloutReason); err != nil {
		return nil, err
	}
	ns := *st
	ns.History = slices.Clone(st.History)
	ns.Token, ns.Term, ns.Since = index, max(st.Term, cmd.Term), cmd.Time.UTC()
	done := RolloutStep{Step: st.Step, Weight: st.Weight, Reason: cmd.Reason, Started: st.Since,
		Ended: cmd.Time.UTC(), Term: cmd.Term, Index: index}
	if cmd.Figures != nil {
		f := *cmd.Figures
		done.Figures = &f
	}
	steps := ro.Spec.Steps
	switch {
	case cmd.Verdict == VerdictFail:
		done.Result = "failed"
		ns.State, ns.Weight, ns.Reason = RolloutFailed, 0, cmd.Reason
	case st.Step >= len(steps)-1:
		done.Result = "passed"
		ns.State, ns.Weight, ns.Reason = RolloutSucceeded, 100, ""
	default:
		done.Result = "passed"
		ns.Step = st.Step + 1
		ns.Weight = steps[ns.Step]
	}
	ns.History = append(ns.History, done)
	b := newBuilder(c, index)
	b.rolloutStatus()[cmd.Name] = &ns
	b.setSplit(&ro.Spec, ns.Weight)
	return b.c, nil
}

func nextRolloutControl(c *Config, index uint64, cmd *RolloutControl) (*Config, error) {
	ro, st, err := rolloutFor(c, "name", cmd.Name)
	if err != nil {
		return nil, err
	}
	ns := *st
	ns.History = slices.Clone(st.History)
	b := newBuilder(c, index)
	end := func(result, state string, weight int) {
		ns.History = append(ns.History, RolloutStep{Step: st.Step, Weight: st.Weight, Result: result,
			Reason: "operator", Started: st.Since, Ended: cmd.Time.UTC(), Index: index})
		ns.State, ns.Weight, ns.Reason = state, weight, "operator "+cmd.Action
	}
	switch cmd.Action {
	case RolloutPause, RolloutResume, RolloutPromote, RolloutAbort:
	default:
		return nil, invalidf("action", "%q is not pause, resume, promote or abort", cmd.Action)
	}
	if st.Terminal() {
		return nil, conflictf("action", "rollout %q has ended (%s); change its spec to start it again", cmd.Name, st.State)
	}
	switch cmd.Action {
	case RolloutPause:
		if st.State == RolloutPaused {
			return b.c, nil
		}
		ns.State = RolloutPaused
	case RolloutResume:
		if st.State == RolloutProgressing {
			return b.c, nil
		}
		ns.State = RolloutProgressing
	case RolloutPromote:
		end("promoted", RolloutSucceeded, 100)
	case RolloutAbort:
		end("aborted", RolloutAborted, 0)
	}
	// The window starts again with the next status token.
	ns.Token, ns.Since = index, cmd.Time.UTC()
	b.rolloutStatus()[cmd.Name] = &ns
	b.setSplit(&ro.Spec, ns.Weight)
	return b.c, nil
}

// restoreRollouts keeps the restored status of each restored rollout when
// it is consistent with the spec, and starts the others afresh.
func restoreRollouts(b *builder, in *Config) error {
	for _, name := range sortedKeys(b.c.Rollouts) {
		ro := b.c.Rollouts[name]
		st, ok := in.RolloutStatus[name]
		if !ok || st == nil {
			continue
		}
		p := "rollout_status/" + name
		switch st.State {
		case RolloutProgressing, RolloutPaused, RolloutSucceeded, RolloutFailed, RolloutAborted:
		default:
			return invalidf(p+".state", "%q is not a rollout state", st.State)
		}
		if st.Step < 0 || st.Step >= len(ro.Spec.Steps) {
			return invalidf(p+".step", "%d is not a step of rollout %q", st.Step, name)
		}
		if err := firstErr(
			intRange(p+".weight", st.Weight, 0, 100),
			maxItems(p+".history", len(st.History), maxRolloutSteps+1),
		); err != nil {
			return err
		}
		ns := *st
		ns.History = slices.Clone(st.History)
		ns.Token = b.index
		b.rolloutStatus()[name] = &ns
	}
	b.startRollouts()
	b.enforceRollouts()
	return nil
}
