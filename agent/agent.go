package agent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cluster/httpapi"
	"github.com/rafterlb/rafter/cluster/httpapi/ui"
	"github.com/rafterlb/rafter/cluster/lease"
	"github.com/rafterlb/rafter/cluster/tlsutil"
	"github.com/rafterlb/rafter/dataplane"
	"github.com/rafterlb/rafter/dataplane/health"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/sdnotify"
	"github.com/rafterlb/rafter/secrets"
)

// Shutdown budgets: how long each stage of a graceful stop may take.
const (
	adminShutdownTimeout = 10 * time.Second
	forwardTimeout       = 30 * time.Second
)

// Agent is one rafter node: the Raft member, the admin API, the data
// plane and the health, lease, VIP and discovery machinery around them.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	tls   tlsSet
	ready chan struct{}

	// Set once the admin API serves (before ready is closed).
	adminAddr string
	node      *cluster.Node
	// upgraded: a new process serves this node's sockets now.
	upgraded bool

	// secrets is the cluster's secrets key (nil without --secrets-key-file).
	secrets *secrets.Keyring
}

// New checks cfg and loads its TLS files; Run starts the node.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		if cfg.AdminListener != nil {
			cfg.AdminListener.Close()
		}
		return nil, err
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewJSONHandler(cfg.Stderr, &slog.HandlerOptions{Level: cfg.SlogLevel()}))
	}
	tlsc, err := loadTLS(cfg)
	if err == nil {
		var kr *secrets.Keyring
		if kr, err = loadSecrets(cfg); err == nil {
			return &Agent{cfg: cfg, log: log.With("node", cfg.NodeID), tls: tlsc, secrets: kr, ready: make(chan struct{})}, nil
		}
	}
	if cfg.AdminListener != nil {
		cfg.AdminListener.Close()
	}
	return nil, err
}

// Ready is closed once the admin API serves.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// AdminAddr is where the admin API serves; valid once Ready is closed.
func (a *Agent) AdminAddr() string {
	<-a.ready
	return a.adminAddr
}

// Node is the agent's Raft node; valid once Ready is closed.
func (a *Agent) Node() *cluster.Node {
	<-a.ready
	return a.node
}

// Check is what New checks, without starting anything: the configuration
// is valid and its TLS files are readable and hold a usable CA, certificate
// and key. `rafter agent --check` runs it.
func (c Config) Check() error {
	if err := c.Validate(); err != nil {
		return err
	}
	if _, err := loadTLS(c); err != nil {
		return err
	}
	_, err := loadSecrets(c)
	return err
}

// loadSecrets reads --secrets-key-file (nil without it).
func loadSecrets(cfg Config) (*secrets.Keyring, error) {
	if cfg.Secrets != nil || cfg.SecretsKeyFile == "" {
		return cfg.Secrets, nil
	}
	return secrets.LoadFile(cfg.SecretsKeyFile)
}

// tlsSet holds the configs built from --tls-*; all nil without TLS.
type tlsSet struct {
	raftServer, adminServer, client *tls.Config
}

func loadTLS(cfg Config) (tlsSet, error) {
	if !cfg.TLS() {
		return tlsSet{}, nil
	}
	var t tlsSet
	var err error
	if t.raftServer, err = tlsutil.ServerConfig(cfg.TLSCA, cfg.TLSCert, cfg.TLSKey); err != nil {
		return t, fmt.Errorf("--tls-*: %w", err)
	}
	if t.adminServer, err = tlsutil.AdminServerConfig(cfg.TLSCA, cfg.TLSCert, cfg.TLSKey); err != nil {
		return t, fmt.Errorf("--tls-*: %w", err)
	}
	if t.client, err = tlsutil.ClientConfig(cfg.TLSCA, cfg.TLSCert, cfg.TLSKey); err != nil {
		return t, fmt.Errorf("--tls-*: %w", err)
	}
	return t, nil
}

