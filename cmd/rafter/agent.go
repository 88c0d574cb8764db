package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cluster/awsec2"
	"github.com/rafterlb/rafter/cluster/discovery"
	"github.com/rafterlb/rafter/cluster/httpapi"
	"github.com/rafterlb/rafter/cluster/lease"
	"github.com/rafterlb/rafter/cluster/tlsutil"
	"github.com/rafterlb/rafter/cmd/rafter/internal/cli"
	"github.com/rafterlb/rafter/dataplane/health"
	"github.com/rafterlb/rafter/fsm"
)

// Shutdown budgets: how long each stage of a graceful stop may take.
const (
	adminShutdownTimeout = 10 * time.Second
	forwardTimeout       = 30 * time.Second
)

func newAgentCmd(s cli.Streams) *cobra.Command {
	cfg := cli.DefaultAgentConfig()
	var configFile string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a rafter node: Raft member, admin API and HTTP proxy",
		Long: "Run one rafter node. Flags may also be given in a YAML file (--config) with the\n" +
			"same keys (node_id or node-id ...); a flag on the command line wins over the\n" +
			"environment (RAFTER_TOKEN, RAFTER_READ_ONLY_TOKEN), which wins over the file.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cli.LoadAgentConfig(cmd.Flags(), configFile, s.Getenv); err != nil {
				return err
			}
			return run(cmd.Context(), cfg)
		},
	}
	cli.BindAgentFlags(cmd.Flags(), &cfg)
	cmd.Flags().StringVar(&configFile, "config", "", "YAML file with the same keys as the flags")
	return cmd
}

// run is `rafter agent`: it serves until ctx is done, then stops the data
// plane, the admin API and the Raft node, in that order.
func run(ctx context.Context, cfg cli.AgentConfig) error {
	return runAgent(ctx, cfg, agentDeps{Stdout: os.Stdout, Stderr: os.Stderr})
}

// agentDeps is what runAgent takes beyond the configuration; `rafter dev`
// and tests fill it to run several nodes in one process.
type agentDeps struct {
	Stdout, Stderr io.Writer
	// Logger, when set, replaces the JSON logger on Stderr.
	Logger *slog.Logger
	// AdminListener, when set, is served instead of listening on
	// cfg.AdminAddr(); its address is the one peers are told.
	AdminListener net.Listener
	// Ready is called once the admin API serves.
	Ready func(agentInfo)
}

// agentInfo describes a running agent.
type agentInfo struct {
	NodeID    string
	AdminAddr string
	Node      *cluster.Node
}

// tlsSet holds the configs built from --tls-*; all nil without TLS.
type tlsSet struct {
	raftServer, adminServer, client *tls.Config
}

func loadTLS(cfg cli.AgentConfig) (tlsSet, error) {
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

func newLogger(cfg cli.AgentConfig, w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: cfg.SlogLevel()}))
}

