package dataplane

import (
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/rafterlb/rafter/dataplane/upstreamtls"
)

// connSettings are the parts of a pool's spec baked into a backend's
// HostClient; a change replaces the client.
type connSettings struct {
	maxConns int
	maxWait  time.Duration
	tls      *poolTLS // nil: plain TCP
	// sendProxy is the pool's send_proxy_protocol ("", "v1", "v2").
	sendProxy string
}

// backendState is what survives a table swap for a backend that stays in
// its pool: the connection pool and the active request count.
type backendState struct {
	pool, addr string
	settings   connSettings
	dial       func(addr string, timeout time.Duration) (net.Conn, error)
	// hc dials with DefaultConnectTimeout; routes with another connect
	// timeout get a client of their own from timed (time.Duration ->
	// *fasthttp.HostClient), created on first use: a HostClient's dial
	// cannot be told which request it connects for.
	hc     *fasthttp.HostClient
	timed  sync.Map
	active atomic.Int64
	// obs is the backend's series; it passes to the state that replaces
	// this one when only the connection settings change.
	obs *backendObs
	// tlsCfg is the pool's TLS configuration for this backend (its own
	// server name and session cache); nil without tls.
	tlsCfg    *tls.Config
	tlsm      *tlsMetrics
	log       *slog.Logger
	tlsLogged atomic.Int64 // unix nanoseconds of the last TLS failure logged
	// limit counts the private connections of a pool with
	// send_proxy_protocol (see privateLimit); nil without.
	limit *privateLimit
}

// client returns the HostClient that dials with connect timeout ct.
func (b *backendState) client(ct time.Duration) *fasthttp.HostClient {
	if ct == DefaultConnectTimeout || ct <= 0 {
		return b.hc
	}
	if c, ok := b.timed.Load(ct); ok {
		return c.(*fasthttp.HostClient)
	}
	c, _ := b.timed.LoadOrStore(ct, b.newClient(ct, nil))
	return c.(*fasthttp.HostClient)
}

// newClient builds a HostClient dialing with connect timeout ct; proxyHdr,
// when set, starts each of its connections (see privateClients).
func (b *backendState) newClient(ct time.Duration, proxyHdr []byte) *fasthttp.HostClient {
	s := b.settings
	hc := &fasthttp.HostClient{
		Addr:                          b.addr,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		StreamResponseBody:            true,
		MaxConns:                      s.maxConns,
		MaxConnWaitTimeout:            s.maxWait,
		// The data plane decides about retries (on another backend);
		// fasthttp must never resend on its own.
		MaxIdemponentCallAttempts: 1,
		RetryIf:                   func(*fasthttp.Request) bool { return false },
		ReadBufferSize:            DefaultMaxHeaderBytes,
		MaxIdleConnDuration:       DefaultUpstreamIdleTimeout,
		Dial: func(a string) (net.Conn, error) {
			return b.connect(a, ct, proxyHdr, nil)
		},
	}
	tr := newTransport(hc, hc.AcquireConn, hc.ReleaseConn, hc.CloseConn)
	tr.stale = func() { b.obs.failure("stale") }
	hc.Transport = tr
	return hc
}

// connect opens a connection to the backend at addr for a HostClient:
// the dial with connect timeout ct, then the PROXY header and TLS
// (prepare). For a private client (private non-nil) the caller has taken
// a slot of b.limit; the connection holds it until it closes, and a dial
// that fails gives it back.
func (b *backendState) connect(addr string, ct time.Duration, proxyHdr []byte, private *fasthttp.HostClient) (net.Conn, error) {
	start := time.Now()
	c, err := b.dial(addr, ct)
	if err != nil {
		if private != nil {
			b.limit.release(nil)
		}
		return nil, err
	}
	if private != nil {
		c = b.limit.adopt(c, private)
	}
	if c, err = b.prepare(c, ct, proxyHdr); err != nil {
		return nil, err
	}
	took := time.Since(start)
	b.obs.connected(took)
	return newUpstreamConn(c, took), nil
}

// conns is the number of open connections to the backend.
func (b *backendState) conns() int {
	n := b.hc.ConnsCount()
	if b.limit != nil {
		n += b.limit.conns()
	}
	b.timed.Range(func(_, c any) bool {
		n += c.(*fasthttp.HostClient).ConnsCount()
		return true
	})
	return n
}

