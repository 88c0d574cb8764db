package health

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/conf"
)

// Defaults applied to fields a pool leaves zero.
const (
	DefaultInterval          = 2 * time.Second
	DefaultTimeout           = 1 * time.Second
	DefaultRise              = 2
	DefaultFall              = 3
	DefaultBaseEjection      = 30 * time.Second
	DefaultMaxEjectedPercent = 50
	// MaxEjectionMultiplier caps how far repeated ejections stretch the
	// ejection time: at most MaxEjectionMultiplier × base_ejection.
	MaxEjectionMultiplier = 10
	// DefaultUserAgent is sent with every active check.
	DefaultUserAgent = "rafter-health-check"
)

// Options are the monitor's dependencies. Every field is optional.
type Options struct {
	// NodeID names this node in the JSON view.
	NodeID string
	// Logger receives health transitions. Default: discard.
	Logger *slog.Logger
	// Clock schedules checks and ejection expiry. Default: SystemClock().
	Clock Clock
	// Registerer receives the monitor's metrics. Nil: metrics are kept but
	// not registered anywhere.
	Registerer prometheus.Registerer
	// Seed seeds the interval jitter. Zero: a random seed.
	Seed uint64
	// DialContext opens check connections. Default: a net.Dialer; the
	// check's timeout bounds the dial.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// UserAgent is sent with checks. Default: DefaultUserAgent.
	UserAgent string
}

// Outcome is what the proxy saw of one upstream exchange.
type Outcome uint8

// Outcomes reported to Observe.
const (
	// Success: the backend answered with a non-5xx status.
	Success Outcome = iota
	// Status5xx: the backend answered with a 5xx status.
	Status5xx
	// ConnectError: the connection could not be opened (refused, unreachable, dial timeout).
	ConnectError
	// Timeout: the response head did not arrive in time.
	Timeout
	// Reset: the connection was closed or reset before a full response.
	Reset
)

// String names o as it appears in reasons.
func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case Status5xx:
		return "5xx"
	case ConnectError:
		return "connect error"
	case Timeout:
		return "timeout"
	case Reset:
		return "reset"
	}
	return "unknown"
}

type key struct{ pool, addr string }

// snapshot is immutable once published; the request path reads it without locks.
type snapshot struct {
	targets map[key]*target
	pools   map[string]*pool
}

// Monitor holds this node's health verdict for every (pool, backend) pair.
// Healthy, HealthyCount and Observe are safe for the request path; Update,
// View and Handler are not hot and may be called from any goroutine.
type Monitor struct {
	nodeID    string
	log       *slog.Logger
	clock     Clock
	client    *http.Client
	transport *http.Transport
	userAgent string
	met       *metrics

	snap atomic.Pointer[snapshot]
	// kick wakes the ejection reaper after a new ejection.
	kick chan struct{}

	// mu serializes Update with Run's start and stop. The request path never takes it.
	mu      sync.Mutex
	rng     *rand.Rand
	running bool
	runCtx  context.Context
	wg      sync.WaitGroup
	// liveCheckers counts checker goroutines, so tests can prove none leak.
	liveCheckers atomic.Int64
}

