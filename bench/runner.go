package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// liveProxy is a proxy process the suite measures.
type liveProxy struct {
	name   string
	proc   *Proc
	listen string
	log    string
}

// realMeasurer drives wrk and the paced client against live proxies and
// reads their CPU and memory from /proc.
type realMeasurer struct {
	cfg     Config
	fs      ProcFS
	wrk     Wrk
	proxies map[string]*liveProxy
}

func (m *realMeasurer) proxy(name string) (*liveProxy, error) {
	p, ok := m.proxies[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotRunning, name)
	}
	if done, err := p.proc.Exited(); done {
		return nil, fmt.Errorf("%w: %s exited (%v): %s", ErrNotRunning, name, err, testutil.LogTail(p.log, 400))
	}
	return p, nil
}

// ErrNotRunning marks a slice whose proxy is not (or no longer) running.
var ErrNotRunning = errors.New("proxy not running")

// around measures CPU and peak RSS of p while f runs.
func (m *realMeasurer) around(ctx context.Context, p *liveProxy, f func() error) (cpu time.Duration, rss int64, err error) {
	pid := p.proc.PID()
	c0, err := m.fs.CPU(pid)
	if err != nil {
		return 0, 0, err
	}
	sctx, stop := context.WithCancel(ctx)
	peak := make(chan int64, 1)
	go func() { peak <- RSSSampler{FS: m.fs, PID: pid, Interval: 200 * time.Millisecond}.Run(sctx) }()
	ferr := f()
	stop()
	rss = <-peak
	c1, err := m.fs.CPU(pid)
	if err != nil {
		return 0, 0, err
	}
	return c1 - c0, rss, ferr
}

func (m *realMeasurer) Saturation(ctx context.Context, proxy string, body int) (Measurement, error) {
	p, err := m.proxy(proxy)
	if err != nil {
		return Measurement{}, err
	}
	return m.saturate(ctx, p, m.wrk, "http://"+p.listen+"/"+strconv.Itoa(body), m.cfg.SaturationSlice.D())
}

// saturate runs w against url for d and charges p's CPU to the requests served.
func (m *realMeasurer) saturate(ctx context.Context, p *liveProxy, w Wrk, url string, d time.Duration) (Measurement, error) {
	var res WrkResult
	cpu, rss, err := m.around(ctx, p, func() error {
		var err error
		res, err = w.Run(ctx, url, d)
		return err
	})
	if err != nil {
		return Measurement{}, err
	}
	x := Measurement{Requests: res.Requests, Errors: res.Errors, Seconds: res.Seconds, RPS: res.RPS,
		CPUSeconds: cpu.Seconds(), RSSBytes: rss, SatP99Ms: ms(res.P99)}
	if res.Requests > 0 {
		x.CPUPerReqUs = cpu.Seconds() * 1e6 / float64(res.Requests)
	}
	if res.Requests == 0 || res.Errors*100 > res.Requests {
		return x, fmt.Errorf("%s: %d errors in %d requests", p.name, res.Errors, res.Requests)
	}
	return x, nil
}

func (m *realMeasurer) Latency(ctx context.Context, proxy string, body int, rate float64) (Measurement, error) {
	p, err := m.proxy(proxy)
	if err != nil {
		return Measurement{}, err
	}
	pc := Paced{Addr: p.listen, Path: "/" + strconv.Itoa(body), Rate: rate, Workers: m.cfg.PacedWorkers,
		Timeout: m.cfg.RequestTimeout.D()}
	var r PacedResult
	cpu, rss, err := m.around(ctx, p, func() error {
		var err error
		r, err = pc.Run(ctx, m.cfg.LatencySlice.D(), 2_000_000)
		return err
	})
	if err != nil {
		return Measurement{}, err
	}
	ok := int64(len(r.Latencies))
	x := Measurement{Requests: ok, Errors: r.Errors, Seconds: r.Seconds, OfferedRPS: rate,
		CPUSeconds: cpu.Seconds(), RSSBytes: rss}
	if r.Seconds > 0 {
		x.RPS = float64(ok) / r.Seconds
	}
	if ok > 0 {
		x.CPUPerReqUs = cpu.Seconds() * 1e6 / float64(ok)
		ms := func(p float64) float64 { return float64(Percentile(r.Latencies, p)) / float64(time.Millisecond) }
		x.P50Ms, x.P99Ms, x.P999Ms = ms(50), ms(99), ms(99.9)
	}
	if ok == 0 || r.Errors*100 > r.Sent {
		return x, fmt.Errorf("%s: %d errors in %d requests", proxy, r.Errors, r.Sent)
	}
	return x, nil
}

