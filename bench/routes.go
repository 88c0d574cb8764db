package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// RouteScale is the large-manifest figures of the three-node cluster.
type RouteScale struct {
	Routes int `json:"routes"`
	// CreateSeconds is the first `rafter apply -f` of the manifest.
	CreateSeconds float64 `json:"create_seconds"`
	// UnchangedRawSeconds is every timed apply of the same manifest again
	// (nothing to change); UnchangedSeconds their median.
	UnchangedRawSeconds []float64 `json:"unchanged_raw_seconds"`
	UnchangedSeconds    float64   `json:"unchanged_seconds"`
	// Propagation: one route changed with the manifest applied, until
	// every node's data plane serves it.
	Propagation *LatencySummary `json:"propagation,omitempty"`
	// HAProxyStartSeconds, for context: HAProxy started with the same
	// number of rules until it answers (what a reload costs it).
	HAProxyStartSeconds float64 `json:"haproxy_start_seconds,omitempty"`
	Err                 string  `json:"error,omitempty"`
}

// RouteManifest is n respond routes on listener, route i matching the
// path prefix /r/i and answering "r<i>", as `rafter apply -f` takes it.
func RouteManifest(listener string, n int) string {
	var b strings.Builder
	b.Grow(n * 160)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, "kind: route\nname: r%d\nspec:\n  listener: %s\n  match: {path: {exact: /r/%d}}\n  action:\n    respond: {status: 200, body: r%d}\n", i, listener, i, i)
	}
	return b.String()
}

// HAProxyRoutesConfig is HAProxy with n rules answering like RouteManifest's routes.
func HAProxyRoutesConfig(listen string, n int) string {
	var b strings.Builder
	b.Grow(n * 90)
	fmt.Fprintf(&b, "global\n    nbthread 1\n\ndefaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\nfrontend routes\n    bind %s\n", listen)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "    http-request return status 200 content-type text/plain string r%d if { path /r/%d }\n", i, i)
	}
	return b.String()
}

// timeApply runs `rafter apply -f file` against admin and returns its wall time.
func timeApply(ctx context.Context, bin, admin, file string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	t0 := time.Now()
	out, err := exec.CommandContext(ctx, bin, "apply", "-f", file, "--addr", admin, "--timeout", "4m").CombinedOutput()
	d := time.Since(t0)
	if err != nil {
		return d, fmt.Errorf("rafter apply -f: %w: %s", err, LogTailBytes(out, 400))
	}
	return d, nil
}

// measureRoutes applies a cfg.Routes-route manifest to the cluster, times
// its unchanged re-applies and a one-route change's propagation with it in
// place. The routes stay on the cluster.
func measureRoutes(ctx context.Context, cfg ClusterConfig, bin, dir, leader, listener string, nodes []string, log *slog.Logger) *RouteScale {
	rs := &RouteScale{Routes: cfg.Routes}
	file := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(file, []byte(RouteManifest(listener, cfg.Routes)), 0o644); err != nil {
		rs.Err = err.Error()
		return rs
	}
	d, err := timeApply(ctx, bin, leader, file)
	if err != nil {
		rs.Err = fmt.Sprintf("first apply of %d routes: %v", cfg.Routes, err)
		return rs
	}
	rs.CreateSeconds = d.Seconds()
	log.Info("large manifest applied", "routes", cfg.Routes, "seconds", rs.CreateSeconds)
	for i := 0; i < cfg.ApplyRepeats && ctx.Err() == nil; i++ {
		d, err := timeApply(ctx, bin, leader, file)
		if err != nil {
			rs.Err = fmt.Sprintf("unchanged apply of %d routes: %v", cfg.Routes, err)
			break
		}
		rs.UnchangedRawSeconds = append(rs.UnchangedRawSeconds, d.Seconds())
	}
	if len(rs.UnchangedRawSeconds) > 0 {
		s := slices.Sorted(slices.Values(rs.UnchangedRawSeconds))
		rs.UnchangedSeconds = median(s)
	}
	pc := cfg
	pc.Writes = cfg.RouteWrites
	p := measurePropagation(ctx, pc, leader, nodes)
	rs.Propagation = &p
	return rs
}

// haproxyStart times HAProxy from exec until it answers the last of n rules.
func haproxyStart(ctx context.Context, haproxyBin, dir string, n int) (time.Duration, error) {
	port, err := freePort("127.0.0.1")
	if err != nil {
		return 0, err
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	path := filepath.Join(dir, "haproxy-routes.cfg")
	if err := os.WriteFile(path, []byte(HAProxyRoutesConfig(listen, n)), 0o644); err != nil {
		return 0, err
	}
	t0 := time.Now()
	p, err := StartProc(ProcSpec{Name: "haproxy-routes", Path: haproxyBin, Args: []string{"-db", "-f", path}, Core: -1, CPUList: allCPUs(), Log: filepath.Join(dir, "haproxy-routes.log")})
	if err != nil {
		return 0, err
	}
	defer p.Stop(5 * time.Second)
	last := "r" + strconv.Itoa(n-1)
	c := newPollClient()
	defer c.CloseIdleConnections()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	seen := pollFor(wctx, c, "http://"+listen+"/r/"+strconv.Itoa(n-1), last)
	if seen.IsZero() {
		return 0, fmt.Errorf("haproxy with %d rules did not answer within 60s", n)
	}
	return seen.Sub(t0), nil
}
