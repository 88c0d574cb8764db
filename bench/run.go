package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// Outputs are the files a run wrote.
type Outputs struct {
	JSON    string
	PNG     string
	Summary string // Markdown
	// SummaryFile is the Markdown summary written beside the JSON.
	SummaryFile string
}

// idleSettle is how long each proxy stays idle after it serves before its
// idle RSS is read: longer than rafter's settle trim (5 s after its first
// table).
const idleSettle = 8 * time.Second

// FailoverNote is printed and recorded until VIP failover exists.
const FailoverNote = "Failover time: not measured — the harness does not run the VIP failover rig (internal/netns) yet."

// Run is the whole suite: tools, backend, proxies, interleaved slices,
// cluster figures, then JSON, PNG and the Markdown summary.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (*Result, Outputs, error) {
	var outs Outputs
	if err := cfg.Validate(); err != nil {
		return nil, outs, err
	}
	res := &Result{Schema: SchemaVersion, StartedAt: time.Now().UTC(), GitSHA: gitSHA(), Machine: machine(),
		Versions: map[string]string{}, Config: cfg, Notes: []string{FailoverNote}}
	dir := cfg.WorkDir
	if dir == "" {
		d, err := os.MkdirTemp("", "rafter-bench-")
		if err != nil {
			return nil, outs, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	// The idle-connection figure opens thousands of sockets to each proxy;
	// the proxies inherit the limit.
	if err := raiseNoFile(uint64(4*cfg.IdleConns + 4096)); err != nil {
		return nil, outs, err
	}
	if err := ensureTools(ctx, cfg, log); err != nil {
		return nil, outs, err
	}
	if cfg.Pin {
		if err := pinSelf(cfg.LoadCore); err != nil {
			return nil, outs, err
		}
	}

	rafterBin, rafterErr := cfg.RafterBin, error(nil)
	if rafterBin == "" {
		rafterBin, rafterErr = buildRafter(ctx, dir)
	}
	if cfg.ScalingOnly {
		if rafterErr != nil {
			return nil, outs, fmt.Errorf("rafter: %w", rafterErr)
		}
		if err := runScalingOnly(ctx, cfg, res, rafterBin, dir, log); err != nil {
			return nil, outs, err
		}
		return finish(res, cfg, log)
	}

	backend, err := StartBackend(cfg.BodySizes)
	if err != nil {
		return nil, outs, err
	}
	defer backend.Close()

	m := &realMeasurer{cfg: cfg, fs: ProcFS{Root: "/proc"}, proxies: map[string]*liveProxy{},
		wrk: Wrk{Bin: cfg.WrkBin, Core: -1, Connections: cfg.Connections}}
	if cfg.Pin {
		m.wrk.Core = cfg.LoadCore
	}
	defer func() {
		for _, p := range m.proxies {
			p.proc.Stop(5 * time.Second)
		}
	}()
	var active []string
	for _, name := range cfg.Proxies {
		var lp *liveProxy
		var info ProxyInfo
		var err error
		if name == Rafter && rafterErr != nil {
			info, err = ProxyInfo{Name: name}, rafterErr
		} else {
			lp, info, err = startProxy(ctx, cfg, name, rafterBin, filepath.Join(dir, name), backend.Addr, log)
		}
		if err != nil {
			if name == cfg.Reference {
				return nil, outs, fmt.Errorf("reference %s: %w", name, err)
			}
			info.Skipped, info.Reason = true, err.Error()
			log.Warn("proxy left out", "proxy", name, "err", err)
			res.Proxies = append(res.Proxies, info)
			continue
		}
		// Idle RSS is read once the proxy has been idle a while, the
		// same wait for every proxy: what it holds while idle, not what
		// starting it touched (rafter trims once more after settling).
		select {
		case <-time.After(idleSettle):
		case <-ctx.Done():
		}
		if rss, err := m.fs.RSS(lp.proc.PID()); err == nil {
			info.RSSIdleBytes = rss
		}
		if cfg.IdleConns > 0 {
			ic := measureIdle(ctx, m.fs, lp, "/"+strconv.Itoa(cfg.BodySizes[0]), cfg.IdleConns)
			log.Info("idle connections", "proxy", name, "conns", ic.Conns, "bytes_per_conn", ic.BytesPerConn, "err", ic.Err)
			res.IdleConns = append(res.IdleConns, ic)
		}
		res.Versions[name] = info.Version
		res.Proxies = append(res.Proxies, info)
		m.proxies[name] = lp
		active = append(active, name)
	}
	res.Versions["wrk"] = firstLine(cfg.WrkBin, "-v")
	if len(active) < 2 {
		return nil, outs, fmt.Errorf("only %v could run: nothing to compare", active)
	}
	// One unrecorded pass per proxy and size: connection pools filled, code
	// paged in, the Go heap grown, before anything counts.
	for _, body := range cfg.BodySizes {
		for _, p := range active {
			lp := m.proxies[p]
			if _, err := m.wrk.Run(ctx, "http://"+lp.listen+"/"+strconv.Itoa(body), cfg.Warmup.D()); err != nil {
				log.Warn("warmup failed", "proxy", p, "body", body, "err", err)
			}
		}
	}

	var groups []Group
	res.Slices, groups = RunSuite(ctx, cfg, active, m, func() time.Time { return time.Now().UTC() }, log)
	res.Groups = groups
	for _, p := range m.proxies {
		p.proc.Stop(5 * time.Second)
	}
	m.proxies = map[string]*liveProxy{}
	if err := ctx.Err(); err != nil {
		return nil, outs, fmt.Errorf("interrupted: %w", err)
	}

	switch {
	case cfg.NoExtras:
		res.Notes = append(res.Notes, "TLS handshakes and 2-core scaling: left out (--main-only).")
	case slices.Contains(active, HAProxy) && slices.Contains(active, Rafter):
		edir := filepath.Join(dir, "extras")
		if err := os.MkdirAll(edir, 0o755); err != nil {
			return nil, outs, err
		}
		res.Comparisons = runExtras(ctx, cfg, m, rafterBin, edir, func() time.Time { return time.Now().UTC() }, log)
		if err := ctx.Err(); err != nil {
			return nil, outs, fmt.Errorf("interrupted: %w", err)
		}
	default:
		res.Notes = append(res.Notes, "TLS handshakes and 2-core scaling: not run, they need both haproxy and rafter.")
	}

	if cfg.Cluster.Enabled {
		if rafterErr != nil {
			res.Cluster = &Cluster{Nodes: 3, Err: "no rafter binary: " + rafterErr.Error()}
		} else {
			cdir := filepath.Join(dir, "cluster")
			if err := os.MkdirAll(cdir, 0o755); err != nil {
				return nil, outs, err
			}
			res.Cluster = RunCluster(ctx, cfg.Cluster, rafterBin, cdir, log)
			if rs := res.Cluster.Routes; rs != nil && slices.Contains(active, HAProxy) {
				if d, err := haproxyStart(ctx, cfg.HAProxyBin, cdir, rs.Routes); err != nil {
					log.Warn("haproxy with many rules", "err", err)
				} else {
					rs.HAProxyStartSeconds = d.Seconds()
				}
			}
		}
	}

	return finish(res, cfg, log)
}

// runScalingOnly runs the fixed-answer proxies for the 2-core scaling
// comparison alone (-scaling-only), without the backend and main rounds.
func runScalingOnly(ctx context.Context, cfg Config, res *Result, rafterBin, dir string, log *slog.Logger) error {
	m := &realMeasurer{cfg: cfg, fs: ProcFS{Root: "/proc"}, proxies: map[string]*liveProxy{},
		wrk: Wrk{Bin: cfg.WrkBin, Core: -1, Connections: cfg.Connections}}
	res.Versions["wrk"] = firstLine(cfg.WrkBin, "-v")
	for _, name := range cfg.Proxies {
		info := ProxyInfo{Name: name}
		switch name {
		case HAProxy:
			info.Version = firstLine(cfg.HAProxyBin, "-v")
		case Rafter:
			info.Version = rafterVersion(cfg, name)
		default:
			info.Skipped, info.Reason = true, "not run: --scaling-only compares HAProxy and rafter"
		}
		res.Versions[name] = info.Version
		res.Proxies = append(res.Proxies, info)
	}
	edir := filepath.Join(dir, "extras")
	if err := os.MkdirAll(edir, 0o755); err != nil {
		return err
	}
	res.Comparisons = runExtras(ctx, cfg, m, rafterBin, edir, func() time.Time { return time.Now().UTC() }, log)
	res.Notes = append(res.Notes, "Scaling only (-scaling-only): the main rounds, idle connections, TLS handshakes and cluster figures were not run.")
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	return nil
}

// finish analyzes res and writes the JSON, the chart and the summary.
func finish(res *Result, cfg Config, log *slog.Logger) (*Result, Outputs, error) {
	var outs Outputs
	var err error
	res.Analyze()
	res.Headline = BuildHeadline(res, DefaultTargets())
	if cfg.ScalingOnly {
		res.Headline = ScalingRows(res, DefaultTargets())
	}
	res.FinishedAt = time.Now().UTC()
	res.Elapsed = res.FinishedAt.Sub(res.StartedAt).Seconds()
	png := filepath.Join(cfg.OutDir, res.BaseName()+".png")
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, outs, err
	}
	if err := WriteChart(res, png); err != nil {
		log.Warn("chart", "err", err)
	} else {
		res.Chart = filepath.Base(png)
		outs.PNG = png
	}
	outs.JSON, err = res.WriteJSON(cfg.OutDir)
	if err != nil {
		return res, outs, err
	}
	outs.Summary = Summary(res)
	outs.SummaryFile = filepath.Join(cfg.OutDir, res.BaseName()+".md")
	if err := os.WriteFile(outs.SummaryFile, []byte(outs.Summary), 0o644); err != nil {
		return res, outs, fmt.Errorf("writing summary: %w", err)
	}
	return res, outs, nil
}

// Resummarize reads a results file, analyzes its raw slices again with
// this harness's rules and returns the result with its Markdown summary:
// a run's summary table as the current code builds it, without running again.
func Resummarize(b []byte) (*Result, string, error) {
	r, err := ReadResult(b)
	if err != nil {
		return nil, "", err
	}
	r.Analyze()
	r.Headline = BuildHeadline(r, DefaultTargets())
	if r.Config.ScalingOnly {
		r.Headline = ScalingRows(r, DefaultTargets())
	}
	return r, Summary(r), nil
}

// RunClusterOnly is the three-node figures of the suite alone (propagation,
// apply throughput, the large manifest), without the proxies around them:
// what to run when only those figures are in question.
func RunClusterOnly(ctx context.Context, cfg Config, log *slog.Logger) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dir := cfg.WorkDir
	if dir == "" {
		d, err := os.MkdirTemp("", "rafter-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	bin := cfg.RafterBin
	if bin == "" {
		b, err := buildRafter(ctx, dir)
		if err != nil {
			return nil, err
		}
		bin = b
	}
	cdir := filepath.Join(dir, "cluster")
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		return nil, err
	}
	return RunCluster(ctx, cfg.Cluster, bin, cdir, log), nil
}
