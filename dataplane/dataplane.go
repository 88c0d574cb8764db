package dataplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rafterlb/rafter/fsm"
	"github.com/valyala/fasthttp"
)

// Dataplane serves every configured listener on this node from the latest
// compiled Table.
type Dataplane struct {
	opts      Options
	log       *slog.Logger
	accessLog *slog.Logger
	health    HealthView
	reg       *registry
	metrics   *metrics
	pp        *proxyMetrics
	tlsm      *tlsMetrics
	// private: per client connection, for pools with send_proxy_protocol.
	private   privateClients
	counts    poolCounters // per (route, pool), for rollouts
	dial      func(addr string, timeout time.Duration) (net.Conn, error)
	listen    func(name string, shard int, addr string) (net.Listener, error)
	listenVIP func(name string, shard int, addr string) (net.Listener, error)
	shards    int // sockets per listener address

	table     atomic.Pointer[Table]
	certs     *certManager
	acme      acmeAnswers // ACME challenges every node answers (acme.go)
	exchanges sync.Pool
	tunnels   tunnels
	ready     chan struct{}
	closing   atomic.Bool // every response closes its connection (CloseConnections)

	mu        sync.Mutex
	listeners map[string]*listenerServer
	pending   map[string]*pendingBind // listeners that could not bind yet, by the same key
	vips      []string                // the VIP addresses of the table being served
	stopping  sync.WaitGroup          // servers being shut down after removal
	rebind    chan struct{}           // wakes the binder when pending changes
	// open counts each listener's open connections, by the same key,
	// across the servers a change replaces (connLimit).
	open map[string]*atomic.Int64

	// idleConns holds the open client connections, whose read buffers are
	// released while they wait (idlemem.go).
	idleConns idleRegistry
}