// openAccessLog returns the access logger (nil when off) and what closes it.
func openAccessLog(cfg Config, stdout io.Writer) (*slog.Logger, func() error, error) {
	noop := func() error { return nil }
	switch cfg.AccessLog {
	case "off":
		return nil, noop, nil
	case "stdout":
		return slog.New(slog.NewJSONHandler(stdout, nil)), noop, nil
	}
	f, err := os.OpenFile(cfg.AccessLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, noop, fmt.Errorf("--access-log: %w", err)
	}
	return slog.New(slog.NewJSONHandler(f, nil)), f.Close, nil
}

// Run serves until ctx is done, then stops, in order: the VIPs move away,
// the data plane drains, the admin API stops, then the Raft node closes.
// A request on Config.UpgradeRequests hands this node over to a new
// process instead (see upgrade.go); Run then returns nil once the new
// process has taken over. An Agent runs once.
func (a *Agent) Run(ctx context.Context) (err error) {
	cfg, log, tlsc := a.cfg, a.log, a.tls
	accessLog, closeAccessLog, err := openAccessLog(cfg, cfg.Stdout)
	if err != nil {
		if cfg.AdminListener != nil {
			cfg.AdminListener.Close()
		}
		return err
	}
	defer func() { err = errors.Join(err, closeAccessLog()) }()

	socks := &sockets{upg: cfg.Upgrader}
	// An upgrade started this process: serve the state the old process
	// handed over until this one's Raft node has caught up with it.
	var handoff *handoffSource
	if cfg.Upgrader != nil && cfg.Upgrader.HasParent() {
		st, err := readUpgradeState(cfg.DataDir)
		if err != nil {
			if cfg.AdminListener != nil {
				cfg.AdminListener.Close()
			}
			return fmt.Errorf("upgrade: %w", err)
		}
		handoff = newHandoffSource(st)
		socks.share()
		log.Info("upgrade: started by the old process; serving the state it handed over", "index", st.Index)
	} else if cfg.Upgrader != nil {
		// Left by an upgrade that was interrupted.
		_ = os.Remove(upgradeStatePath(cfg.DataDir))
	}

	adminLn := cfg.AdminListener
	if adminLn == nil {
		adminLn, err = socks.listen("admin", cfg.AdminAddr(), nil)
		if err != nil {
			return fmt.Errorf("--admin-port: admin API: %w", err)
		}
	}
	adminAddr := adminLn.Addr().String()
	// From here the listener belongs to the admin server, which closes it
	// on Shutdown; until it serves, close it on every early return.
	serving := false
	defer func() {
		if !serving {
			adminLn.Close()
		}
	}()
	// With an upgrader Raft's socket is handed over too; until the node
	// owns it, close it on every early return.
	var raftLn net.Listener
	if cfg.Upgrader != nil {
		if raftLn, err = socks.listen("raft", cfg.RaftAddr(), nil); err != nil {
			return fmt.Errorf("--raft-port: %w", err)
		}
	}
	raftLnOwned := false
	defer func() {
		if raftLn != nil && !raftLnOwned {
			raftLn.Close()
		}
	}()

	ccfg := cluster.DefaultConfig()
	ccfg.NodeID = cfg.NodeID
	ccfg.Zone = cfg.Zone
	ccfg.DataDir = cfg.DataDir
	ccfg.RaftBind = cfg.RaftAddr()
	ccfg.RaftListener = raftLn
	if cfg.RaftPort != 0 {
		ccfg.RaftAdvertise = cfg.RaftAddr()
	}
	if handoff != nil {
		ccfg.StoreLockWait = storeLockWaitUpgrade
	}
	ccfg.AdminAddr = adminAddr
	ccfg.DataAddr = cfg.Bind
	ccfg.InstanceID = cfg.AWSInstanceID
	ccfg.ENI = cfg.AWSENI
	ccfg.PrivateIP = cfg.AWSPrivateIP
	ccfg.Role = cfg.Role
	ccfg.BootstrapExpect = cfg.BootstrapExpect
	ccfg.Join = cfg.Join
	ccfg.Token = cfg.Token
	ccfg.ServerTLS = tlsc.raftServer
	ccfg.ClientTLS = tlsc.client
	ccfg.InsecureTransport = cfg.InsecureTransport
	ccfg.Logger = log
	if cfg.SlogLevel() <= slog.LevelDebug {
		ccfg.RaftLogLevel = "info"
	}
	// The EC2 client is checked before the node opens, so that missing
	// permissions stop the agent before it joins a cluster.
	ec2c, err := newEC2Client(ctx, cfg, log.With("component", "awsec2"))
	if err != nil {
		return err
	}
	if err := preflightLinuxVIPs(cfg); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	ccfg.Registerer = reg
	var spans dataplane.SpanSink
	if cfg.OTLPEndpoint != "" {
		exp, err := newSpanExporter(cfg.OTLPEndpoint, cfg.NodeID, reg, log.With("component", "tracing"))
		if err != nil {
			return err
		}
		// Deferred before the data plane's stop, so it runs after it: the
		// spans of the last requests are sent too.
		defer exp.close()
		spans = exp
	}

	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	monitor := health.NewMonitor(health.Options{
		NodeID:     cfg.NodeID,
		Logger:     log.With("component", "health"),
		Registerer: reg,
	})

	// Every goroutine below is owned by this function: workers stop when
	// workCtx is cancelled and wg waits for them; the data plane has its
	// own context, so that it drains first, or during an upgrade after
	// Raft closed; the prober and the linux VIP keeper have theirs
	// (localCtx), so that an upgrade's old process keeps them after its
	// Raft node closed.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	localCtx, stopLocal := context.WithCancel(context.WithoutCancel(ctx))
	dpCtx, stopDP := context.WithCancel(context.WithoutCancel(ctx))
	var wg, localWG, dpWG sync.WaitGroup
	var node *cluster.Node
	// On every return, in this order; each step is idempotent.
	defer func() {
		stopDP()
		dpWG.Wait()
		stopLocal()
		localWG.Wait()
		stopWork()
		wg.Wait()
		if node != nil {
			if cerr := node.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("closing the raft node: %w", cerr))
			}
			log.Info("raft node closed")
		}
	}()
	fatal := make(chan error, 4)
	wg.Go(func() { monitor.Run(workCtx) })

	// The data plane, fed by the one watch loop (health first, then the
	// data plane) from src.
	var dp dataPlane
	var watch *watcher
	startDataPlane := func(src fsm.Source) error {
		watch = newWatcher(src, monitor)
		wg.Go(func() { watch.Run(workCtx) })
		var err error
		dp, err = newDataPlane(dataPlaneDeps{
			Source:     watch,
			BindIP:     cfg.Bind,
			NodeID:     cfg.NodeID,
			Zone:       cfg.Zone,
			Logger:     log.With("component", "dataplane"),
			AccessLog:  accessLog,
			Registerer: reg,
			Health:     monitor,
			Spans:      spans,
			Secrets:    a.secrets,
			Shards:     cfg.ListenSockets,
			Listen: func(name string, shard int, addr string) (net.Listener, error) {
				return socks.listen(shardKey("listener "+name, shard), addr, func(addr string) (net.Listener, error) {
					return dataplane.ListenShared(name, shard, addr)
				})
			},
			ListenVIP: func(name string, shard int, addr string) (net.Listener, error) {
				return socks.listen(shardKey("vip-listener "+name, shard), addr, func(addr string) (net.Listener, error) {
					return dataplane.ListenFreebind(name, shard, addr)
				})
			},
		})
		if err != nil {
			return err
		}
		dpWG.Go(func() {
			if err := dp.Run(dpCtx); err != nil && dpCtx.Err() == nil {
				fatal <- fmt.Errorf("data plane: %w", err)
			}
		})
		return nil
	}
	if handoff != nil {
		// The new process serves on the sockets it inherited before it has
		// Raft: the old one releases Raft only after this one serves.
		if err := startDataPlane(handoff); err != nil {
			return err
		}
		select {
		case <-dp.Ready():
		case err := <-fatal:
			return err
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if err := cfg.Upgrader.Ready(); err != nil {
			return fmt.Errorf("upgrade: telling the old process this one serves: %w", err)
		}
		socks.own()
		log.Info("upgrade: serving; opening Raft once the old process has closed it")
	}

	raftLnOwned = true // cluster.Open closes it, also when it fails
	node, err = cluster.Open(ctx, ccfg)
	if err != nil {
		return err
	}
	reg.MustRegister(newClusterCollector(node.Status))
	history := httpapi.NewHistory(node, 0)
	wg.Go(func() { history.Run(workCtx) })
	if handoff != nil {
		handoff.attach(node)
	} else if err := startDataPlane(node); err != nil {
		return err
	}
	reg.MustRegister(newConfigLagCollector(node.Status, watch, dp))

	leaseCfg := lease.DefaultConfig()
	leaseCfg.Store = node
	leaseCfg.Logger = log.With("component", "lease")
	leaseCfg.Registerer = reg
	leaseCfg.CheckInterval = cfg.LeaseCheckInterval
	leaseCfg.DrainPeriod = cfg.LeaseDrainPeriod
	leases, err := lease.New(leaseCfg)
	if err != nil {
		return fmt.Errorf("leases: %w", err)
	}
	wg.Go(func() { leases.Run(workCtx) })

	if cfg.BackupDir != "" {
		b := &backups{dir: cfg.BackupDir, nodeID: cfg.NodeID, every: cfg.BackupEvery, keep: cfg.BackupKeep,
			state: node.Config, now: time.Now, log: log.With("component", "backup")}
		wg.Go(func() { b.Run(workCtx) })
	}
	if err := startDiscovery(workCtx, &wg, cfg, awsDeps{Client: ec2c, Node: node, Logger: log, Registerer: reg}); err != nil {
		return err
	}
	rw, ro := tokens(cfg.Token), tokens(cfg.ReadOnlyToken)
	fwdTransport := http.DefaultTransport.(*http.Transport).Clone()
	fwdTransport.TLSClientConfig = tlsc.client
	fwdTransport.Proxy = nil
	scheme := "http"
	if tlsc.adminServer != nil {
		scheme = "https"
	}
	var ownToken string
	if len(rw) > 0 {
		ownToken = rw[0]
	}
	vips, err := startVIPs(workCtx, localCtx, &wg, &localWG, cfg, vipDeps{
		Node:             node,
		EC2:              ec2c,
		Sender:           probeSender(fwdTransport, scheme, ownToken),
		HeartbeatTimeout: ccfg.HeartbeatTimeout,
		Logger:           log,
		Registerer:       reg,
	})
	if err != nil {
		return err
	}

	if a.secrets == nil {
		log.Info("no --secrets-key-file: this node refuses certificates with private keys and serves none; https listeners with cert_file/key_file work")
	} else {
		log.Info("secrets key loaded", "key_id", a.secrets.ID())
		rot := &ticketRotator{store: node, keys: a.secrets, every: cfg.TicketKeyRotation, now: time.Now,
			log: log.With("component", "tls-tickets"), rand: rand.Reader}
		leads, cancelLeads := node.WatchLeadership()
		wg.Go(func() {
			defer cancelLeads()
			rot.Run(workCtx, leads)
		})
	}

	rollouts, err := startRollouts(workCtx, &wg, rolloutDeps{Node: node, NodeID: cfg.NodeID, Counts: dp,
		Transport: fwdTransport, Scheme: scheme, Token: ownToken, Logger: log, Registerer: reg})
	if err != nil {
		return fmt.Errorf("rollouts: %w", err)
	}
	if err := startACME(workCtx, &wg, acmeDeps{Node: node, Keyring: a.secrets, Transport: fwdTransport,
		Scheme: scheme, Token: ownToken, Tuning: cfg.ACME, Logger: log}); err != nil {
		return fmt.Errorf("acme: %w", err)
	}

	switch {
	case len(rw)+len(ro) > 0:
	case tlsc.adminServer != nil:
		log.Info("admin API: no bearer token; every client needs a certificate from the cluster CA")
	case onLoopback(adminAddr):
		// rafter dev, or a node reachable only from its own host.
		log.Info("admin API authentication is off (loopback only); pass --token (or RAFTER_TOKEN) to require a bearer token")
	default:
		log.Warn("admin API authentication is off: pass --token (or RAFTER_TOKEN) to require a bearer token")
	}
	apiCfg := httpapi.DefaultConfig()
	apiCfg.Store = node
	apiCfg.NodeID = cfg.NodeID
	apiCfg.ReadWriteTokens = rw
	apiCfg.ReadOnlyTokens = ro
	apiCfg.ForwardClient = &http.Client{
		Transport:     fwdTransport,
		Timeout:       forwardTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if tlsc.client != nil {
		apiCfg.ForwardScheme = "https"
	}
	apiCfg.Logger = log.With("component", "admin")
	apiCfg.Leases = leases
	apiCfg.Probe = vips.tracker
	apiCfg.Rollouts = rollouts
	apiCfg.Extra = map[string]http.Handler{
		"/metrics":   promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
		"/v1/health": monitor.Handler(func() any { return dp.Listeners() }),
		"/v1/stats":  statsHandler(reg, cfg.NodeID),
	}
	apiCfg.History = history
	apiCfg.Secrets = a.secrets
	apiCfg.UI = ui.Handler()
	api, err := httpapi.New(apiCfg)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	srv := httpapi.NewServer(api, apiCfg)
	srv.TLSConfig = tlsc.adminServer
	srv.ErrorLog = slog.NewLogLogger(log.With("component", "admin").Handler(), slog.LevelWarn)
	srv.BaseContext = func(net.Listener) context.Context { return workCtx }
	serving = true
	wg.Go(func() {
		var err error
		if tlsc.adminServer != nil {
			err = srv.ServeTLS(adminLn, "", "")
		} else {
			err = srv.Serve(adminLn)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			fatal <- fmt.Errorf("admin API: %w", err)
		}
	})
	log.Info("rafter agent started", "admin", scheme+"://"+adminAddr, "raft", cfg.RaftAddr(), "bind", cfg.Bind, "zone", cfg.Zone)
	a.adminAddr, a.node = adminAddr, node
	close(a.ready)
	// Starting ran much code once that serving never runs again, and
	// left garbage the first collection would wait for a 4 MiB heap to
	// reclaim: return both to the system.
	a.trim()
	if handoff != nil {
		// The old process told systemd this one is the service now.
		wg.Go(func() {
			a.takeOver(workCtx, handoff, vips)
			a.settle(workCtx)
		})
	} else {
		// systemd (Type=notify) hears READY=1 only once the data plane
		// serves its first table as well, so `systemctl start` returns
		// when the node proxies; an upgrade may follow from then on.
		wg.Go(func() {
			select {
			case <-dp.Ready():
			case <-workCtx.Done():
				return
			}
			if cfg.Upgrader != nil {
				if err := cfg.Upgrader.Ready(); err != nil {
					log.Error("upgrade: marking this process ready (no upgrade possible)", "err", err)
				}
			}
			a.notify(sdnotify.Ready)
			a.settle(workCtx)
		})
	}

	var runErr error
wait:
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping", "cause", context.Cause(ctx))
			break wait
		case runErr = <-fatal:
			log.Error("stopping after a fatal error", "err", runErr, "action", "fix what err names and start rafter again (systemd restarts it)")
			break wait
		case <-cfg.UpgradeRequests:
			if a.startUpgrade(node) {
				break wait
			}
		}
	}

	if a.upgraded {
		// The new process serves on the same sockets. This one finishes
		// what it accepted and lets go of Raft, keeping its VIPs, which
		// stay with this node.
		start := time.Now()
		socks.share()
		// 1. Keep-alive clients are told to reconnect (to the new
		// process) after their next response; the data plane stops
		// accepting and drains once they had time to, while:
		dp.CloseConnections()
		grace := time.NewTimer(connCloseGrace)
		defer grace.Stop()
		// 2. leadership moves to another node before this one stops
		// answering probes,
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handOffTimeout)
		if err := node.HandOff(hctx); err != nil {
			log.Warn("upgrade: handing leadership over", "err", err)
		}
		cancel()
		vips.pinLeader()
		// 3. the admin API stops accepting (new connections wait in the
		// socket's backlog for the new process),
		shCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), adminShutdownTimeout)
		if err := srv.Shutdown(shCtx); err != nil {
			srv.Close()
		}
		cancel()
		// 4. the workers stop and Raft closes, so that the new process
		// can open it,
		stopWork()
		wg.Wait()
		if err := node.Close(); err != nil {
			log.Error("upgrade: closing the raft node", "err", err)
		}
		log.Info("upgrade: raft closed; the new process opens it", "took", time.Since(start).Round(time.Millisecond))
		<-grace.C
		stopDP()
		// 5. and this process keeps probing the leader and renewing its
		// linux VIP addresses until the new process does.
		a.waitTakeOver(ctx)
		stopLocal()
		localWG.Wait()
		dpWG.Wait()
		log.Info("upgrade: handed over", "took", time.Since(start).Round(time.Millisecond))
		return nil
	}

	a.notify(sdnotify.Stopping)
	// 1. VIPs move to other nodes while this one still serves.
	vips.handOver(context.WithoutCancel(ctx))
	// 2. The data plane finishes in-flight requests (bounded by its own
	// drain timeout) while the admin API still answers.
	stopDP()
	dpWG.Wait()
	log.Info("data plane stopped")
	// 3. The admin API.
	shCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), adminShutdownTimeout)
	if err := srv.Shutdown(shCtx); err != nil {
		srv.Close()
	}
	cancel()
	log.Info("admin API stopped")
	// 4. Health checks, the config watcher and the probes; the deferred
	// node.Close runs after them.
	stopLocal()
	localWG.Wait()
	stopWork()
	wg.Wait()
	if cfg.Upgrader != nil {
		removeOwnPIDFile(cfg.DataDir)
	}
	return runErr
}