// freePort asks the kernel for a free port on ip.
func freePort(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("free port on %s: %w", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startProxy configures and starts one proxy and waits until it serves the backend.
func startProxy(ctx context.Context, cfg Config, name, rafterBin, dir, backend string, log *slog.Logger) (*liveProxy, ProxyInfo, error) {
	info := ProxyInfo{Name: name}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, info, err
	}
	port, err := freePort("127.0.0.1")
	if err != nil {
		return nil, info, err
	}
	setup := ProxySetup{
		Listen: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Backend: backend, Dir: dir,
		ConnectTimeout: cfg.ConnectTimeout.D(), RequestTimeout: cfg.RequestTimeout.D(),
		IdleTimeout: cfg.IdleTimeout.D(), MaxConns: 4096,
	}
	core := -1
	if cfg.Pin {
		core = cfg.ProxyCore
	}
	lp := &liveProxy{name: name, listen: setup.Listen, log: filepath.Join(dir, name+".log")}
	spec := ProcSpec{Name: name, Core: core, Log: lp.log}
	var afterStart func() error
	switch name {
	case HAProxy:
		info.ConfigText = HAProxyConfig(setup)
		path := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(path, []byte(info.ConfigText), 0o644); err != nil {
			return nil, info, err
		}
		if out, err := exec.CommandContext(ctx, cfg.HAProxyBin, "-c", "-f", path).CombinedOutput(); err != nil {
			return nil, info, fmt.Errorf("haproxy -c: %w: %s", err, out)
		}
		spec.Path, spec.Args = cfg.HAProxyBin, []string{"-db", "-f", path}
		info.Version = firstLine(cfg.HAProxyBin, "-v")
	case Nginx:
		info.ConfigText = NginxConfig(setup)
		path := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(path, []byte(info.ConfigText), 0o644); err != nil {
			return nil, info, err
		}
		args := []string{"-p", dir + "/", "-c", path, "-e", filepath.Join(dir, "error.log")}
		if out, err := exec.CommandContext(ctx, cfg.NginxBin, append([]string{"-t"}, args...)...).CombinedOutput(); err != nil {
			return nil, info, fmt.Errorf("nginx -t: %w: %s", err, out)
		}
		spec.Path, spec.Args = cfg.NginxBin, args
		info.Version = firstLine(cfg.NginxBin, "-v")
	case Rafter, RafterB:
		if name == RafterB {
			rafterBin = cfg.RafterBBin
		}
		if rafterBin == "" {
			return nil, info, errors.New("no rafter binary")
		}
		admin, err := freePort("127.0.0.1")
		if err != nil {
			return nil, info, err
		}
		raftPort, err := freePort("127.0.0.1")
		if err != nil {
			return nil, info, err
		}
		info.ConfigText = RafterManifest(setup, port)
		spec.Path = rafterBin
		spec.Args = []string{"agent", "--node-id", "n1", "--zone", "a", "--data-dir", filepath.Join(dir, "data"),
			"--bind", "127.0.0.1", "--admin-port", strconv.Itoa(admin), "--raft-port", strconv.Itoa(raftPort),
			"--bootstrap-expect", "1", "--access-log", "off", "--log-level", "warn"}
		spec.Env = []string{"GOMAXPROCS=1"}
		info.Version = rafterVersion(cfg, name)
		adminURL := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(admin))
		afterStart = func() error {
			if _, err := waitLeader(ctx, adminURL, 1, 30*time.Second); err != nil {
				return err
			}
			return applyManifest(ctx, adminURL, info.ConfigText, 20*time.Second)
		}
	case Floor, RawFloor:
		bin, err := buildFloor(ctx, dir, "floorproxy-"+name)
		if err != nil {
			return nil, info, err
		}
		spec.Path = bin
		spec.Args = []string{"--listen", setup.Listen, "--backend", backend,
			"--timeout", setup.RequestTimeout.String(), "--idle", setup.IdleTimeout.String(),
			"--max-conns", strconv.Itoa(setup.MaxConns)}
		spec.Env = []string{"GOMAXPROCS=1"}
		info.Version = floorVersion()
		if name == RawFloor {
			spec.Args = append(spec.Args, "--raw")
			info.Version = runtime.Version()
		}
	default:
		return nil, info, fmt.Errorf("unknown proxy %q", name)
	}
	proc, err := StartProc(spec)
	if err != nil {
		return nil, info, err
	}
	lp.proc = proc
	fail := func(err error) (*liveProxy, ProxyInfo, error) {
		proc.Stop(3 * time.Second)
		return nil, info, fmt.Errorf("%w; log: %s", err, testutil.LogTail(lp.log, 600))
	}
	if afterStart != nil {
		if err := afterStart(); err != nil {
			return fail(err)
		}
	}
	if err := waitServing(ctx, lp.listen, cfg.BodySizes[0], 15*time.Second); err != nil {
		return fail(err)
	}
	log.Info("proxy serving", "proxy", name, "listen", lp.listen, "pid", proc.PID())
	return lp, info, nil
}

// waitServing polls GET /<body> until it answers 200 with body bytes.
func waitServing(ctx context.Context, addr string, body int, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	c := &http.Client{Timeout: time.Second}
	defer c.CloseIdleConnections()
	var last error
	for i := 0; i < 10000; i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/"+strconv.Itoa(body), nil)
		resp, err := c.Do(req)
		if err == nil {
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && n == int64(body) {
				return nil
			}
			err = fmt.Errorf("status %d, %d bytes", resp.StatusCode, n)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not serving the backend within %v: %v", addr, within, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not serving: %v", addr, last)
}

func firstLine(bin string, args ...string) string {
	out, _ := exec.Command(bin, args...).CombinedOutput()
	s, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return s
}