// New checks opts and builds a Dataplane; nothing is bound until Run.
func New(opts Options) (*Dataplane, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	d := &Dataplane{
		opts: opts, log: opts.Logger, accessLog: opts.AccessLog, health: opts.Health,
		dial: opts.Dial, listen: opts.Listen, listenVIP: opts.ListenVIP, shards: opts.ListenShards,
		ready: make(chan struct{}), listeners: map[string]*listenerServer{},
		pending: map[string]*pendingBind{}, rebind: make(chan struct{}, 1), open: map[string]*atomic.Int64{},
	}
	if d.log == nil {
		d.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if d.health == nil {
		d.health = AllHealthy{}
	}
	d.certs = newCertManager(d.log, opts.Secrets)
	if d.dial == nil {
		d.dial = func(addr string, timeout time.Duration) (net.Conn, error) {
			return (&net.Dialer{Timeout: timeout}).Dial("tcp", addr)
		}
	}
	if d.listen == nil {
		d.listen = ListenShared
	}
	if d.shards == 0 {
		d.shards = min(defaultListenShards(), MaxListenShards)
	}
	if d.listenVIP == nil {
		d.listenVIP = ListenFreebind
	}
	dial := d.dial
	d.reg = newRegistry(func(addr string, timeout time.Duration) (net.Conn, error) {
		c, err := dial(addr, timeout)
		if err != nil {
			return nil, &dialError{err}
		}
		return c, nil
	})
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	d.metrics = m
	d.reg.metrics = m
	if d.pp, err = newProxyMetrics(opts.Registerer); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	if d.tlsm, err = newTLSMetrics(opts.Registerer); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	d.reg.tlsm, d.reg.log = d.tlsm, d.log
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(backendCollector{d}); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
		if err := opts.Registerer.Register(certCollector{d.certs}); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	d.exchanges.New = func() any { return newExchange() }
	d.table.Store(compile(nil, d.reg, opts.Zone))
	return d, nil
}

// Ready is closed once the first table is served.
func (d *Dataplane) Ready() <-chan struct{} { return d.ready }

// Table returns the table being served.
func (d *Dataplane) Table() *Table { return d.table.Load() }

// ListenerAddr is the address listener name is bound to ("" if it is not).
func (d *Dataplane) ListenerAddr(name string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ls := d.listeners[name]; ls != nil {
		return ls.addr
	}
	return ""
}

// Run serves until ctx is done, following configuration changes, then
// stops gracefully: listeners stop accepting, in-flight requests get up
// to Options.DrainTimeout, Upgrade tunnels are closed.
func (d *Dataplane) Run(ctx context.Context) error {
	src := d.opts.Source
	changed := src.Changed()
	binderCtx, stopBinder := context.WithCancel(ctx)
	binderDone := make(chan struct{})
	go func() {
		defer close(binderDone)
		d.binder(binderCtx)
	}()
	d.apply(src.Snapshot())
	close(d.ready)
	for {
		select {
		case <-ctx.Done():
			stopBinder()
			<-binderDone
			return d.stop()
		case <-changed:
			// Changes that arrive while compiling collapse into the next
			// Snapshot: only the latest configuration is compiled.
			changed = src.Changed()
			d.apply(src.Snapshot())
		}
	}
}

func (d *Dataplane) apply(cfg *fsm.Config) {
	start := time.Now()
	t := compileNext(d.table.Load(), cfg, d.reg, d.opts.Zone)
	d.metrics.compile.Observe(time.Since(start).Seconds())
	d.checkPoolTLS(cfg)
	for _, err := range t.errors {
		d.log.Warn("configuration object skipped", "index", t.index, "err", err, "action", "fix the object err names (rafter get KIND NAME -o yaml, then rafter apply)")
	}
	if err := d.acme.update(cfg); err != nil {
		d.log.Error("ACME challenge certificate not made", "err", err)
	}
	vips := d.vipIPs(cfg)
	// Certificates first: a listener bound below serves them at once, and
	// running listeners pick them up with their next handshake.
	d.certs.update(cfg)
	d.reconcileListeners(t, vips, true)
	d.table.Store(t)
	d.metrics.swaps.Inc()
	d.metrics.tableIndex.Set(float64(t.index))
	d.reconcileListeners(t, vips, false)
	d.reg.sweep(t)
	if t.incremental {
		d.metrics.retireRoutes(t)
	} else {
		d.metrics.sweepRoutes(t)
	}
}

// reconcileListeners starts servers for new listeners (before the table
// that routes them is stored, so they serve at once) and, after the swap,
// stops the servers of removed or changed listeners without touching the
// others. Each listener has one server on BindIP and one on each of vips.
// A listener that cannot bind is tried once here and then by the binder in
// the background, so a bad port never holds up a configuration change.
func (d *Dataplane) reconcileListeners(t *Table, vips []string, starting bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.vips = vips
	var handed map[string][]net.Listener
	if !starting {
		for key, ls := range d.listeners {
			if d.wanted(t, ls.name, ls.ip, ls.spec) {
				continue
			}
			delete(d.listeners, key)
			if !d.serves(t, ls.name, ls.ip) {
				// Its connections still release the count they hold.
				delete(d.open, key)
			}
			if d.keepsAddress(t, ls) {
				if raw := ls.handOver(); raw != nil {
					if handed == nil {
						handed = map[string][]net.Listener{}
					}
					handed[key] = raw
				}
			}
			d.stopping.Add(1)
			go func() {
				defer d.stopping.Done()
				ls.shutdown(d.opts.DrainTimeout)
			}()
		}
		for key, pb := range d.pending {
			if !d.wanted(t, pb.name, pb.ip, pb.spec) {
				delete(d.pending, key)
				if !d.serves(t, pb.name, pb.ip) {
					delete(d.open, key)
				}
			}
		}
		// A listener whose spec changed was stopped above and starts
		// anew below, on the sockets its old server handed over when its
		// address is the same (handover.go).
	}
	// keepsAddress hands over only listeners this loop binds.
	for name, lt := range t.listeners {
		d.bindLocked(name, "", lt, handed[listenerKey(name, "")])
		for _, ip := range vips {
			d.bindLocked(name, ip, lt, handed[listenerKey(name, ip)])
		}
	}
	if !starting {
		// Only now that t is served: a connection accepted before (one
		// waiting in a socket handed over by an upgrade, say) would be
		// answered from the previous table, which lacks the listener.
		for _, ls := range d.listeners {
			ls.serve(d.log)
		}
	}
}

// wanted reports whether table t serves listener name with spec on ip.
// d.mu must be held.
func (d *Dataplane) wanted(t *Table, name, ip string, spec fsm.ListenerSpec) bool {
	lt := t.listeners[name]
	return lt != nil && sameBinding(lt.spec, spec) && d.serves(t, name, ip)
}

// serves reports whether table t has listener name on ip, whatever its
// spec. d.mu must be held.
func (d *Dataplane) serves(t *Table, name, ip string) bool {
	return t.listeners[name] != nil && (ip == "" || slices.Contains(d.vips, ip))
}

func listenerKey(name, ip string) string {
	if ip == "" {
		return name
	}
	return name + "@" + ip
}

// openConns returns the open-connection count of listener key, made on
// first use. d.mu must be held.
func (d *Dataplane) openConns(key string) *atomic.Int64 {
	n := d.open[key]
	if n == nil {
		n = new(atomic.Int64)
		d.open[key] = n
	}
	return n
}

// keepsAddress reports whether table t serves the listener of ls on the
// same address, so that its sockets can be handed over. Port 0 binds a
// new port. d.mu must be held.
func (d *Dataplane) keepsAddress(t *Table, ls *listenerServer) bool {
	lt := t.listeners[ls.name]
	return d.serves(t, ls.name, ls.ip) && lt.spec.Port != 0 && lt.spec.Port == ls.spec.Port
}

// bindLocked starts listener name on ip unless it runs or waits for the
// binder already; a failure hands it to the binder. It serves on raw,
// the sockets of the listener's previous server, when that is not nil.
// d.mu must be held.
func (d *Dataplane) bindLocked(name, ip string, lt *listenerTable, raw []net.Listener) {
	key := listenerKey(name, ip)
	if d.listeners[key] != nil {
		closeAll(raw)
		return
	}
	if pb := d.pending[key]; pb != nil && pb.spec == lt.spec && raw == nil {
		return
	}
	ls, err := d.startListener(name, ip, lt, raw)
	if err == nil {
		d.listeners[key] = ls
		delete(d.pending, key)
		return
	}
	now := time.Now()
	d.pending[key] = &pendingBind{name: name, ip: ip, spec: lt.spec, attempts: 1, err: err,
		since: now, next: now.Add(bindBackoff(1))}
	d.log.Error("listener not bound; retrying in the background", "listener", name, "vip_ip", ip, "err", err,
		"action", "free the port (another process holds it) or give the listener another port; GET /v1/health shows its bind state")
	select {
	case d.rebind <- struct{}{}:
	default:
	}
}

type listenerServer struct {
	name string
	ip   string // a linux VIP address; "" for BindIP
	spec fsm.ListenerSpec
	srv  *fasthttp.Server
	lns  []net.Listener // one per shard, each with its own accept loop
	lots []*parkLot     // the shards' parked connections (park.go)
	// leases hold the shards' sockets, innermost in lns (handover.go).
	leases []*socketLease
	addr   string
	done   chan struct{} // closed once every accept loop has returned
	// stopping: the server's shutdown has begun (startListener).
	stopping *atomic.Bool
	// tlsConf (https) follows the cluster's ticket keys while it serves.
	tlsConf *tls.Config
	certs   *certManager
	// started: the accept loops run (serve). Set under Dataplane.mu,
	// before the server can be handed to shutdown.
	started bool
}

// startListener starts listener name on vipIP ("": BindIP). It serves on
// the sockets raw, handed over by the server of the listener's previous
// spec, or on sockets it binds when raw is nil.
func (d *Dataplane) startListener(name, vipIP string, lt *listenerTable, raw []net.Listener) (*listenerServer, error) {
	ip, listen := d.opts.BindIP, d.listen
	if ip == "" {
		ip = "0.0.0.0"
	}
	if vipIP != "" {
		ip, listen = vipIP, d.listenVIP
	}
	addr := net.JoinHostPort(ip, strconv.Itoa(lt.spec.Port))
	var err error
	if raw == nil {
		// One attempt: a removed listener on the same port may still be
		// letting go of its socket, but the binder retries, off the
		// config path.
		if raw, err = d.listenShards(name, addr, listen); err != nil {
			return nil, err
		}
	}
	var tlsConf *tls.Config
	if lt.spec.Protocol == "https" {
		if tlsConf, err = d.certs.tlsConfig(name, lt.spec.TLS); err != nil {
			closeAll(raw)
			return nil, err
		}
		d.acme.withACME(tlsConf)
	}
	lim := lt.limits
	// fasthttp counts Concurrency per Serve call, that is per socket, and
	// only the connections it serves: max_conns counts every open
	// connection of the listener, parked ones (park.go) included, over
	// all of its sockets.
	shared := &connLimit{max: int64(lim.maxConns), open: d.openConns(listenerKey(name, vipIP))}
	lns := make([]net.Listener, len(raw))
	lots := make([]*parkLot, len(raw))
	leases := make([]*socketLease, len(raw))
	for i, ln := range raw {
		leases[i] = &socketLease{Listener: ln}
		ln = yieldListener{Listener: leases[i], idle: &d.idleConns}
		if pp := lt.spec.ProxyProtocol; pp != nil {
			ln = newProxyListener(ln, name, pp, d.pp, d.log)
		}
		if tlsConf != nil {
			ln = tls.NewListener(ln, tlsConf)
		}
		ln = limitListener{Listener: ln, lim: shared, log: d.log, name: name}
		lots[i] = &parkLot{gauge: d.metrics.parked.WithLabelValues(name)}
		lns[i] = &parkListener{Listener: ln, lot: lots[i], log: d.log, name: name}
	}
	conns := d.metrics.connections.WithLabelValues(name)
	// ended is what a closed or hijacked connection gives back. A hijacked
	// one is an Upgrade's tunnel: it keeps its place under max_conns and
	// in the gauge until the tunnel ends, as HAProxy's maxconn counts it.
	ended := func(c net.Conn, hijacked bool) {
		d.private.drop(c)
		if hijacked {
			d.tunnels.hijacked(c, func() {
				conns.Dec()
				shared.release()
			})
			return
		}
		conns.Dec()
		shared.release()
		d.tunnels.dropPending(c)
	}
	// stopping is set as the server's shutdown begins. fasthttp's
	// Shutdown has every response close its connection only until it
	// finds none open, and a connection can reach the server after that:
	// one accepted as the server handed its sockets over (handover.go),
	// or a parked one waking. Those close after their response too,
	// rather than go on under a spec the listener no longer has.
	stopping := new(atomic.Bool)
	handler := d.acme.handler(d.listenerHandler(name, &lt.spec))
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			handler(ctx)
			if stopping.Load() {
				ctx.SetConnectionClose()
			}
		},
		ErrorHandler:                  d.parseError,
		Name:                          "rafter",
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 true,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: true,
		DisablePreParseMultipartForm:  true,
		StreamRequestBody:             true,
		ReadBufferSize:                lim.maxHeaderBytes,
		ReadTimeout:                   lim.readTimeout,
		WriteTimeout:                  lim.writeTimeout,
		IdleTimeout:                   lim.idleTimeout,
		// limitListener's count is the limit; fasthttp's lags it, since
		// fasthttp gives a place back after reporting the close.
		Concurrency:        2 * lim.maxConns,
		MaxRequestBodySize: int(min(lim.maxBodyBytes, 1<<30)),
		ReduceMemoryUsage:  true,
		CloseOnShutdown:    true,
		Logger:             fasthttpLogger{d.log},
		ConnState: func(c net.Conn, s fasthttp.ConnState) {
			switch s {
			case fasthttp.StateNew:
				conns.Inc()
			case fasthttp.StateIdle:
				if pc := asParkConn(c); pc != nil {
					pc.idle.Store(true)
				}
			case fasthttp.StateActive:
				if pc := asParkConn(c); pc != nil {
					pc.idle.Store(false)
				}
			case fasthttp.StateClosed:
				if pc := asParkConn(c); pc != nil && pc.parked() {
					return
				}
				ended(c, false)
			case fasthttp.StateHijacked:
				ended(c, true)
			}
		},
	}
	for _, lot := range lots {
		lot.srv = srv
		lot.ended = func(c net.Conn) { ended(c, false) }
	}
	return &listenerServer{name: name, ip: vipIP, spec: lt.spec, srv: srv, lns: lns, lots: lots, leases: leases, addr: lns[0].Addr().String(), done: make(chan struct{}),
		stopping: stopping, tlsConf: tlsConf, certs: d.certs}, nil
}

