package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/cmd/rafter/internal/cli"
)

// devOptions are `rafter dev`'s flags.
type devOptions struct {
	Dir       string // state directory; "" = a new temporary one
	Keep      bool   // keep the state directory on exit
	AdminPort int
	RaftPort  int
	HTTPPort  int // the demo listener's port
	AccessLog string
	LogLevel  string
}

func defaultDevOptions() devOptions {
	return devOptions{AdminPort: 7700, RaftPort: 7701, HTTPPort: 8080, AccessLog: "off", LogLevel: "warn"}
}

var devZones = [...]string{"a", "b", "c"}

func newDevCmd(s cli.Streams) *cobra.Command {
	o := defaultDevOptions()
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a three-node cluster on 127.0.0.1-3 with demo backends (what `make run` starts)",
		Long: "Start three nodes in this process on 127.0.0.1, 127.0.0.2 and 127.0.0.3 (zones a, b,\n" +
			"c; admin port 7700, Raft port 7701 on each), three demo backends, and apply a sample\n" +
			"manifest: listener web on port 8080, pool demo, route demo. While it runs, type\n" +
			"`stop n2` to kill a node and `start n2` to bring it back. Ctrl-C stops everything;\n" +
			"the state directory is removed unless --keep.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), o, s)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", o.Dir, "state directory (default: a new temporary directory)")
	f.BoolVar(&o.Keep, "keep", o.Keep, "keep the state directory on exit")
	f.IntVar(&o.AdminPort, "admin-port", o.AdminPort, "admin API port on every node")
	f.IntVar(&o.RaftPort, "raft-port", o.RaftPort, "Raft port on every node")
	f.IntVar(&o.HTTPPort, "http-port", o.HTTPPort, "port of the demo listener")
	f.StringVar(&o.AccessLog, "access-log", o.AccessLog, "access log of every node: off, stdout or a file path")
	f.StringVar(&o.LogLevel, "log-level", o.LogLevel, "debug, info, warn or error (logs go to stderr)")
	return cmd
}

func runDev(ctx context.Context, o devOptions, s cli.Streams) (err error) {
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "rafter-dev-"); err != nil {
			return err
		}
	}
	if !o.Keep {
		defer func() {
			if rerr := os.RemoveAll(dir); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}()
	}

	backends, err := startDemoBackends(len(devZones))
	if err != nil {
		return err
	}
	defer backends.Close()

	cfgs := make([]cli.AgentConfig, len(devZones))
	var join []string
	for i := range devZones {
		join = append(join, net.JoinHostPort(devIP(i), strconv.Itoa(o.AdminPort)))
	}
	for i, zone := range devZones {
		c := cli.DefaultAgentConfig()
		c.NodeID = "n" + strconv.Itoa(i+1)
		c.Zone = zone
		c.DataDir = filepath.Join(dir, c.NodeID)
		c.Bind = devIP(i)
		c.AdminPort = o.AdminPort
		c.RaftPort = o.RaftPort
		c.BootstrapExpect = len(devZones)
		c.Join = join
		c.AccessLog = o.AccessLog
		c.LogLevel = o.LogLevel
		cfgs[i] = c
	}
	var lvl cli.AgentConfig
	lvl.LogLevel = o.LogLevel
	log := slog.New(slog.NewJSONHandler(s.Err, &slog.HandlerOptions{Level: lvl.SlogLevel()}))

	dc := newDevCluster(cfgs, nil, agentDeps{Stdout: s.Out, Stderr: s.Err, Logger: log})
	if err := dc.startAll(ctx); err != nil {
		return errors.Join(err, dc.stopAll())
	}
	defer func() { err = errors.Join(err, dc.stopAll()) }()

	c := client.New("http://"+join[0], "", nil)
	manifest := demoManifest(o.HTTPPort, backends.addrs)
	if err := applyWhenLeader(ctx, c, manifest, 60*time.Second); err != nil {
		return fmt.Errorf("applying the demo manifest: %w", err)
	}
	fmt.Fprint(s.Out, tryThis(o, dir, join))

	// Commands typed on stdin stop and start nodes. The reader goroutine
	// may stay blocked in Read until the process exits: stdin cannot be
	// interrupted, and nothing waits for it.
	lines := make(chan string)
	if s.In != nil {
		go readLines(s.In, lines)
	}
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(s.Out, "stopping the dev cluster...")
			return nil
		case e := <-dc.exits:
			return fmt.Errorf("node %s stopped unexpectedly: %w", e.id, e.err)
		case line, ok := <-lines:
			if !ok {
				lines = nil
				continue
			}
			devCommand(ctx, dc, s.Out, line)
		}
	}
}

func devIP(i int) string { return "127.0.0." + strconv.Itoa(i+1) }

