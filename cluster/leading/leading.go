// Package leading runs a leader's work once per leadership term: the loop
// the VIP controller, the probe tracker and EC2 discovery share. It imports
// nothing of rafter, so packages that must not depend on the Raft node can
// use it.
package leading

import (
	"context"
	"time"
)

// Leadership is one report of this node's leadership. Each time the node
// gains leadership it is reported with the Raft term it leads in, larger
// than that of the gain before. A reader that only sees the latest report
// (a slow reader of cluster.Node.WatchLeadership) and so misses a loss
// between two gains still learns that the old term ended: its Term differs.
type Leadership struct {
	Leader bool
	Term   uint64 // the Raft term while Leader; 0 otherwise
}

// Follow reads leadership reports, calls start when a term begins and the
// stop it returned when that term ends: on a report of no leadership, or
// of leadership in another term (the node lost and regained leadership;
// the old term's work stops before the new one's starts). It returns when
// ctx ends or the channel closes, after the current term's work has
// stopped. changed, if not nil, is told of every transition: a term's end
// as the zero Leadership, a term's start as the report that began it.
func Follow(ctx context.Context, leadership <-chan Leadership, start func(ctx context.Context, term uint64) (stop func()), changed func(Leadership)) error {
	var (
		stop func() // ends the current term and waits for it
		term uint64 // the current term, while stop is set
	)
	end := func() {
		stop()
		stop, term = nil, 0
		if changed != nil {
			changed(Leadership{})
		}
	}
	defer func() {
		if stop != nil {
			end()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case l, ok := <-leadership:
			if !ok {
				return nil
			}
			if stop != nil && (!l.Leader || l.Term != term) {
				end()
			}
			if l.Leader && stop == nil {
				stop, term = start(ctx, l.Term), l.Term
				if changed != nil {
					changed(l)
				}
			}
		}
	}
}

// Every calls step at once and then every d until ctx ends: the loop of a
// term's work that looks at the replicated state on a tick (rollouts,
// ACME orders).
func Every(ctx context.Context, d time.Duration, step func(context.Context)) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		step(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
