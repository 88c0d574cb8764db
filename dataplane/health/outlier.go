package health

import (
	"context"
	"time"
)

// Observe feeds one upstream exchange of the request path into passive
// outlier detection. It takes no lock and allocates nothing unless the
// exchange completes a streak and ejects the backend.
//
// Status5xx extends the consecutive_5xx streak; ConnectError, Timeout and
// Reset extend the consecutive_connect_errors streak; Success ends both, and
// a 5xx ends the connect streak (the connection worked). Exchanges with a
// target that is already out of rotation are ignored, as are unknown pairs
// and pools without an outlier block.
func (m *Monitor) Observe(pool, addr string, o Outcome) {
	t := m.snap.Load().targets[key{pool, addr}]
	if t == nil || !t.healthy.Load() {
		return
	}
	od := t.pool.cfg.Load().outlier
	if od == nil {
		return
	}
	switch o {
	case Success:
		// Loads first: a healthy backend's streak counters stay shared-clean in cache.
		if t.c5xx.Load() != 0 {
			t.c5xx.Store(0)
		}
		if t.cConn.Load() != 0 {
			t.cConn.Store(0)
		}
	case Status5xx:
		if t.cConn.Load() != 0 {
			t.cConn.Store(0)
		}
		if od.consecutive5xx != 0 && t.c5xx.Add(1) >= od.consecutive5xx {
			m.eject(t, od, o)
		}
	case ConnectError, Timeout, Reset:
		if od.consecutiveConn != 0 && t.cConn.Add(1) >= od.consecutiveConn {
			m.eject(t, od, o)
		}
	}
}

// reap returns ejected targets when their time is up, until ctx is done.
func (m *Monitor) reap(ctx context.Context) {
	for {
		next := m.expireEjections()
		var timer Timer
		var fire <-chan time.Time
		if !next.IsZero() {
			timer = m.clock.NewTimer(next.Sub(m.clock.Now()))
			fire = timer.C()
		}
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case <-fire:
		case <-m.kick:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// expireEjections ends every ejection that is due and returns when the
// next one is (zero when none is pending).
func (m *Monitor) expireEjections() time.Time {
	now := m.clock.Now()
	var next int64
	for _, t := range m.snap.Load().targets {
		until := t.ejectedUntil.Load()
		if until == 0 {
			continue
		}
		if until <= now.UnixNano() {
			m.endEjection(t, now, "outlier: ejection ended")
			continue
		}
		if next == 0 || until < next {
			next = until
		}
	}
	if next == 0 {
		return time.Time{}
	}
	return time.Unix(0, next)
}