// serve starts the accept loops, once the table that routes the listener
// is served. Dataplane.mu must be held.
func (ls *listenerServer) serve(log *slog.Logger) {
	if ls.started {
		return
	}
	ls.started = true
	var serving sync.WaitGroup
	for _, ln := range ls.lns {
		serving.Go(func() {
			if err := ls.srv.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
				log.Error("listener stopped", "listener", ls.name, "err", err, "action", "the listener rebinds on the next configuration change; restart rafter if it stays down")
			}
		})
	}
	go func() {
		serving.Wait()
		close(ls.done)
	}()
}

// listenShards opens the sockets of one listener address: shard 0 must
// bind, the others are left out (with a warning) when they cannot, say
// because the socket an older process handed over does not share its port.
// Shard 0 resolves port 0, so every shard binds the same port.
func (d *Dataplane) listenShards(name, addr string, listen func(string, int, string) (net.Listener, error)) ([]net.Listener, error) {
	first, err := listen(name, 0, addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	lns := make([]net.Listener, 1, d.shards)
	lns[0] = first
	// The same host as asked (so the same socket family and, in the
	// agent, the same hand-over key in every process) with the port the
	// first socket got.
	if ta, ok := first.Addr().(*net.TCPAddr); ok {
		host, _, _ := net.SplitHostPort(addr)
		addr = net.JoinHostPort(host, strconv.Itoa(ta.Port))
	}
	for i := 1; i < d.shards; i++ {
		ln, err := listen(name, i, addr)
		if err != nil {
			d.log.Warn("listener serves on fewer sockets", "listener", name, "addr", addr, "sockets", len(lns), "want", d.shards, "err", err,
				"action", "none needed: it serves; a restart (not an upgrade) binds every socket")
			break
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

func closeAll(lns []net.Listener) {
	for _, ln := range lns {
		_ = ln.Close()
	}
}

func (ls *listenerServer) shutdown(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ls.stopping.Store(true)
	_ = ls.srv.ShutdownWithContext(ctx)
	closeAll(ls.lns)
	if ls.started {
		<-ls.done
	}
	for _, lot := range ls.lots {
		lot.drain(ctx)
	}
	if ls.certs != nil {
		ls.certs.unregister(ls.tlsConf)
	}
}

func (d *Dataplane) stop() error {
	d.mu.Lock()
	servers := make([]*listenerServer, 0, len(d.listeners))
	for name, ls := range d.listeners {
		servers = append(servers, ls)
		delete(d.listeners, name)
	}
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, ls := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ls.shutdown(d.opts.DrainTimeout)
		}()
	}
	wg.Wait()
	d.stopping.Wait()
	d.tunnels.closeAll()
	d.reg.closeAll()
	d.private.closeAll()
	return nil
}

// parseError answers requests fasthttp refused while reading them.
func (d *Dataplane) parseError(ctx *fasthttp.RequestCtx, err error) {
	status := fasthttp.StatusBadRequest
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		status = fasthttp.StatusRequestHeaderFieldsTooLarge
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status = fasthttp.StatusRequestEntityTooLarge
	case errors.As(err, &ne) && ne.Timeout():
		status = fasthttp.StatusRequestTimeout
	}
	d.metrics.clientErrors.WithLabelValues(strconv.Itoa(status)).Inc()
	ctx.Response.Header.SetNoDefaultContentType(true)
	ctx.Error(fasthttp.StatusMessage(status)+"\n", status)
}

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Debug(fmt.Sprintf(format, args...), "component", "fasthttp")
}
