// Package leading runs a leader's work for as long as this node leads: the
// loop the VIP controller and EC2 discovery share. It imports nothing of
// rafter, so packages that must not depend on the Raft node can use it.
package leading

import "context"

// Follow reads leadership changes (true: this node now leads), calls start
// when a term begins and the stop it returned when the term ends. It
// returns when ctx ends or the channel closes, after the current term's
// work has stopped. changed, if not nil, is told of every transition.
func Follow(ctx context.Context, leadership <-chan bool, start func(ctx context.Context) (stop func()), changed func(active bool)) error {
	var stop func() // ends the current term and waits for it
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case lead, ok := <-leadership:
			if !ok {
				return nil
			}
			switch {
			case lead && stop == nil:
				stop = start(ctx)
			case !lead && stop != nil:
				stop()
				stop = nil
			default:
				continue
			}
			if changed != nil {
				changed(lead)
			}
		}
	}
}
