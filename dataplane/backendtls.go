package dataplane

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/dataplane/upstreamtls"
	"github.com/rafterlb/rafter/fsm"
)

// poolTLS is a pool's loaded tls block. The registry keeps one per pool
// for as long as the block is unchanged, so its backends keep their
// clients (and TLS sessions) across table swaps.
type poolTLS struct {
	spec fsm.PoolTLS
	cfg  *tls.Config // nil when err is set
	err  error       // the block could not be loaded: every dial fails
}

// tlsMetrics count the TLS side of backend connections.
type tlsMetrics struct {
	errors     *prometheus.CounterVec
	handshakes *prometheus.CounterVec
	insecure   *prometheus.GaugeVec
}

func newTLSMetrics(reg prometheus.Registerer) (*tlsMetrics, error) {
	m := &tlsMetrics{
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_backend_tls_errors_total",
			Help: "Failed TLS exchanges with a pool's backends, by pool and reason (verify, rejected, handshake, config).",
		}, []string{"pool", "reason"}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_backend_tls_handshakes_total",
			Help: "Completed TLS handshakes with a pool's backends, by pool and whether the session was resumed.",
		}, []string{"pool", "resumed"}),
		insecure: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rafter_pool_tls_insecure_skip_verify",
			Help: "1 for a pool whose backend certificates are not verified (tls.insecure_skip_verify).",
		}, []string{"pool"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.errors, m.handshakes, m.insecure} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// reasonConfig counts dials refused because the pool's tls block could
// not be loaded (a missing file, a bad key).
const reasonConfig = "config"

// poolTLS returns the loaded tls block of pool, loading it when it is new
// or changed; nil for a pool without one. Called on the compile path.
func (r *registry) poolTLS(pool string, spec *fsm.PoolTLS) *poolTLS {
	if spec == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tls == nil {
		r.tls = map[string]*poolTLS{}
	}
	// A block that failed to load is tried again at every table build,
	// so files put in place later are picked up by the next change.
	if pt := r.tls[pool]; pt != nil && pt.spec == *spec && pt.err == nil {
		return pt
	}
	pt := &poolTLS{spec: *spec}
	pt.cfg, pt.err = upstreamtls.Load(spec)
	r.tls[pool] = pt
	return pt
}

// checkPoolTLS runs after each compile: it forgets the tls blocks of
// pools that are gone, and says loudly, at every table build, which pools
// do not verify their backends and which cannot reach them at all.
func (d *Dataplane) checkPoolTLS(cfg *fsm.Config) {
	r := d.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, pt := range r.tls {
		p := (*fsm.Pool)(nil)
		if cfg != nil {
			p = cfg.Pools[name]
		}
		if p == nil || p.Spec.TLS == nil {
			delete(r.tls, name)
			if d.tlsm != nil {
				d.tlsm.insecure.DeletePartialMatch(prometheus.Labels{"pool": name})
				d.tlsm.errors.DeletePartialMatch(prometheus.Labels{"pool": name})
				d.tlsm.handshakes.DeletePartialMatch(prometheus.Labels{"pool": name})
			}
			continue
		}
		insecure := 0.0
		if pt.spec.InsecureSkipVerify {
			insecure = 1
			d.log.Warn("pool does not verify its backends' TLS certificates: anyone on the path can impersonate them",
				"pool", name, "setting", "tls.insecure_skip_verify",
				"action", "give the pool tls.ca or tls.ca_file (the CA that signed the backends' certificates) and remove insecure_skip_verify")
		}
		if d.tlsm != nil {
			d.tlsm.insecure.WithLabelValues(name).Set(insecure)
		}
		if pt.err != nil {
			d.log.Error("pool tls cannot be loaded: every request to the pool fails with 502", "pool", name, "err", pt.err,
				"action", "put the named files on this node (readable by rafter) or fix the pool's tls block; the next configuration change loads them again")
		}
	}
}

// startTLS runs the TLS handshake on a new backend connection of a pool
// with tls; c is returned unchanged for a pool without.
func (b *backendState) startTLS(c net.Conn, timeout time.Duration) (net.Conn, error) {
	pt := b.settings.tls
	if pt == nil {
		return c, nil
	}
	if pt.err != nil {
		_ = c.Close()
		b.tlsFailed(reasonConfig, pt.err)
		return nil, &dialError{fmt.Errorf("pool tls unusable: %w", pt.err)}
	}
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	tc, err := upstreamtls.Handshake(c, b.tlsCfg, timeout)
	if err != nil {
		b.tlsFailed(upstreamtls.Reason(err), err)
		return nil, &dialError{fmt.Errorf("tls handshake with %s: %w", b.addr, err)}
	}
	if m := b.tlsm; m != nil {
		resumed := "false"
		if tc.ConnectionState().DidResume {
			resumed = "true"
		}
		m.handshakes.WithLabelValues(b.pool, resumed).Inc()
	}
	return &tlsUpstream{Conn: tc, b: b}, nil
}

// tlsFailed counts a failed TLS exchange and logs it, at most every 10s
// per backend (a misconfigured pool fails every connection).
func (b *backendState) tlsFailed(reason string, err error) {
	if b.tlsm != nil {
		b.tlsm.errors.WithLabelValues(b.pool, reason).Inc()
	}
	now := time.Now().UnixNano()
	last := b.tlsLogged.Load()
	if b.log == nil || now-last < int64(10*time.Second) || !b.tlsLogged.CompareAndSwap(last, now) {
		return
	}
	b.log.Warn("TLS with backend failed", "pool", b.pool, "backend", b.addr, "reason", reason, "err", err,
		"action", tlsAction(reason))
}

func tlsAction(reason string) string {
	switch reason {
	case upstreamtls.ReasonVerify:
		return "the backend's certificate must be signed by the pool's tls.ca/ca_file and name tls.server_name (or the backend's host)"
	case upstreamtls.ReasonRejected:
		return "the backend refused the handshake: give the pool the client certificate it expects (tls.cert_file, tls.key_file)"
	case reasonConfig:
		return "fix the pool's tls block or the files it names on this node"
	}
	return "check that the backend speaks TLS on this port"
}

// tlsUpstream is a backend TLS connection. It counts the alert a TLS 1.3
// backend sends on the first read when it refuses our client certificate
// (the client's handshake is over by then).
type tlsUpstream struct {
	net.Conn
	b      *backendState
	failed atomic.Bool
}

func (c *tlsUpstream) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && upstreamtls.IsRemoteAlert(err) && c.failed.CompareAndSwap(false, true) {
		c.b.tlsFailed(upstreamtls.ReasonRejected, err)
	}
	return n, err
}