func readLines(r io.Reader, out chan<- string) {
	defer close(out)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		out <- sc.Text()
	}
}

func devCommand(ctx context.Context, dc *devCluster, w io.Writer, line string) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return
	}
	switch {
	case len(f) == 2 && (f[0] == "stop" || f[0] == "kill"):
		if err := dc.stop(f[1]); err != nil {
			fmt.Fprintln(w, "error:", err)
			return
		}
		fmt.Fprintf(w, "%s stopped (type `start %s` to bring it back)\n", f[1], f[1])
	case len(f) == 2 && f[0] == "start":
		if err := dc.start(ctx, f[1]); err != nil {
			fmt.Fprintln(w, "error:", err)
			return
		}
		fmt.Fprintf(w, "%s started\n", f[1])
	default:
		fmt.Fprintln(w, "commands: stop NODE, start NODE (nodes n1, n2, n3); Ctrl-C quits")
	}
}

// devCluster runs several agents in this process and owns their goroutines.
type devCluster struct {
	deps  agentDeps
	exits chan nodeExit

	mu    sync.Mutex
	nodes map[string]*devNode
	order []string
}

type devNode struct {
	cfg    cli.AgentConfig
	ln     net.Listener // pre-opened admin listener for the next start, or nil
	cancel context.CancelFunc
	done   chan struct{}
	info   agentInfo
}

type nodeExit struct {
	id  string
	err error
}

// newDevCluster prepares agents; listeners, when not nil, are pre-opened
// admin listeners (one per config) for the first start.
func newDevCluster(cfgs []cli.AgentConfig, listeners []net.Listener, deps agentDeps) *devCluster {
	dc := &devCluster{deps: deps, exits: make(chan nodeExit, len(cfgs)), nodes: map[string]*devNode{}}
	for i, c := range cfgs {
		n := &devNode{cfg: c}
		if listeners != nil {
			n.ln = listeners[i]
		}
		dc.nodes[c.NodeID] = n
		dc.order = append(dc.order, c.NodeID)
	}
	return dc
}

// startAll starts every node and waits until each admin API serves.
func (dc *devCluster) startAll(ctx context.Context) error {
	for _, id := range dc.order {
		if err := dc.start(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// start runs one node and waits until its admin API serves or it fails.
func (dc *devCluster) start(ctx context.Context, id string) error {
	dc.mu.Lock()
	n, ok := dc.nodes[id]
	if !ok {
		dc.mu.Unlock()
		return fmt.Errorf("no node %q (have %s)", id, strings.Join(dc.order, ", "))
	}
	if n.done != nil {
		dc.mu.Unlock()
		return fmt.Errorf("%s is running", id)
	}
	nctx, cancel := context.WithCancel(ctx)
	ready := make(chan agentInfo, 1)
	done := make(chan struct{})
	n.cancel, n.done = cancel, done
	deps := dc.deps
	deps.AdminListener, n.ln = n.ln, nil
	cfg := n.cfg
	dc.mu.Unlock()

	errc := make(chan error, 1)
	var started atomic.Bool
	deps.Ready = func(a agentInfo) {
		started.Store(true)
		ready <- a
	}
	go func() {
		defer close(done)
		err := runAgent(nctx, cfg, deps)
		switch {
		case !started.Load():
			errc <- err
		case nctx.Err() == nil:
			if err == nil {
				err = errors.New("exited")
			}
			select {
			case dc.exits <- nodeExit{id, err}:
			default: // an exit is already pending; the cluster is stopping
			}
		}
	}()
	select {
	case info := <-ready:
		dc.mu.Lock()
		n.info = info
		dc.mu.Unlock()
		return nil
	case err := <-errc:
		dc.mu.Lock()
		n.cancel, n.done = nil, nil
		dc.mu.Unlock()
		cancel()
		if err == nil {
			err = errors.New("exited before serving")
		}
		return fmt.Errorf("starting %s: %w", id, err)
	}
}

// stop stops one node and waits for it.
func (dc *devCluster) stop(id string) error {
	dc.mu.Lock()
	n, ok := dc.nodes[id]
	if !ok {
		dc.mu.Unlock()
		return fmt.Errorf("no node %q (have %s)", id, strings.Join(dc.order, ", "))
	}
	cancel, done := n.cancel, n.done
	n.cancel, n.done = nil, nil
	dc.mu.Unlock()
	if done == nil {
		return fmt.Errorf("%s is not running", id)
	}
	cancel()
	<-done
	return nil
}

// stopAll stops every running node (in parallel) and releases unused
// listeners.
func (dc *devCluster) stopAll() error {
	var wg sync.WaitGroup
	dc.mu.Lock()
	for _, id := range dc.order {
		n := dc.nodes[id]
		if n.ln != nil {
			n.ln.Close()
			n.ln = nil
		}
		if n.done == nil {
			continue
		}
		cancel, done := n.cancel, n.done
		n.cancel, n.done = nil, nil
		wg.Go(func() {
			cancel()
			<-done
		})
	}
	dc.mu.Unlock()
	wg.Wait()
	return nil
}

// adminAddr is a running node's admin address ("" when stopped).
func (dc *devCluster) adminAddr(id string) string {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if n := dc.nodes[id]; n != nil && n.done != nil {
		return n.info.AdminAddr
	}
	return ""
}

// applyWhenLeader applies manifest once a leader is elected, retrying
// while the cluster forms.
func applyWhenLeader(ctx context.Context, c *client.Client, manifest []byte, budget time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		st, _, err := c.Status(ctx)
		if err == nil && st.Leader != "" {
			if _, err = c.Apply(ctx, manifest, false); err == nil {
				return nil
			}
			// A validation error will not go away by retrying.
			if client.IsStatus(err, http.StatusBadRequest) {
				return err
			}
		} else if err == nil {
			err = errors.New("no leader elected yet")
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// demoBackends are small HTTP servers that say who they are.
type demoBackends struct {
	addrs   []string
	servers []*http.Server
	wg      sync.WaitGroup
}

func startDemoBackends(n int) (*demoBackends, error) {
	b := &demoBackends{}
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("demo backend: %w", err)
		}
		msg := fmt.Sprintf("hello from demo-%d (zone %s)\n", i+1, devZones[i%len(devZones)])
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
		mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, msg)
		})
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		b.addrs = append(b.addrs, ln.Addr().String())
		b.servers = append(b.servers, srv)
		b.wg.Go(func() { _ = srv.Serve(ln) })
	}
	return b, nil
}

