package lease

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// round is one check on the leader: pick up leases granted or ended
// elsewhere, then expire what ran out (unless self-preservation holds) and
// finish drains whose period is over. Proposals are made without m.mu, so
// keepalives never wait for Raft.
func (m *Manager) round(ctx context.Context) {
	defer m.rounds.Add(1)
	c := m.store.Config()
	m.metrics.live.Set(float64(liveLeases(c)))
	now := m.now()
	m.mu.Lock()
	if !m.leading || !m.store.IsLeader() {
		m.mu.Unlock()
		return
	}
	m.sync(c, now)
	expire := m.dueLocked(now)
	var drained []uint64
	for id, at := range m.draining {
		if !at.After(now) {
			drained = append(drained, id)
		}
	}
	m.mu.Unlock()
	slices.Sort(drained)

	if len(expire) > 0 {
		m.expire(ctx, expire, now)
	}
	for _, id := range drained {
		m.finishDrain(ctx, id, now)
	}
}

func liveLeases(c *fsm.Config) int {
	n := 0
	for _, l := range c.Leases {
		if !l.Draining {
			n++
		}
	}
	return n
}

// sync brings the deadline maps in line with the document: leases granted
// through another node get a full TTL from now, leases that ended leave,
// revoked ones start draining. m.mu is held.
func (m *Manager) sync(c *fsm.Config, now time.Time) {
	if c.Index == m.synced {
		return
	}
	m.synced = c.Index
	for id, l := range c.Leases {
		if l.Draining {
			delete(m.live, id)
			if _, ok := m.draining[id]; !ok {
				m.draining[id] = now.Add(m.cfg.DrainPeriod)
			}
			continue
		}
		if _, ok := m.live[id]; !ok {
			m.live[id] = &deadline{at: now.Add(l.TTL.D()), ttl: l.TTL.D()}
		}
	}
	for id := range m.live {
		if _, ok := c.Leases[id]; !ok {
			delete(m.live, id)
		}
	}
	for id := range m.draining {
		if _, ok := c.Leases[id]; !ok {
			delete(m.draining, id)
		}
	}
}

// atRisk is how little time a lease may have left before it counts as
// about to expire: one check interval, or half its TTL if that is longer.
// An owner that keeps alive every TTL/3, as `rafter register` does, never
// gets below two thirds of its TTL; one that has missed a keepalive does,
// so owners that stopped together count together even though their
// deadlines are spread over a keepalive period.
func (m *Manager) atRisk(ttl time.Duration) time.Duration {
	return max(m.cfg.CheckInterval, ttl/2)
}

// dueLocked returns the ids to expire now, sorted and at most
// MaxExpirePerEntry, applying self-preservation. m.mu is held.
func (m *Manager) dueLocked(now time.Time) []uint64 {
	var due []uint64
	risky := 0
	for id, d := range m.live {
		left := d.at.Sub(now)
		if left <= 0 {
			due = append(due, id)
		}
		if left <= m.atRisk(d.ttl) {
			risky++
		}
	}
	n := len(m.live)
	if n > 0 && n >= m.cfg.SelfPreservationMinLeases && float64(risky) > m.cfg.SelfPreservationShare*float64(n) {
		if !m.held {
			m.setHeld(true)
			m.log.Warn("lease expiry held: too many leases would expire at once; the cause is more likely on our side than a mass departure",
				"live", n, "about_to_expire", risky, "overdue", len(due), "share_limit", m.cfg.SelfPreservationShare,
				"action", "check the network between the backends and the cluster; expiry resumes by itself once keepalives arrive")
		}
		return nil
	}
	if m.held {
		m.setHeld(false)
		// While expiry was held our view of the owners was unreliable:
		// the leases that ran out meanwhile get a fresh TTL, as on a
		// leader change, instead of being expired at once.
		for _, id := range due {
			d := m.live[id]
			d.at = now.Add(d.ttl)
		}
		m.log.Info("lease expiry resumed: keepalives are back", "live", n, "fresh_ttl", len(due))
		return nil
	}
	slices.Sort(due)
	if len(due) > m.cfg.MaxExpirePerEntry {
		due = due[:m.cfg.MaxExpirePerEntry]
	}
	return due
}

func (m *Manager) expire(ctx context.Context, ids []uint64, now time.Time) {
	cctx, cancel := context.WithTimeout(ctx, m.cfg.ApplyTimeout)
	idx, err := m.store.Apply(cctx, fsm.LeaseExpireCommand(ids, now))
	cancel()
	if err != nil {
		m.log.Warn("lease expiry not written; retrying next round", "leases", len(ids), "err", err)
		return
	}
	m.mu.Lock()
	for _, id := range ids {
		delete(m.live, id)
	}
	m.mu.Unlock()
	m.metrics.expired.Add(float64(len(ids)))
	m.log.Info("leases expired", "count", len(ids), "first", ids[0], "index", idx)
}

func (m *Manager) finishDrain(ctx context.Context, id uint64, now time.Time) {
	cctx, cancel := context.WithTimeout(ctx, m.cfg.ApplyTimeout)
	_, err := m.store.Apply(cctx, fsm.LeaseRevokeCommand(id, false, now))
	cancel()
	if err != nil && !errors.Is(err, fsm.ErrNotFound) {
		m.log.Warn("removing a drained lease failed; retrying next round", "lease", id, "err", err)
		return
	}
	m.mu.Lock()
	delete(m.draining, id)
	m.mu.Unlock()
}
