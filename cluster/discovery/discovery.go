package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/rafterlb/rafter/cluster/leading"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/conf"
)

// Instance is a running instance as a listing reports it.
type Instance struct {
	ID        string
	PrivateIP string
	Zone      string
	Tags      map[string]string
}

// Lister lists the running instances that carry every given tag. It must
// fail, not return a partial result, when any page of the listing fails.
type Lister interface {
	ListInstances(ctx context.Context, tags map[string]string) ([]Instance, error)
}

// ListerFunc adapts a function to Lister.
type ListerFunc func(ctx context.Context, tags map[string]string) ([]Instance, error)

// ListInstances calls f.
func (f ListerFunc) ListInstances(ctx context.Context, tags map[string]string) ([]Instance, error) {
	return f(ctx, tags)
}

// Writer is what the Discoverer needs of the cluster node.
type Writer interface {
	Config() *fsm.Config
	Apply(ctx context.Context, cmd *fsm.Command) (uint64, error)
	VerifyLeader(ctx context.Context) error
}

// Config configures a Discoverer.
type Config struct {
	Lister Lister
	Writer Writer
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// Now is the clock deciding when a pool is due and how long a backend
	// has been absent (default time.Now).
	Now func() time.Time
	// Tick is how often Run looks for due pools (default 1s).
	Tick time.Duration
	// DefaultRefresh applies to pools without discovery.ec2.refresh
	// (default 30s); no pool is listed more often than MinRefresh (5s).
	DefaultRefresh time.Duration
	MinRefresh     time.Duration
	// GraceFactor × the pool's refresh is how long an instance must be
	// continuously absent before its backend is removed (default 2).
	GraceFactor int
	// MaxBackoff caps the delay after consecutive failures (default 5m).
	MaxBackoff time.Duration
	// Timeout bounds one listing, and one write (default 1m).
	Timeout time.Duration
}

// DefaultConfig returns the production settings; Lister and Writer must
// still be set.
func DefaultConfig() Config {
	return Config{
		Tick:           time.Second,
		DefaultRefresh: 30 * time.Second,
		MinRefresh:     5 * time.Second,
		GraceFactor:    2,
		MaxBackoff:     5 * time.Minute,
		Timeout:        time.Minute,
	}
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Lister == nil:
		return errors.New("discovery.lister: required")
	case c.Writer == nil:
		return errors.New("discovery.writer: required")
	}
	if err := conf.NotNegative(
		conf.Field("discovery.tick", c.Tick),
		conf.Field("discovery.min_refresh", c.MinRefresh),
	); err != nil {
		return err
	}
	if c.DefaultRefresh < 0 || (c.DefaultRefresh > 0 && c.DefaultRefresh < c.MinRefresh) {
		return fmt.Errorf("discovery.default_refresh: %s is below min_refresh %s", c.DefaultRefresh, c.MinRefresh)
	}
	return conf.NotNegative(
		conf.Field("discovery.grace_factor", c.GraceFactor),
		conf.Field("discovery.max_backoff", c.MaxBackoff),
		conf.Field("discovery.timeout", c.Timeout),
	)
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	conf.Logger(&c.Logger)
	conf.Now(&c.Now)
	conf.Default(&c.Tick, d.Tick)
	conf.Default(&c.MinRefresh, d.MinRefresh)
	conf.Default(&c.DefaultRefresh, max(d.DefaultRefresh, c.MinRefresh))
	conf.Default(&c.GraceFactor, d.GraceFactor)
	conf.Default(&c.MaxBackoff, d.MaxBackoff)
	conf.Default(&c.Timeout, d.Timeout)
	return c
}

// Discoverer keeps discovered pools in step with EC2 while this node leads.
type Discoverer struct {
	cfg Config
	log *slog.Logger
	m   metrics

	mu    sync.Mutex            // serializes rounds and guards pools
	pools map[string]*poolState // by pool name; reset at every leader term
}

// poolState is what one leader term has learned about a pool.
type poolState struct {
	spec     string    // the discovery spec these facts were learned under
	next     time.Time // when the pool is next due
	failures int       // consecutive failed rounds, for backoff
	// absent maps the address of a discovery-managed backend (source ec2)
	// to the first listing of this term it was missing from.
	absent map[string]time.Time
}

// New builds a Discoverer and registers its metrics.
func New(cfg Config) (*Discoverer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	cfg = cfg.withDefaults()
	m := newMetrics()
	if cfg.Registerer != nil {
		if err := m.register(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("discovery: registering metrics: %w", err)
		}
	}
	return &Discoverer{cfg: cfg, log: cfg.Logger, m: m, pools: map[string]*poolState{}}, nil
}