// openAccessLog returns the access logger (nil when off) and what closes it.
func openAccessLog(cfg cli.AgentConfig, stdout io.Writer) (*slog.Logger, func() error, error) {
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

func runAgent(ctx context.Context, cfg cli.AgentConfig, deps agentDeps) (err error) {
	if err := cfg.Validate(); err != nil {
		if deps.AdminListener != nil {
			deps.AdminListener.Close()
		}
		return err
	}
	if deps.Stdout == nil {
		deps.Stdout = io.Discard
	}
	if deps.Stderr == nil {
		deps.Stderr = io.Discard
	}
	log := deps.Logger
	if log == nil {
		log = newLogger(cfg, deps.Stderr)
	}
	log = log.With("node", cfg.NodeID)

	tlsc, err := loadTLS(cfg)
	if err != nil {
		return err
	}
	accessLog, closeAccessLog, err := openAccessLog(cfg, deps.Stdout)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeAccessLog()) }()

	adminLn := deps.AdminListener
	if adminLn == nil {
		adminLn, err = net.Listen("tcp", cfg.AdminAddr())
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

	ccfg := cluster.DefaultConfig()
	ccfg.NodeID = cfg.NodeID
	ccfg.Zone = cfg.Zone
	ccfg.DataDir = cfg.DataDir
	ccfg.RaftBind = cfg.RaftAddr()
	if cfg.RaftPort != 0 {
		ccfg.RaftAdvertise = cfg.RaftAddr()
	}
	ccfg.AdminAddr = adminAddr
	ccfg.DataAddr = cfg.Bind
	ccfg.InstanceID = cfg.AWSInstanceID
	ccfg.ENI = cfg.AWSENI
	ccfg.PrivateIP = cfg.AWSPrivateIP
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
	node, err := cluster.Open(ctx, ccfg)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := node.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing the raft node: %w", cerr))
		}
		log.Info("raft node closed")
	}()

	reg := prometheus.NewRegistry()
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
	// workCtx is cancelled, and wg waits for them before the node closes.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	// On an early return too: stop the workers first, then wait for them.
	defer func() {
		stopWork()
		wg.Wait()
	}()
	fatal := make(chan error, 4)

	wg.Go(func() { monitor.Run(workCtx) })
	wg.Go(func() { feedHealth(workCtx, node, monitor) })

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
	vips, err := startVIPs(workCtx, &wg, cfg, vipDeps{
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

	dp, err := newDataPlane(dataPlaneDeps{
		Source:     node,
		BindIP:     cfg.Bind,
		NodeID:     cfg.NodeID,
		Zone:       cfg.Zone,
		Logger:     log.With("component", "dataplane"),
		AccessLog:  accessLog,
		Registerer: reg,
		Health:     monitor,
	})
	if err != nil {
		return err
	}
	dpCtx, stopDP := context.WithCancel(workCtx)
	defer stopDP()
	var dpWG sync.WaitGroup
	defer dpWG.Wait()
	dpWG.Go(func() {
		if err := dp.Run(dpCtx); err != nil && dpCtx.Err() == nil {
			fatal <- fmt.Errorf("data plane: %w", err)
		}
	})

	switch {
	case len(rw)+len(ro) > 0:
	case tlsc.adminServer != nil:
		log.Info("admin API: no bearer token; every client needs a certificate from the cluster CA")
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
	apiCfg.Extra = map[string]http.Handler{
		"/metrics":   promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
		"/v1/health": monitor.Handler(),
	}
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
	if deps.Ready != nil {
		deps.Ready(agentInfo{NodeID: cfg.NodeID, AdminAddr: adminAddr, Node: node})
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("stopping", "cause", context.Cause(ctx))
	case runErr = <-fatal:
		log.Error("stopping after a fatal error", "err", runErr)
	}

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
	// 4. Health checks and the config watcher; the deferred node.Close
	// runs after them.
	stopWork()
	wg.Wait()
	return runErr
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

// configSource is what the node offers the data plane and the health feeder.
type configSource interface {
	Snapshot() *fsm.Config
	Changed() <-chan struct{}
}

// feedHealth hands the monitor every pool of every new configuration until
// ctx is done.
func feedHealth(ctx context.Context, src configSource, m *health.Monitor) {
	var last uint64
	first := true
	for {
		ch := src.Changed()
		c := src.Snapshot()
		if c != nil && (first || c.Index != last) {
			first, last = false, c.Index
			pools := make(map[string]fsm.PoolSpec, len(c.Pools))
			for name, p := range c.Pools {
				pools[name] = p.Spec
			}
			m.Update(pools)
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

// ec2Actions are the EC2 actions the enabled features call.
func ec2Actions(cfg cli.AgentConfig) []string {
	var out []string
	if cfg.Discovery {
		out = append(out, awsec2.ActionDescribeInstances)
	}
	if cfg.VIP {
		out = append(out, awsec2.ActionAssociateAddress, awsec2.ActionDescribeAddresses)
	}
	return out
}

// ec2CheckTimeout bounds building the client and probing its permissions.
const ec2CheckTimeout = 30 * time.Second

// newEC2Client returns nil when neither --discovery nor --vip is set, else
// a client whose credentials were shown to allow every action needed.
func newEC2Client(ctx context.Context, cfg cli.AgentConfig, log *slog.Logger) (*awsec2.Client, error) {
	if !cfg.AWS() {
		return nil, nil
	}
	cctx, cancel := context.WithTimeout(ctx, ec2CheckTimeout)
	defer cancel()
	o := awsec2.DefaultOptions()
	o.Region = cfg.AWSRegion
	o.Endpoint = cfg.AWSEndpoint
	o.Logger = log
	c, err := awsec2.New(cctx, o)
	if err != nil {
		return nil, fmt.Errorf("--aws-region/--aws-endpoint: EC2 client: %w", err)
	}
	actions := ec2Actions(cfg)
	missing, err := c.CheckPermissions(cctx, actions)
	if err != nil {
		return nil, fmt.Errorf("checking EC2 permissions for %s: %w", strings.Join(actions, ", "), err)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the AWS credentials lack EC2 permissions needed by --discovery/--vip: %s", strings.Join(missing, ", "))
	}
	return c, nil
}

// awsDeps is what startAWS wires the EC2 features to.
type awsDeps struct {
	Client     *awsec2.Client
	Node       *cluster.Node
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// startDiscovery starts EC2 discovery when enabled, in a goroutine owned
// by wg that stops when ctx ends.
func startDiscovery(ctx context.Context, wg *sync.WaitGroup, cfg cli.AgentConfig, d awsDeps) error {
	if !cfg.Discovery {
		return nil
	}
	dc := discovery.DefaultConfig()
	dc.Lister = ec2Lister{d.Client}
	dc.Writer = d.Node
	dc.Logger = d.Logger.With("component", "discovery")
	dc.Registerer = d.Registerer
	disc, err := discovery.New(dc)
	if err != nil {
		return err
	}
	leadership, cancel := d.Node.WatchLeadership()
	wg.Go(func() {
		defer cancel()
		_ = disc.Run(ctx, leadership)
	})
	return nil
}

// ec2Lister adapts the EC2 client to discovery.Lister.
type ec2Lister struct{ c *awsec2.Client }

func (l ec2Lister) ListInstances(ctx context.Context, tags map[string]string) ([]discovery.Instance, error) {
	ins, err := l.c.ListInstances(ctx, tags)
	if err != nil {
		return nil, err
	}
	out := make([]discovery.Instance, len(ins))
	for i, in := range ins {
		out[i] = discovery.Instance{ID: in.ID, PrivateIP: in.PrivateIP, Zone: in.Zone, Tags: in.Tags}
	}
	return out, nil
}