// NewMonitor returns a monitor with no targets. Call Update with the pools
// and Run to start active checks and ejection expiry.
func NewMonitor(opts Options) *Monitor {
	m := &Monitor{
		nodeID:    opts.NodeID,
		log:       opts.Logger,
		clock:     opts.Clock,
		userAgent: opts.UserAgent,
		kick:      make(chan struct{}, 1),
	}
	conf.Logger(&m.log)
	if m.clock == nil {
		m.clock = SystemClock()
	}
	if m.userAgent == "" {
		m.userAgent = DefaultUserAgent
	}
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	m.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	dial := opts.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	m.transport = &http.Transport{
		// Never an environment proxy: checks go straight to the backend.
		Proxy:       nil,
		DialContext: dial,
		// A fresh connection per check also proves the backend still accepts.
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	m.client = &http.Client{
		Transport: m.transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	m.snap.Store(&snapshot{targets: map[key]*target{}, pools: map[string]*pool{}})
	m.met = newMetrics(m, opts.Registerer)
	return m
}

// Healthy reports whether addr may receive traffic in pool. A pair the
// monitor does not know (yet) is healthy: there is no verdict against it.
// Lock-free and allocation-free.
func (m *Monitor) Healthy(pool, addr string) bool {
	t := m.snap.Load().targets[key{pool, addr}]
	return t == nil || t.healthy.Load()
}

// HealthyCount returns how many distinct backend addresses of pool are
// healthy and how many there are. An unknown pool yields 0, 0.
// Lock-free and allocation-free.
func (m *Monitor) HealthyCount(pool string) (healthy, total int) {
	p := m.snap.Load().pools[pool]
	if p == nil {
		return 0, 0
	}
	healthy, total = int(p.healthy.Load()), int(p.total.Load())
	// An Update in progress may briefly count a new target before the total.
	return min(max(healthy, 0), total), total
}

// Update makes the monitored set equal to the backends of pools. It is
// idempotent and meant to be called on every configuration change: targets
// that stay keep their state whatever else changed in their pool; new
// targets start healthy; removed ones are forgotten and their checks
// stopped. A changed health_check restarts that pool's checks with fresh
// counters but keeps each target's current verdict. pools is not retained.
func (m *Monitor) Update(pools map[string]fsm.PoolSpec) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	old := m.snap.Load()
	next := &snapshot{
		targets: make(map[key]*target, len(old.targets)),
		pools:   make(map[string]*pool, len(pools)),
	}
	for name, spec := range pools {
		p := old.pools[name]
		if p == nil {
			p = m.newPool(name)
		}
		p.cfg.Store(resolvePool(spec))
		next.pools[name] = p
		n := 0
		for _, b := range spec.Backends {
			k := key{name, b.Addr}
			if _, dup := next.targets[k]; dup {
				continue
			}
			n++
			t := old.targets[k]
			if t == nil {
				t = newTarget(p, b.Addr, now)
				p.healthy.Add(1)
			}
			next.targets[k] = t
		}
		p.total.Store(int32(n))
	}
	// Publish first, so the request path stops seeing removed targets
	// before their counts leave the pool.
	m.snap.Store(next)
	for k, t := range old.targets {
		if next.targets[k] != t {
			m.removeTargetLocked(t)
		}
	}
	for name := range old.pools {
		if next.pools[name] == nil {
			m.met.dropPool(name)
		}
	}
	for _, t := range next.targets {
		if t.pool.cfg.Load().outlier == nil {
			m.endEjection(t, now, "outlier detection disabled")
		}
		m.syncCheckerLocked(t, now)
	}
}

// Run starts active checks for the current and future targets and expires
// ejections, until ctx is done; then it stops every checker and waits for
// it. Ejected targets return only while Run runs. Run may be called again
// after it returned, not twice at once.
func (m *Monitor) Run(ctx context.Context) {
	m.mu.Lock()
	if m.running {
		m.mu.Unlock()
		m.log.Error("health monitor Run called while already running")
		return
	}
	m.running = true
	m.runCtx = ctx
	now := m.clock.Now()
	for _, t := range m.snap.Load().targets {
		m.syncCheckerLocked(t, now)
	}
	m.mu.Unlock()

	m.reap(ctx)

	m.mu.Lock()
	m.running = false
	m.runCtx = nil
	for _, t := range m.snap.Load().targets {
		m.stopCheckerLocked(t)
	}
	m.mu.Unlock()
	m.wg.Wait()
	m.transport.CloseIdleConnections()
}

// syncCheckerLocked makes t's checker match its pool's health_check.
func (m *Monitor) syncCheckerLocked(t *target, now time.Time) {
	want := t.pool.cfg.Load().check
	if !sameCheck(t.check, want) {
		m.stopCheckerLocked(t)
		t.mu.Lock()
		t.activeFails, t.activeOKs = 0, 0
		if want == nil && !t.activeUp {
			t.activeUp = true
			t.healthyReason = "active check removed"
			m.setVerdictLocked(t, now)
		}
		t.mu.Unlock()
		t.check = want
	}
	if want != nil && m.running && t.stop == nil {
		m.startCheckerLocked(t, want)
	}
}

func (m *Monitor) startCheckerLocked(t *target, spec *checkSpec) {
	ctx, cancel := context.WithCancel(m.runCtx)
	t.stop = cancel
	t.mu.Lock()
	t.gen++
	gen := t.gen
	t.mu.Unlock()
	// Each checker owns its generator: *rand.Rand is not safe for concurrent use.
	rng := rand.New(rand.NewPCG(m.rng.Uint64(), m.rng.Uint64()))
	m.wg.Add(1)
	m.liveCheckers.Add(1)
	go func() {
		defer m.wg.Done()
		defer m.liveCheckers.Add(-1)
		m.checkLoop(ctx, t, gen, spec, rng)
	}()
}

func (m *Monitor) stopCheckerLocked(t *target) {
	if t.stop == nil {
		return
	}
	t.stop()
	t.stop = nil
	// A result already in flight must not land after the stop.
	t.mu.Lock()
	t.gen++
	t.mu.Unlock()
}

func (m *Monitor) removeTargetLocked(t *target) {
	m.stopCheckerLocked(t)
	t.check = nil
	t.mu.Lock()
	defer t.mu.Unlock()
	t.removed = true
	if t.ejectedUntil.Load() != 0 {
		t.pool.ejected.Add(-1)
	}
	if t.healthy.Load() {
		t.pool.healthy.Add(-1)
	}
}
