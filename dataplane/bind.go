package dataplane

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// pendingBind is a listener that failed to bind and waits for the binder.
type pendingBind struct {
	name, ip string
	spec     fsm.ListenerSpec
	attempts int
	err      error
	since    time.Time // first failure
	next     time.Time // next attempt
}

// Back-off between bind attempts: quick at first, since the usual cause is
// a replaced listener still letting go of its port, then slower.
const (
	bindBackoffMin = 20 * time.Millisecond
	bindBackoffMax = 5 * time.Second
)

func bindBackoff(attempts int) time.Duration {
	d := bindBackoffMin << min(attempts-1, 16)
	return min(d, bindBackoffMax)
}

// binder retries pending listeners with back-off until ctx is done.
func (d *Dataplane) binder(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := d.retryBinds()
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-d.rebind:
		case <-timer.C:
		}
	}
}

// retryBinds tries every pending listener that is due and returns when the
// next one is (zero if none waits).
func (d *Dataplane) retryBinds() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.table.Load()
	now := time.Now()
	var next time.Time
	for key, pb := range d.pending {
		if !d.wanted(t, pb.name, pb.ip, pb.spec) {
			delete(d.pending, key)
			if !d.serves(t, pb.name, pb.ip) {
				delete(d.open, key)
			}
			continue
		}
		if now.Before(pb.next) {
			if next.IsZero() || pb.next.Before(next) {
				next = pb.next
			}
			continue
		}
		ls, err := d.startListener(pb.name, pb.ip, t.listeners[pb.name], nil)
		if err == nil {
			delete(d.pending, key)
			ls.serve(d.log) // the table that routes it is served already
			d.listeners[key] = ls
			d.log.Info("listener bound", "listener", pb.name, "vip_ip", pb.ip, "attempts", pb.attempts+1)
			continue
		}
		pb.attempts++
		pb.err = err
		pb.next = now.Add(bindBackoff(pb.attempts))
		if next.IsZero() || pb.next.Before(next) {
			next = pb.next
		}
	}
	return next
}

// ListenerStatus is the bind state of one listener on one address.
type ListenerStatus struct {
	Listener string `json:"listener"`
	// VIP is the linux VIP address this server binds; "" for the node's
	// bind address.
	VIP string `json:"vip,omitempty"`
	// Bound is true once the listener accepts connections on Addr.
	Bound bool   `json:"bound"`
	Addr  string `json:"addr,omitempty"`
	// Error is the last bind failure of a listener that is not bound;
	// Attempts and Since count and date its failures.
	Error    string    `json:"error,omitempty"`
	Attempts int       `json:"attempts,omitempty"`
	Since    time.Time `json:"since,omitzero"`
}

// Listeners reports the bind state of every configured listener, sorted by
// listener then VIP address. A listener that failed to bind is retried in
// the background; this is how the node can say so (status, /v1/health).
func (d *Dataplane) Listeners() []ListenerStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]ListenerStatus, 0, len(d.listeners)+len(d.pending))
	for _, ls := range d.listeners {
		out = append(out, ListenerStatus{Listener: ls.name, VIP: ls.ip, Bound: true, Addr: ls.addr})
	}
	for _, pb := range d.pending {
		out = append(out, ListenerStatus{Listener: pb.name, VIP: pb.ip, Error: pb.err.Error(),
			Attempts: pb.attempts, Since: pb.since})
	}
	slices.SortFunc(out, func(a, b ListenerStatus) int {
		if c := strings.Compare(a.Listener, b.Listener); c != 0 {
			return c
		}
		return strings.Compare(a.VIP, b.VIP)
	})
	return out
}