// notify tells systemd the agent's state when it runs under a
// Type=notify unit; a failure is logged, since serving matters more.
func (a *Agent) notify(state string) {
	sent, err := sdnotify.Notify(a.cfg.NotifySocket, state)
	switch {
	case err != nil:
		a.log.Warn("telling systemd the service state", "state", state, "err", err,
			"action", "check the unit's Type=notify and NOTIFY_SOCKET; rafter serves regardless")
	case sent:
		a.log.Info("told systemd", "state", state)
	}
}

func tokens(t string) []string {
	var out []string
	for _, s := range strings.Split(t, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// onLoopback reports whether the listening address addr is a loopback one.
func onLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// settleDelay is how long after its first table the agent trims once more:
// long enough for the first election, the first writes and the first
// health checks to have run.
const settleDelay = 5 * time.Second

// settle trims again once the node has settled after serving its first
// table. Joining or forming the cluster, the first elections and the
// first table build run much code once, after the trim at start, and
// leave it resident; an idle node runs far less of it (about 11 MiB of
// RSS instead of 15 MiB for a one-node agent).
func (a *Agent) settle(ctx context.Context) {
	t := time.NewTimer(settleDelay)
	defer t.Stop()
	select {
	case <-t.C:
		a.trim()
	case <-ctx.Done():
	}
}

// trim returns the heap's free memory and the executable's clean pages
// to the system.
func (a *Agent) trim() {
	debug.FreeOSMemory()
	trimExecutablePages()
}