// Run follows leadership (as cluster.Node.WatchLeadership reports it) and
// runs rounds every Tick while this node leads. It returns when ctx ends or
// the channel closes, after the current round has stopped.
func (d *Discoverer) Run(ctx context.Context, leadership <-chan leading.Leadership) error {
	return leading.Follow(ctx, leadership, d.startTerm, func(l leading.Leadership) {
		if l.Leader {
			d.log.Info("ec2 discovery started: this node leads", "term", l.Term)
		} else {
			d.log.Info("ec2 discovery stopped: this node's term ended")
		}
	})
}

// startTerm forgets the previous term and runs rounds until the returned
// function is called; that function waits for the rounds to stop.
func (d *Discoverer) startTerm(ctx context.Context, _ uint64) func() {
	d.Reset()
	tctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.lead(tctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

func (d *Discoverer) lead(ctx context.Context) {
	t := time.NewTicker(d.cfg.Tick)
	defer t.Stop()
	for {
		d.Round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Reset forgets what the current term learned, as a new leader term must:
// another leader may have changed the pools meanwhile.
func (d *Discoverer) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pools = map[string]*poolState{}
}

// Round refreshes every discovered pool that is due. Run calls it every
// Tick; it is exported so that tests (with a manual clock) and a manual
// sync can drive it.
func (d *Discoverer) Round(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cfg := d.cfg.Writer.Config()
	if cfg == nil {
		return
	}
	now := d.cfg.Now()
	for name := range d.pools {
		if p, ok := cfg.Pools[name]; !ok || p.Spec.Discovery == nil || p.Spec.Discovery.EC2 == nil {
			delete(d.pools, name)
		}
	}
	// Pools with the same tags share one listing per round.
	listings := map[string]listing{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Pools)) {
		if ctx.Err() != nil {
			return
		}
		p := cfg.Pools[name]
		if p.Spec.Discovery == nil || p.Spec.Discovery.EC2 == nil {
			continue
		}
		d.syncPool(ctx, now, p, listings)
	}
}

type listing struct {
	instances []Instance
	err       error
}

func (d *Discoverer) refresh(ec2 *fsm.EC2Discovery) time.Duration {
	r := ec2.Refresh.D()
	if r <= 0 {
		r = d.cfg.DefaultRefresh
	}
	return max(r, d.cfg.MinRefresh)
}

func specKey(ec2 *fsm.EC2Discovery) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(ec2.Tags)) {
		fmt.Fprintf(&b, "%q=%q,", k, ec2.Tags[k])
	}
	return b.String()
}

