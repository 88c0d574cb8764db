package probe

import (
	"errors"
	"sync"
	"time"

	"github.com/rafterlb/rafter/internal/conf"
)

// DefaultDetectAfter is how long a node's probes may be silent before the
// leader calls it dead: five probe intervals.
const DefaultDetectAfter = 500 * time.Millisecond

// Hint tells a new leader when it last heard from a node before its term
// began (cluster.Node.Predecessor: the previous leader). Liveness judges
// that node from the hint instead of from the term's start, so a lost
// leader is detected as quickly as a lost follower. Hints feed only
// liveness, never Report, which Linux VIP safety relies on.
type Hint func() (node string, lastHeard time.Time, ok bool)

// Liveness judges nodes by the leader's probe records (the interface
// cluster/vip calls Liveness): a node is alive while a probe of it arrived
// within the detection period and it is not leaving.
type Liveness struct {
	t           *Tracker
	detectAfter time.Duration
	now         func() time.Time
	hint        Hint

	mu    sync.Mutex
	term  time.Time // TermStart the state below belongs to
	hints map[string]time.Time
	state map[string]liveState
}

type liveState struct {
	alive bool
	since time.Time
}

// NewLiveness returns the Liveness of t's records. detectAfter 0 means
// DefaultDetectAfter; now nil means time.Now; hint may be nil.
func NewLiveness(t *Tracker, detectAfter time.Duration, now func() time.Time, hint Hint) (*Liveness, error) {
	if t == nil {
		return nil, errors.New("probe: liveness: tracker required")
	}
	if detectAfter < 0 {
		return nil, errors.New("probe: liveness.detect_after: must not be negative")
	}
	if detectAfter == 0 {
		detectAfter = DefaultDetectAfter
	}
	conf.Now(&now)
	return &Liveness{t: t, detectAfter: detectAfter, now: now, hint: hint, state: map[string]liveState{}}, nil
}

// Alive reports whether id is alive. For a live node since is when it was
// first seen alive after it was last dead (the hold-down counts from it);
// for a dead one, when it was last heard from.
func (l *Liveness) Alive(id string) (bool, time.Time) {
	r, ok := l.t.Report(id)
	start, leads := l.t.TermStart()
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !ok || !leads {
		return false, time.Time{}
	}
	if !start.Equal(l.term) {
		l.term = start
		clear(l.state)
		l.hints = map[string]time.Time{}
		if l.hint != nil {
			if node, at, ok := l.hint(); ok && at.Before(start) {
				l.hints[node] = at
			}
		}
	}
	heard := r.Arrived
	if !r.Reported {
		// Not heard in this term: give it a detection period from the
		// term's start, unless a hint says it went quiet before. The hint
		// is asked again each time: it may sharpen after the term began.
		heard = start
		if l.hint != nil {
			if node, at, ok := l.hint(); ok && node == id && at.Before(start) {
				l.hints[node] = at
			}
		}
		if at, ok := l.hints[id]; ok {
			heard = at
		}
	}
	alive := !r.Leaving && now.Sub(heard) < l.detectAfter
	if id == l.t.cfg.NodeID {
		alive = !r.Leaving // this node leads, so it is alive unless it is stopping
	}
	prev, seen := l.state[id]
	switch {
	case seen && prev.alive == alive:
		if !alive && heard.After(prev.since) {
			prev.since = heard
			l.state[id] = prev
		}
		return prev.alive, prev.since
	case alive:
		prev = liveState{alive: true, since: now}
	default:
		prev = liveState{alive: false, since: heard}
	}
	l.state[id] = prev
	return prev.alive, prev.since
}

// Leaving reports whether id's last probe said it is stopping.
func (l *Liveness) Leaving(id string) bool {
	r, ok := l.t.Report(id)
	return ok && r.Leaving
}
