package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/rafterlb/rafter/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// options are the flags that are not part of bench.Config.
type options struct {
	verbose bool
	// summarize names a results JSON to summarize again instead of running.
	summarize string
	// clusterOnly runs the three-node figures alone and prints them as JSON.
	clusterOnly bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, opts, err := parse(args, stderr)
	if err != nil {
		return err
	}
	if opts.summarize != "" {
		b, err := os.ReadFile(opts.summarize)
		if err != nil {
			return err
		}
		_, summary, err := bench.Resummarize(b)
		if err != nil {
			return fmt.Errorf("%s: %w", opts.summarize, err)
		}
		fmt.Fprintln(stdout, summary)
		return nil
	}
	level := slog.LevelInfo
	if opts.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if opts.clusterOnly {
		c, err := bench.RunClusterOnly(ctx, cfg, log)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(c)
	}
	_, outs, err := bench.Run(ctx, cfg, log)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, outs.Summary)
	fmt.Fprintf(stdout, "Results: %s\nSummary: %s\nChart:   %s\n", outs.JSON, outs.SummaryFile, outs.PNG)
	return nil
}

func parse(args []string, stderr io.Writer) (bench.Config, options, error) {
	fs := flag.NewFlagSet("rafter-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "short suite (one body size, short slices): a few minutes")
	out := fs.String("out", "", "results directory (default bench/results)")
	work := fs.String("work-dir", "", "keep configs, data and logs here instead of a removed temporary directory")
	rafterBin := fs.String("rafter", "", "rafter binary (default: go build ./cmd/rafter)")
	rafterB := fs.String("rafter-b", "", "a second rafter binary, run as the proxy rafter-b when --proxies names it (e.g. haproxy,rafter,rafter-b)")
	proxies := fs.String("proxies", "", "comma-separated proxies, reference first in the report (default haproxy,nginx,rafter); fasthttp adds the fasthttp floor, a bare fasthttp proxy; go the raw Go floor, a proxy with no HTTP library")
	noInstall := fs.Bool("no-install", false, "do not apt-get install missing haproxy, nginx, wrk")
	noCluster := fs.Bool("no-cluster", false, "skip the three-node propagation and apply figures")
	scalingOnly := fs.Bool("scaling-only", false, "run only the 2-core scaling comparison (fixed-answer HAProxy and rafter at 1 and 2 cores): a few minutes")
	noPin := fs.Bool("no-pin", false, "do not pin processes to cores with taskset")
	verbose := fs.Bool("v", false, "log every slice")
	summarize := fs.String("summarize", "", "print the summary of this results JSON, analyzed again, and run nothing")
	clusterOnly := fs.Bool("cluster-only", false, "run only the three-node cluster figures and print them as JSON")
	routes := fs.Int("routes", -1, "routes in the cluster's large manifest (0: leave it out; default the suite's)")
	routeWrites := fs.Int("route-writes", 0, "one-route changes timed with the large manifest applied (default the suite's)")
	writes := fs.Int("writes", 0, "route changes timed for propagation on a small config (default the suite's)")
	mainOnly := fs.Bool("main-only", false, "run only the main rounds: no idle connections, TLS handshakes, 2-core scaling or cluster figures")
	bodySizes := fs.String("body-sizes", "", "comma-separated response body sizes in bytes (default the suite's)")
	rounds := fs.Int("rounds", 0, "saturation and paced rounds per body size (default the suite's)")
	if err := fs.Parse(args); err != nil {
		return bench.Config{}, options{}, err
	}
	if fs.NArg() > 0 {
		return bench.Config{}, options{}, errors.New("unexpected arguments: " + strings.Join(fs.Args(), " "))
	}
	cfg := bench.DefaultConfig()
	if *quick {
		cfg = bench.QuickConfig()
	}
	if *out != "" {
		cfg.OutDir = *out
	}
	cfg.WorkDir, cfg.RafterBin, cfg.RafterBBin = *work, *rafterBin, *rafterB
	if *proxies != "" {
		cfg.Proxies = strings.Split(*proxies, ",")
	}
	cfg.Install = !*noInstall
	cfg.Cluster.Enabled = !*noCluster && !*scalingOnly
	cfg.ScalingOnly = *scalingOnly
	cfg.Pin = !*noPin
	if *routes >= 0 {
		cfg.Cluster.Routes = *routes
	}
	if *routeWrites > 0 {
		cfg.Cluster.RouteWrites = *routeWrites
	}
	if *writes > 0 {
		cfg.Cluster.Writes = *writes
	}
	if *bodySizes != "" {
		cfg.BodySizes = nil
		for _, f := range strings.Split(*bodySizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return bench.Config{}, options{}, fmt.Errorf("--body-sizes: %q is not a number of bytes", f)
			}
			cfg.BodySizes = append(cfg.BodySizes, n)
		}
	}
	if *rounds > 0 {
		cfg.SaturationRounds, cfg.LatencyRounds = *rounds, *rounds
	}
	if *mainOnly {
		if *clusterOnly || *scalingOnly {
			return bench.Config{}, options{}, errors.New("--main-only excludes --cluster-only and --scaling-only")
		}
		cfg.NoExtras, cfg.IdleConns, cfg.Cluster.Enabled = true, 0, false
	}
	if *clusterOnly && !cfg.Cluster.Enabled {
		return bench.Config{}, options{}, errors.New("--cluster-only and --no-cluster exclude each other")
	}
	return cfg, options{verbose: *verbose, summarize: *summarize, clusterOnly: *clusterOnly}, cfg.Validate()
}