// closeIdle closes the idle connections of every client of b, private
// ones included.
func (b *backendState) closeIdle() {
	b.hc.CloseIdleConnections()
	if b.limit != nil {
		b.limit.closeIdle()
	}
	b.timed.Range(func(_, c any) bool {
		c.(*fasthttp.HostClient).CloseIdleConnections()
		return true
	})
}

// poolState survives swaps for a pool that stays: its active requests and
// retries in flight, which bound the retry budget.
type poolState struct {
	active  atomic.Int64
	retries atomic.Int64
}

type backendKey struct{ pool, addr string }

// registry owns every backendState and poolState. Only the compile path
// (the watcher goroutine) writes it; requests hold pointers into it taken
// from the table and never look it up.
type registry struct {
	dial func(addr string, timeout time.Duration) (net.Conn, error)
	// metrics, when set, gives backends and compiled routes their series.
	metrics *metrics
	tlsm    *tlsMetrics
	log     *slog.Logger

	mu       sync.Mutex
	backends map[backendKey]*backendState
	pools    map[string]*poolState
	retired  []*backendState
	tls      map[string]*poolTLS // by pool, see poolTLS
	// limits are the privateLimits of backends of pools with
	// send_proxy_protocol. One outlives the backendState it was made
	// for while connections hold its slots: a backend whose settings
	// change, or that leaves and comes back, keeps counting them.
	limits map[backendKey]*privateLimit
}

func newRegistry(dial func(addr string, timeout time.Duration) (net.Conn, error)) *registry {
	if dial == nil {
		dial = func(addr string, timeout time.Duration) (net.Conn, error) {
			return (&net.Dialer{Timeout: timeout}).Dial("tcp", addr)
		}
	}
	return &registry{dial: dial, backends: map[backendKey]*backendState{}, pools: map[string]*poolState{},
		limits: map[backendKey]*privateLimit{}}
}

func (r *registry) pool(name string) *poolState {
	r.mu.Lock()
	defer r.mu.Unlock()
	ps := r.pools[name]
	if ps == nil {
		ps = &poolState{}
		r.pools[name] = ps
	}
	return ps
}

func (r *registry) backend(pool, addr string, s connSettings) *backendState {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := backendKey{pool, addr}
	var obs *backendObs
	if b := r.backends[k]; b != nil {
		if b.settings == s {
			return b
		}
		r.retired = append(r.retired, b)
		obs = b.obs
	} else {
		obs = newBackendObs(r.metrics, pool, addr)
	}
	b := &backendState{pool: pool, addr: addr, settings: s, dial: r.dial, obs: obs, tlsm: r.tlsm, log: r.log}
	if s.sendProxy != "" {
		if b.limit = r.limits[k]; b.limit == nil {
			b.limit = &privateLimit{}
			r.limits[k] = b.limit
		}
	}
	if s.tls != nil && s.tls.cfg != nil {
		b.tlsCfg = upstreamtls.ForBackend(s.tls.cfg, addr)
	}
	b.hc = b.newClient(DefaultConnectTimeout, nil)
	r.backends[k] = b
	return b
}

// sweep closes the idle connections of backends the live table no longer
// references, and deletes their series and those of pools it no longer has.
// Requests still using them finish; their connections close when released
// because nothing is pooled any more after CloseIdleConnections.
func (r *registry) sweep(t *Table) {
	live := map[*backendState]bool{}
	livePools := map[string]bool{}
	for name, p := range t.pools {
		livePools[name] = true
		for i := range p.backends {
			live[p.backends[i].st] = true
		}
	}
	r.mu.Lock()
	var gone []*backendState
	var goneObs []*backendObs
	var gonePools []string
	for k, b := range r.backends {
		if !live[b] {
			delete(r.backends, k)
			gone = append(gone, b)
			goneObs = append(goneObs, b.obs)
		}
	}
	gone = append(gone, r.retired...)
	r.retired = nil
	for name := range r.pools {
		if !livePools[name] {
			delete(r.pools, name)
			gonePools = append(gonePools, name)
		}
	}
	r.mu.Unlock()
	for _, b := range gone {
		b.closeIdle()
	}
	r.mu.Lock()
	for k, l := range r.limits {
		if b := r.backends[k]; (b == nil || b.limit != l) && l.conns() == 0 {
			delete(r.limits, k)
		}
	}
	r.mu.Unlock()
	for _, o := range goneObs {
		o.retire()
	}
	if r.metrics != nil {
		for _, name := range gonePools {
			r.metrics.dropPool(name)
		}
	}
}

// closeAll closes every pooled connection (at shutdown).
func (r *registry) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.backends {
		b.closeIdle()
	}
}