func (d *Discoverer) syncPool(ctx context.Context, now time.Time, p *fsm.Pool, listings map[string]listing) {
	ec2 := p.Spec.Discovery.EC2
	refresh := d.refresh(ec2)
	key := specKey(ec2)
	spec := key + ":" + strconv.Itoa(ec2.Port)
	st := d.pools[p.Name]
	if st == nil {
		st = &poolState{absent: map[string]time.Time{}}
		d.pools[p.Name] = st
	}
	if st.spec != spec {
		// New tags or port: list now rather than at the old schedule.
		st.spec, st.next = spec, time.Time{}
	}
	if now.Before(st.next) {
		return
	}

	l, ok := listings[key]
	if !ok {
		lctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
		l.instances, l.err = d.cfg.Lister.ListInstances(lctx, maps.Clone(ec2.Tags))
		cancel()
		listings[key] = l
	}
	d.m.listings.WithLabelValues(p.Name).Inc()
	if l.err != nil {
		d.m.errors.WithLabelValues(p.Name, "list").Inc()
		d.fail(st, now, refresh)
		d.log.Warn("ec2 discovery: listing failed; no backend changes this round",
			"pool", p.Name, "error", l.err, "retry_in", st.next.Sub(now), "action", "retried; if it repeats, check the EC2 permissions and API limits")
		return
	}

	want := map[string]Instance{}
	for _, in := range l.instances {
		if in.PrivateIP == "" || net.ParseIP(in.PrivateIP) == nil {
			continue
		}
		want[net.JoinHostPort(in.PrivateIP, strconv.Itoa(ec2.Port))] = in
	}

	grace := time.Duration(d.cfg.GraceFactor) * refresh
	var (
		next    = make([]fsm.Backend, 0, len(p.Spec.Backends)+len(want))
		have    = map[string]bool{}
		added   []fsm.Backend
		removed []string
		changed bool
	)
	for _, b := range p.Spec.Backends {
		have[b.Addr] = true
		in, listed := want[b.Addr]
		if b.Lease != 0 {
			next = append(next, b) // lease-attached: its owner keeps it alive
			continue
		}
		if listed && b.Source == fsm.BackendSourceEC2 {
			delete(st.absent, b.Addr)
			if in.Zone != "" && b.Zone != in.Zone {
				d.log.Info("ec2 discovery: backend zone updated", "pool", p.Name, "addr", b.Addr,
					"instance", in.ID, "from", b.Zone, "to", in.Zone, "reason", "instance placement")
				b.Zone = in.Zone
				changed = true
			}
			next = append(next, b)
			continue
		}
		if b.Source != fsm.BackendSourceEC2 {
			next = append(next, b) // static: the operator's, even if an instance matches
			continue
		}
		since, ok := st.absent[b.Addr]
		if !ok {
			st.absent[b.Addr] = now
			since = now
		}
		if now.Sub(since) < grace {
			next = append(next, b)
			continue
		}
		removed = append(removed, b.Addr)
		changed = true
		d.log.Info("ec2 discovery: removing backend", "pool", p.Name, "addr", b.Addr,
			"reason", "instance absent from the listing", "absent_since", since, "grace", grace)
	}
	for _, addr := range slices.Sorted(maps.Keys(want)) {
		if have[addr] {
			continue
		}
		in := want[addr]
		b := fsm.Backend{Addr: addr, Weight: 1, Zone: in.Zone, Source: fsm.BackendSourceEC2}
		next = append(next, b)
		added = append(added, b)
		changed = true
		d.log.Info("ec2 discovery: adding backend", "pool", p.Name, "addr", addr, "instance", in.ID,
			"zone", in.Zone, "reason", "running instance matches tags "+key)
	}
	if !changed {
		d.ok(st, now, refresh)
		return
	}
	if err := d.write(ctx, p, next); err != nil {
		if errors.Is(err, fsm.ErrConflict) {
			d.m.errors.WithLabelValues(p.Name, "conflict").Inc()
			d.log.Info("ec2 discovery: pool changed concurrently; trying again next round", "pool", p.Name, "error", err)
			// The operator's edit stands; look again at the next tick.
			st.next = now
			return
		}
		d.m.errors.WithLabelValues(p.Name, "write").Inc()
		d.fail(st, now, refresh)
		d.log.Warn("ec2 discovery: writing pool failed", "pool", p.Name, "error", err, "retry_in", st.next.Sub(now))
		return
	}
	for _, a := range removed {
		delete(st.absent, a)
	}
	d.m.added.WithLabelValues(p.Name).Add(float64(len(added)))
	d.m.removed.WithLabelValues(p.Name).Add(float64(len(removed)))
	d.ok(st, now, refresh)
}

func (d *Discoverer) ok(st *poolState, now time.Time, refresh time.Duration) {
	st.failures = 0
	st.next = now.Add(refresh)
}

// fail schedules the next try with exponential backoff from the refresh.
func (d *Discoverer) fail(st *poolState, now time.Time, refresh time.Duration) {
	st.failures++
	delay := refresh
	for i := 1; i < st.failures && delay < d.cfg.MaxBackoff; i++ {
		delay *= 2
	}
	st.next = now.Add(min(delay, max(d.cfg.MaxBackoff, refresh)))
}

// write puts the pool with its new backends, compare-and-set on the
// modify_index it was read at, after confirming leadership.
func (d *Discoverer) write(ctx context.Context, p *fsm.Pool, backends []fsm.Backend) error {
	spec := p.Spec
	spec.Backends = backends
	raw, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("encode pool %s: %w", p.Name, err)
	}
	wctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	if err := d.cfg.Writer.VerifyLeader(wctx); err != nil {
		return fmt.Errorf("verify leader: %w", err)
	}
	cas := p.ModifyIndex
	if _, err := d.cfg.Writer.Apply(wctx, fsm.PutCommand(fsm.Object{Kind: fsm.KindPool, Name: p.Name, Spec: raw}, &cas)); err != nil {
		return fmt.Errorf("put pool %s: %w", p.Name, err)
	}
	return nil
}

type metrics struct {
	listings *prometheus.CounterVec
	errors   *prometheus.CounterVec
	added    *prometheus.CounterVec
	removed  *prometheus.CounterVec
}

func newMetrics() metrics {
	return metrics{
		listings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_discovery_listings_total", Help: "EC2 listings used to refresh a pool.",
		}, []string{"pool"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_discovery_errors_total", Help: "Failed discovery rounds by stage (list, write, conflict).",
		}, []string{"pool", "stage"}),
		added: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_discovery_backends_added_total", Help: "Backends added by EC2 discovery.",
		}, []string{"pool"}),
		removed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_discovery_backends_removed_total", Help: "Backends removed by EC2 discovery.",
		}, []string{"pool"}),
	}
}

func (m metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.listings, m.errors, m.added, m.removed} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
