package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cluster/leading"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/conf"
)

// Store is what the Manager needs from the Raft node (*cluster.Node
// implements it).
type Store interface {
	Apply(ctx context.Context, cmd *fsm.Command) (uint64, error)
	Config() *fsm.Config
	IsLeader() bool
	WatchLeadership() (ch <-chan leading.Leadership, cancel func())
	// ConsistentConfig is used once per leadership term: a new leader
	// must have applied every committed grant before it answers keepalives.
	ConsistentConfig(ctx context.Context) (*fsm.Config, error)
}

// Config configures a Manager.
type Config struct {
	Store  Store
	Logger *slog.Logger // default: discard
	// Registerer receives the lease metrics (default: a private registry).
	Registerer prometheus.Registerer
	// Now is the clock deadlines and commands use (default time.Now).
	Now func() time.Time
	// CheckInterval is how often the leader looks for expired leases.
	CheckInterval time.Duration
	// DrainPeriod is how long a revoked lease's backends stay in their
	// pools marked drain before they are removed; 0 removes them at once.
	DrainPeriod time.Duration
	// SelfPreservationShare: when more than this share (0 < s <= 1) of the
	// live leases would expire within one check interval, expiry is held.
	// 1 turns self-preservation off.
	SelfPreservationShare float64
	// SelfPreservationMinLeases: with fewer live leases than this, expiry
	// is never held (one of two leases leaving is not a mass departure).
	SelfPreservationMinLeases int
	// MaxExpirePerEntry bounds the ids of one lease_expire entry; the rest
	// wait for the next round.
	MaxExpirePerEntry int
	// ApplyTimeout bounds each write the Manager proposes by itself.
	ApplyTimeout time.Duration
}

// DefaultConfig returns a Config with every optional field at its default;
// the caller sets Store, Logger and Registerer.
func DefaultConfig() Config {
	return Config{
		CheckInterval:             time.Second,
		DrainPeriod:               5 * time.Second,
		SelfPreservationShare:     0.5,
		SelfPreservationMinLeases: 10,
		MaxExpirePerEntry:         1000,
		ApplyTimeout:              10 * time.Second,
	}
}

// Validate reports the first problem with c, naming the field.
func (c *Config) Validate() error {
	switch {
	case c.Store == nil:
		return errors.New("lease config: store: required")
	case c.CheckInterval <= 0:
		return fmt.Errorf("lease config: check_interval: must be positive, got %v", c.CheckInterval)
	case c.DrainPeriod < 0:
		return fmt.Errorf("lease config: drain_period: must not be negative, got %v", c.DrainPeriod)
	case !(c.SelfPreservationShare > 0 && c.SelfPreservationShare <= 1):
		return fmt.Errorf("lease config: self_preservation_share: must be in (0, 1], got %v", c.SelfPreservationShare)
	case c.SelfPreservationMinLeases < 0:
		return fmt.Errorf("lease config: self_preservation_min_leases: must not be negative, got %d", c.SelfPreservationMinLeases)
	case c.MaxExpirePerEntry <= 0:
		return fmt.Errorf("lease config: max_expire_per_entry: must be positive, got %d", c.MaxExpirePerEntry)
	case c.ApplyTimeout <= 0:
		return fmt.Errorf("lease config: apply_timeout: must be positive, got %v", c.ApplyTimeout)
	}
	return nil
}

// Manager keeps lease deadlines on the leader and proposes expiry. On
// every node it answers Grant, KeepAlive and Revoke; on a follower those
// return an error wrapping cluster.ErrNotLeader so the caller forwards
// them. Run drives it.
type Manager struct {
	cfg     Config
	store   Store
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	rounds  atomic.Uint64 // completed check rounds, for tests to wait on

	mu sync.Mutex // guards everything below
	// leading: this node leads and has caught up with the log, so its
	// deadlines cover every lease.
	leading  bool
	term     uint64 // the Raft term of the office held, while leading
	live     map[uint64]*deadline
	draining map[uint64]time.Time // removal time of revoked leases' backends
	held     bool                 // self-preservation holds expiry
	synced   uint64               // Config index the maps were last compared with
}

type deadline struct {
	at  time.Time
	ttl time.Duration
}

// New returns a Manager; it does nothing until Run.
func New(cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	conf.Logger(&cfg.Logger)
	conf.Now(&cfg.Now)
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Manager{
		cfg:      cfg,
		store:    cfg.Store,
		log:      cfg.Logger,
		now:      cfg.Now,
		metrics:  met,
		live:     make(map[uint64]*deadline),
		draining: make(map[uint64]time.Time),
	}, nil
}

// notFound is the answer for a lease that does not exist (never granted,
// expired, revoked or being revoked).
func notFound(id uint64) error {
	return &fsm.FieldError{Field: "id", Message: fmt.Sprintf("lease %d not found (expired or revoked)", id), Err: fsm.ErrNotFound}
}

// Grant grants a lease of ttl (fsm.MinLeaseTTL..fsm.MaxLeaseTTL) and
// returns it with the index of the entry that granted it (its ID).
func (m *Manager) Grant(ctx context.Context, ttl time.Duration) (fsm.Lease, error) {
	now := m.now()
	idx, err := m.store.Apply(ctx, fsm.LeaseGrantCommand(ttl, now))
	if err != nil {
		return fsm.Lease{}, fmt.Errorf("grant lease: %w", err)
	}
	m.mu.Lock()
	if m.leading {
		m.live[idx] = &deadline{at: now.Add(ttl), ttl: ttl}
	}
	m.mu.Unlock()
	return fsm.Lease{ID: idx, TTL: fsm.Duration(ttl), GrantedAt: now.UTC()}, nil
}