func (b *demoBackends) Close() {
	for _, s := range b.servers {
		s.Close()
	}
	b.wg.Wait()
}

func demoManifest(port int, backends []string) []byte {
	var sb strings.Builder
	fmt.Fprintf(&sb, "kind: listener\nname: web\nspec: {port: %d}\n---\n", port)
	sb.WriteString("kind: pool\nname: demo\nspec:\n  balancer: round_robin\n  zone_aware: true\n")
	sb.WriteString("  health_check: {path: /healthz, interval: 2s, timeout: 1s, rise: 2, fall: 3}\n  backends:\n")
	for i, a := range backends {
		fmt.Fprintf(&sb, "    - {addr: %q, zone: %s, weight: 1}\n", a, devZones[i%len(devZones)])
	}
	sb.WriteString("---\nkind: route\nname: demo\nspec:\n  listener: web\n  match: {path: {prefix: /}}\n  action:\n    split: [{pool: demo, weight: 100}]\n")
	return []byte(sb.String())
}

func tryThis(o devOptions, dir string, admins []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nrafter dev: 3 nodes running (state in %s", dir)
	if o.Keep {
		b.WriteString(", kept on exit")
	}
	b.WriteString(")\n")
	for i, a := range admins {
		fmt.Fprintf(&b, "  n%d  zone %s  admin http://%s  proxy http://%s:%d\n", i+1, devZones[i], a, devIP(i), o.HTTPPort)
	}
	admin := admins[0]
	try := [][2]string{
		{fmt.Sprintf("curl http://127.0.0.1:%d/", o.HTTPPort), "the demo pool; each node prefers backends in its zone"},
		{fmt.Sprintf("curl http://127.0.0.2:%d/", o.HTTPPort), "same routes on every node"},
		{"curl http://" + admin + "/v1/status", "Raft state as JSON"},
		{"curl http://" + admin + "/v1/health", "this node's health checks"},
		{"curl http://" + admin + "/metrics", "Prometheus metrics"},
		{"rafter status", "readable cluster status"},
		{"rafter get routes", ""},
		{"rafter get pool demo -o yaml", ""},
		{"rafter apply -f examples/demo.yaml", "more routes; run it twice: \"unchanged\""},
	}
	if admin != "127.0.0.1:7700" {
		try = append(try, [2]string{"export RAFTER_ADDR=http://" + admin, "for the rafter commands above"})
	}
	b.WriteString("\nTry this (in another terminal):\n")
	for _, l := range try {
		if l[1] == "" {
			fmt.Fprintf(&b, "  %s\n", l[0])
		} else {
			fmt.Fprintf(&b, "  %-40s # %s\n", l[0], l[1])
		}
	}
	b.WriteString(`
Here, type:
  stop n1      kill a node (the others elect a new leader and keep serving)
  start n1     bring it back (it catches up from its Raft log)
Ctrl-C stops everything.
`)
	return b.String()
}
