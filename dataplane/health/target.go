package health

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/conf"
)

// checkSpec is a pool's health_check with defaults applied. Comparable, so
// an unchanged check is recognised and its checkers left alone.
type checkSpec struct {
	path, host        string
	expect            int
	interval, timeout time.Duration
	rise, fall        int
	// The pool's tls block and send_proxy_protocol: checks connect as
	// the proxy does.
	useTLS    bool
	tls       fsm.PoolTLS
	sendProxy string
}

// outlierSpec is a pool's outlier block with defaults applied.
type outlierSpec struct {
	consecutive5xx  uint32 // 0: this trigger is off
	consecutiveConn uint32 // 0: this trigger is off
	base            time.Duration
	maxPercent      int
}

type poolConfig struct {
	check   *checkSpec   // nil: no active checks
	outlier *outlierSpec // nil: no passive ejection
}

// pool outlives Updates that keep its name, so its counts stay true.
type pool struct {
	name    string
	cfg     atomic.Pointer[poolConfig]
	total   atomic.Int32
	healthy atomic.Int32
	ejected atomic.Int32
	met     poolMetrics
}

func (m *Monitor) newPool(name string) *pool {
	return &pool{name: name, met: m.met.forPool(name)}
}

func resolvePool(spec fsm.PoolSpec) *poolConfig {
	c := &poolConfig{}
	if hc := spec.HealthCheck; hc != nil {
		s := &checkSpec{
			path:     hc.Path,
			host:     hc.Host,
			expect:   hc.Expect,
			interval: hc.Interval.D(),
			timeout:  hc.Timeout.D(),
			rise:     hc.Rise,
			fall:     hc.Fall,
		}
		if !strings.HasPrefix(s.path, "/") {
			s.path = "/" + s.path
		}
		conf.Positive(&s.interval, DefaultInterval)
		conf.Positive(&s.timeout, DefaultTimeout)
		conf.Positive(&s.rise, DefaultRise)
		conf.Positive(&s.fall, DefaultFall)
		if spec.TLS != nil {
			s.useTLS, s.tls = true, *spec.TLS
		}
		s.sendProxy = spec.SendProxyProtocol
		c.check = s
	}
	if o := spec.Outlier; o != nil && (o.Consecutive5xx > 0 || o.ConsecutiveConnectErrors > 0) {
		s := &outlierSpec{
			consecutive5xx:  uint32(max(o.Consecutive5xx, 0)),
			consecutiveConn: uint32(max(o.ConsecutiveConnectErrors, 0)),
			base:            o.BaseEjection.D(),
			maxPercent:      o.MaxEjectedPercent,
		}
		conf.Positive(&s.base, DefaultBaseEjection)
		conf.Positive(&s.maxPercent, DefaultMaxEjectedPercent)
		s.maxPercent = min(s.maxPercent, 100)
		c.outlier = s
	}
	return c
}

func sameCheck(a, b *checkSpec) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// target is the state of one (pool, addr). The request path touches only
// its atomics; everything else is guarded by mu.
type target struct {
	pool *pool
	addr string

	// healthy is the verdict: active checks say up and not ejected.
	// Written only under mu, read without it.
	healthy atomic.Bool
	// ejectedUntil is in Unix nanoseconds; 0 when not ejected.
	ejectedUntil atomic.Int64
	// Passive streaks, reset by a success and by every verdict change.
	c5xx  atomic.Uint32
	cConn atomic.Uint32

	mu            sync.Mutex
	removed       bool
	activeUp      bool
	activeFails   int
	activeOKs     int
	activeReason  string // why active checks say down
	ejectReason   string
	healthyReason string // why the target is (back) in rotation
	reason        string // the reason shown: one of the three above
	since         time.Time
	checks        uint64
	lastCheck     time.Time
	ejections     int // total ejections of this target
	multiplier    int // ejection time multiplier, 1..MaxEjectionMultiplier
	lastReturn    time.Time
	// gen changes whenever a checker starts or stops; a checker records a
	// result only while its generation is current.
	gen uint64

	// Guarded by Monitor.mu.
	check *checkSpec
	stop  context.CancelFunc
}

func newTarget(p *pool, addr string, now time.Time) *target {
	t := &target{
		pool:          p,
		addr:          addr,
		activeUp:      true,
		healthyReason: "new backend",
		reason:        "new backend",
		since:         now,
	}
	t.healthy.Store(true)
	return t
}

// setVerdictLocked recomputes the verdict from the active and passive
// state; t.mu must be held.
func (m *Monitor) setVerdictLocked(t *target, now time.Time) {
	h := t.activeUp && t.ejectedUntil.Load() == 0
	switch {
	case !t.activeUp:
		t.reason = t.activeReason
	case !h:
		t.reason = t.ejectReason
	default:
		t.reason = t.healthyReason
	}
	if h == t.healthy.Load() {
		return
	}
	t.healthy.Store(h)
	t.since = now
	t.c5xx.Store(0)
	t.cConn.Store(0)
	if t.removed {
		return
	}
	if h {
		t.pool.healthy.Add(1)
		t.pool.met.toHealthy.Inc()
	} else {
		t.pool.healthy.Add(-1)
		t.pool.met.toUnhealthy.Inc()
	}
	m.log.Info("backend health changed",
		"pool", t.pool.name, "addr", t.addr, "healthy", h, "reason", t.reason)
}

// eject takes t out of rotation after a passive streak, unless that would
// put more than max_ejected_percent of its pool out at once.
func (m *Monitor) eject(t *target, o *outlierSpec, last Outcome) {
	now := m.clock.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.c5xx.Store(0)
	t.cConn.Store(0)
	if t.removed || !t.healthy.Load() || t.ejectedUntil.Load() != 0 {
		return
	}
	p := t.pool
	allowed := int32(int(p.total.Load()) * o.maxPercent / 100)
	for {
		n := p.ejected.Load()
		if n >= allowed {
			p.met.suppressed.Inc()
			m.log.Warn("outlier ejection suppressed: max_ejected_percent reached",
				"pool", p.name, "addr", t.addr, "ejected", n, "max_ejected_percent", o.maxPercent,
				"action", "more of the pool's backends fail than it may eject: check those backends, or raise outlier.max_ejected_percent")
			return
		}
		if p.ejected.CompareAndSwap(n, n+1) {
			break
		}
	}
	// A target that stayed in rotation for the longest ejection time starts over.
	if !t.lastReturn.IsZero() && now.Sub(t.lastReturn) >= MaxEjectionMultiplier*o.base {
		t.multiplier = 0
	}
	t.multiplier = min(t.multiplier+1, MaxEjectionMultiplier)
	t.ejections++
	d := o.base * time.Duration(t.multiplier)
	t.ejectedUntil.Store(now.Add(d).UnixNano())
	if last == Status5xx {
		t.ejectReason = fmt.Sprintf("outlier: %d consecutive 5xx", o.consecutive5xx)
	} else {
		t.ejectReason = fmt.Sprintf("outlier: %d consecutive connect errors (last: %s)", o.consecutiveConn, last)
	}
	p.met.ejections.Inc()
	m.setVerdictLocked(t, now)
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// endEjection returns t from an ejection, if it is ejected.
func (m *Monitor) endEjection(t *target, now time.Time, why string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ejectedUntil.Load() == 0 {
		return
	}
	t.ejectedUntil.Store(0)
	if !t.removed {
		t.pool.ejected.Add(-1)
	}
	t.lastReturn = now
	t.healthyReason = why
	m.setVerdictLocked(t, now)
}