// KeepAlive renews lease id for its full TTL and returns the TTL. It
// writes nothing to Raft. A follower answers cluster.ErrNotLeader; a
// leader still catching up answers cluster.ErrNoLeader (retry shortly);
// an unknown, expired or revoked lease gives a *fsm.FieldError wrapping
// fsm.ErrNotFound.
func (m *Manager) KeepAlive(_ context.Context, id uint64) (time.Duration, error) {
	m.mu.Lock()
	if !m.leading {
		m.mu.Unlock()
		if m.store.IsLeader() {
			return 0, fmt.Errorf("keepalive lease %d: %w: the leader is taking office", id, cluster.ErrNoLeader)
		}
		return 0, fmt.Errorf("keepalive lease %d: %w", id, cluster.ErrNotLeader)
	}
	d, ok := m.live[id]
	if !ok {
		// Granted through another node's Manager since the last round.
		l, inConfig := m.store.Config().Leases[id]
		if !inConfig || l.Draining {
			m.mu.Unlock()
			return 0, notFound(id)
		}
		d = &deadline{ttl: l.TTL.D()}
		m.live[id] = d
	}
	d.at = m.now().Add(d.ttl)
	ttl := d.ttl
	m.mu.Unlock()
	m.metrics.keepalives.Inc()
	return ttl, nil
}

// Revoke ends lease id. With a drain period its backends are first marked
// drain and removed by the leader once the period is over; without one
// they leave at once. It returns the index of the revoking entry.
func (m *Manager) Revoke(ctx context.Context, id uint64) (uint64, error) {
	now := m.now()
	drain := m.cfg.DrainPeriod > 0
	idx, err := m.store.Apply(ctx, fsm.LeaseRevokeCommand(id, drain, now))
	if err != nil {
		return 0, fmt.Errorf("revoke lease %d: %w", id, err)
	}
	m.mu.Lock()
	delete(m.live, id)
	if drain && m.leading {
		if _, ok := m.draining[id]; !ok {
			m.draining[id] = now.Add(m.cfg.DrainPeriod)
		}
	}
	m.mu.Unlock()
	return idx, nil
}

// Held reports whether self-preservation holds expiry back right now.
func (m *Manager) Held() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.held
}

// Run follows this node's leadership and, while it leads, checks deadlines
// every CheckInterval, until ctx is done. Every term starts afresh: when
// leadership was lost and regained the deadlines of the old term are
// dropped and every lease gets a fresh TTL again.
func (m *Manager) Run(ctx context.Context) {
	lead, cancel := m.store.WatchLeadership()
	defer cancel()
	t := time.NewTicker(m.cfg.CheckInterval)
	defer t.Stop()
	defer m.stepDown()
	var want uint64 // the term to hold office in; 0 while not leading
	for {
		select {
		case <-ctx.Done():
			return
		case l, ok := <-lead:
			if !ok {
				lead = nil // the node closed
				l = leading.Leadership{}
			}
			if !l.Leader {
				want = 0
				m.stepDown()
				continue
			}
			if l.Term == want {
				continue
			}
			want = l.Term
			m.stepDown()
			m.takeOffice(ctx, want)
		case <-t.C:
			if term, ok := m.Term(); want != 0 && (!ok || term != want) {
				m.takeOffice(ctx, want)
			}
			m.round(ctx)
		}
	}
}

// Term reports the Raft term in which this Manager holds office; ok is
// false while it does not (a follower, or a leader still taking office).
func (m *Manager) Term() (term uint64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.term, m.leading
}

// takeOffice catches up with the log, then gives every lease a fresh full
// TTL: the previous leader's deadlines died with it, and owners that kept
// sending keepalives (to it, or into an election) must not lose their
// leases. On failure the next tick tries again.
func (m *Manager) takeOffice(ctx context.Context, term uint64) {
	cctx, cancel := context.WithTimeout(ctx, m.cfg.ApplyTimeout)
	c, err := m.store.ConsistentConfig(cctx)
	cancel()
	if err != nil {
		m.log.Debug("lease manager: not taking office yet", "err", err)
		return
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.live)
	clear(m.draining)
	for id, l := range c.Leases {
		if l.Draining {
			m.draining[id] = now.Add(m.cfg.DrainPeriod)
			continue
		}
		m.live[id] = &deadline{at: now.Add(l.TTL.D()), ttl: l.TTL.D()}
	}
	m.synced = c.Index
	m.leading, m.term = true, term
	m.setHeld(false)
	m.log.Info("lease manager: leading; every lease has a fresh TTL", "term", term, "leases", len(m.live), "draining", len(m.draining))
}

func (m *Manager) stepDown() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.leading {
		m.log.Info("lease manager: no longer leading", "term", m.term)
	}
	m.leading, m.term = false, 0
	clear(m.live)
	clear(m.draining)
	m.setHeld(false)
}

// setHeld records the self-preservation state; m.mu is held.
func (m *Manager) setHeld(v bool) {
	m.held = v
	if v {
		m.metrics.held.Set(1)
	} else {
		m.metrics.held.Set(0)
	}
}
