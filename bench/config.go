package bench

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// Proxy names the harness knows how to run.
const (
	HAProxy = "haproxy"
	Nginx   = "nginx"
	Rafter  = "rafter"
	// RafterB is a second rafter build, run exactly like Rafter from
	// Config.RafterBBin, so two builds are compared in one interleaved run.
	RafterB = "rafter-b"
	// Floor is the fasthttp floor (floor.go), built from this module.
	Floor = "fasthttp"
	// RawFloor is the raw Go floor (rawfloor.go), built with Floor.
	RawFloor = "go"
)

// Config is one benchmark suite.
type Config struct {
	// OutDir receives <date>-<sha>.json and .png.
	OutDir string `json:"out_dir"`
	// WorkDir holds proxy configs, data dirs and logs; empty means a fresh
	// temporary directory removed at the end.
	WorkDir string `json:"work_dir,omitempty"`

	// Proxies in schedule order; Reference must be one of them and is
	// measured first and last in every round.
	Proxies   []string `json:"proxies"`
	Reference string   `json:"reference"`

	// ProxyCore runs every proxy; LoadCore runs the backend, wrk and the
	// paced client (the harness pins itself there).
	ProxyCore int  `json:"proxy_core"`
	LoadCore  int  `json:"load_core"`
	Pin       bool `json:"pin"`

	BodySizes []int `json:"body_sizes"`

	SaturationRounds int          `json:"saturation_rounds"`
	SaturationSlice  fsm.Duration `json:"saturation_slice"`
	LatencyRounds    int          `json:"latency_rounds"`
	LatencySlice     fsm.Duration `json:"latency_slice"`
	Warmup           fsm.Duration `json:"warmup"`
	// Connections wrk keeps open (one wrk thread).
	Connections int `json:"connections"`

	// LatencyLoad is the paced rate as a fraction of the slowest proxy's
	// saturation throughput for that body size, capped at MaxPacedRPS.
	LatencyLoad  float64 `json:"latency_load"`
	MaxPacedRPS  int     `json:"max_paced_rps"`
	PacedWorkers int     `json:"paced_workers"`

	// A round is discarded when the reference's two slices in it differ by
	// more than DiscardTolerance of their mean.
	DiscardTolerance float64 `json:"discard_tolerance"`
	// A ratio is refused when fewer than MinKeptRounds rounds were kept or
	// more than MaxDiscardFraction of the rounds were discarded.
	MinKeptRounds      int     `json:"min_kept_rounds"`
	MaxDiscardFraction float64 `json:"max_discard_fraction"`

	// Timeouts every proxy is given, so they are configured alike.
	ConnectTimeout fsm.Duration `json:"connect_timeout"`
	RequestTimeout fsm.Duration `json:"request_timeout"`
	IdleTimeout    fsm.Duration `json:"idle_timeout"`

	// Binaries; empty RafterBin means build ./cmd/rafter with the go tool.
	RafterBin string `json:"rafter_bin,omitempty"`
	// RafterBBin is the build run as the proxy "rafter-b" (required by it).
	RafterBBin string `json:"rafter_b_bin,omitempty"`
	HAProxyBin string `json:"haproxy_bin"`
	NginxBin   string `json:"nginx_bin"`
	WrkBin     string `json:"wrk_bin"`
	// Install runs apt-get for haproxy, nginx and wrk when missing.
	Install bool `json:"install"`

	// ExtraRounds is the rounds of the TLS handshake and scaling comparisons.
	ExtraRounds int `json:"extra_rounds"`
	// HandshakeSlice, HandshakeWorkers and MaxHandshakes shape one TLS slice.
	HandshakeSlice   fsm.Duration `json:"handshake_slice"`
	HandshakeWorkers int          `json:"handshake_workers"`
	MaxHandshakes    int64        `json:"max_handshakes"`
	// ScalingSlice is one saturation slice of the 1- and 2-core comparison.
	ScalingSlice fsm.Duration `json:"scaling_slice"`
	// IdleConns is how many idle keep-alive connections measure memory per connection.
	IdleConns int `json:"idle_conns"`
	// ScalingOnly runs the 2-core scaling comparison alone: no main
	// rounds, idle connections, TLS handshakes or cluster figures.
	ScalingOnly bool `json:"scaling_only,omitempty"`
	// NoExtras leaves out the TLS handshake and 2-core scaling comparisons.
	NoExtras bool `json:"no_extras,omitempty"`

	Cluster ClusterConfig `json:"cluster"`
}

// ClusterConfig is the three-node part of the suite.
type ClusterConfig struct {
	Enabled bool `json:"enabled"`
	// Writes is how many route changes are timed for propagation.
	Writes       int          `json:"writes"`
	WriteTimeout fsm.Duration `json:"write_timeout"`
	// ApplyDuration and ApplyWorkers shape the Raft apply throughput run.
	ApplyDuration fsm.Duration `json:"apply_duration"`
	ApplyWorkers  int          `json:"apply_workers"`
	// MaxApplyWrites bounds the throughput run by count as well as time.
	MaxApplyWrites int `json:"max_apply_writes"`
	// Routes is the size of the large manifest (0: not run); RouteWrites
	// how many one-route changes are timed with it applied, ApplyRepeats
	// how many times its unchanged apply is timed.
	Routes       int `json:"routes"`
	RouteWrites  int `json:"route_writes"`
	ApplyRepeats int `json:"apply_repeats"`
}

// DefaultConfig is the full suite (`make bench`): about seven minutes on two cores.
func DefaultConfig() Config {
	return Config{
		OutDir:             "bench/results",
		Proxies:            []string{HAProxy, Nginx, Rafter},
		Reference:          HAProxy,
		ProxyCore:          0,
		LoadCore:           1,
		Pin:                true,
		BodySizes:          []int{0, 1024, 64 * 1024},
		SaturationRounds:   3,
		SaturationSlice:    fsm.Duration(4 * time.Second),
		LatencyRounds:      3,
		LatencySlice:       fsm.Duration(2500 * time.Millisecond),
		Warmup:             fsm.Duration(time.Second),
		Connections:        50,
		LatencyLoad:        0.25,
		MaxPacedRPS:        20000,
		PacedWorkers:       64,
		DiscardTolerance:   0.10,
		MinKeptRounds:      2,
		MaxDiscardFraction: 0.5,
		ConnectTimeout:     fsm.Duration(5 * time.Second),
		RequestTimeout:     fsm.Duration(30 * time.Second),
		IdleTimeout:        fsm.Duration(60 * time.Second),
		HAProxyBin:         "haproxy",
		NginxBin:           "nginx",
		WrkBin:             "wrk",
		Install:            true,
		ExtraRounds:        3,
		HandshakeSlice:     fsm.Duration(2 * time.Second),
		HandshakeWorkers:   8,
		MaxHandshakes:      200000,
		ScalingSlice:       fsm.Duration(3 * time.Second),
		IdleConns:          2000,
		Cluster: ClusterConfig{
			Enabled:        true,
			Writes:         200,
			WriteTimeout:   fsm.Duration(5 * time.Second),
			ApplyDuration:  fsm.Duration(5 * time.Second),
			ApplyWorkers:   8,
			MaxApplyWrites: 200000,
			Routes:         10000,
			// 200 samples as for Writes: the nearest-rank p99 of 50
			// is the slowest one, so one stall decided the figure.
			RouteWrites:  200,
			ApplyRepeats: 3,
		},
	}
}

// QuickConfig is `make bench-quick`: one body size, short slices, under two minutes.
func QuickConfig() Config {
	c := DefaultConfig()
	c.BodySizes = []int{1024}
	c.SaturationRounds = 3
	c.SaturationSlice = fsm.Duration(2 * time.Second)
	c.LatencyRounds = 3
	c.LatencySlice = fsm.Duration(1500 * time.Millisecond)
	c.Warmup = fsm.Duration(500 * time.Millisecond)
	c.Cluster.Writes = 50
	c.Cluster.ApplyDuration = fsm.Duration(2 * time.Second)
	c.HandshakeSlice = fsm.Duration(time.Second)
	c.ScalingSlice = fsm.Duration(time.Second)
	c.Cluster.RouteWrites = 20
	c.Cluster.ApplyRepeats = 2
	return c
}

// Validate reports the first bad field by its path.
func (c Config) Validate() error {
	bad := func(field, format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, a...))
	}
	if c.OutDir == "" {
		return bad("out_dir", "required")
	}
	if len(c.Proxies) < 2 {
		return bad("proxies", "need the reference and at least one other, got %v", c.Proxies)
	}
	seen := map[string]bool{}
	for i, p := range c.Proxies {
		if p != HAProxy && p != Nginx && p != Rafter && p != RafterB && p != Floor && p != RawFloor {
			return bad(fmt.Sprintf("proxies[%d]", i), "unknown proxy %q (haproxy, nginx, rafter, rafter-b, fasthttp, go)", p)
		}
		if p == RafterB && c.RafterBBin == "" {
			return bad(fmt.Sprintf("proxies[%d]", i), "%q needs the binary it runs (--rafter-b)", p)
		}
		if seen[p] {
			return bad(fmt.Sprintf("proxies[%d]", i), "%q listed twice", p)
		}
		seen[p] = true
	}
	if !slices.Contains(c.Proxies, c.Reference) {
		return bad("reference", "%q is not in proxies", c.Reference)
	}
	if c.ProxyCore < 0 || c.LoadCore < 0 || (c.Pin && c.ProxyCore == c.LoadCore) {
		return bad("load_core", "proxy and load need two different cores (got %d and %d)", c.ProxyCore, c.LoadCore)
	}
	if len(c.BodySizes) == 0 {
		return bad("body_sizes", "at least one size")
	}
	for i, b := range c.BodySizes {
		if b < 0 || b > 16<<20 {
			return bad(fmt.Sprintf("body_sizes[%d]", i), "%d out of range 0..16MiB", b)
		}
	}
	switch {
	case c.SaturationRounds < 1:
		return bad("saturation_rounds", "at least 1")
	case c.LatencyRounds < 1:
		return bad("latency_rounds", "at least 1")
	case c.SaturationSlice.D() < 500*time.Millisecond:
		return bad("saturation_slice", "at least 500ms")
	case c.LatencySlice.D() < 500*time.Millisecond:
		return bad("latency_slice", "at least 500ms")
	case c.Warmup.D() < 0:
		return bad("warmup", "negative")
	case c.Connections < 1 || c.Connections > 10000:
		return bad("connections", "1..10000")
	case c.LatencyLoad <= 0 || c.LatencyLoad >= 1:
		return bad("latency_load", "a fraction strictly between 0 and 1")
	case c.MaxPacedRPS < 1:
		return bad("max_paced_rps", "at least 1")
	case c.PacedWorkers < 1 || c.PacedWorkers > 4096:
		return bad("paced_workers", "1..4096")
	case c.DiscardTolerance <= 0:
		return bad("discard_tolerance", "must be positive")
	case c.MinKeptRounds < 1:
		return bad("min_kept_rounds", "at least 1")
	case c.MaxDiscardFraction < 0 || c.MaxDiscardFraction >= 1:
		return bad("max_discard_fraction", "0 <= f < 1")
	case c.MinKeptRounds > c.SaturationRounds:
		return bad("min_kept_rounds", "%d exceeds saturation_rounds %d: every ratio would be refused", c.MinKeptRounds, c.SaturationRounds)
	case c.MinKeptRounds > c.LatencyRounds:
		return bad("min_kept_rounds", "%d exceeds latency_rounds %d: every ratio would be refused", c.MinKeptRounds, c.LatencyRounds)
	case c.ConnectTimeout.D() <= 0 || c.RequestTimeout.D() <= 0 || c.IdleTimeout.D() <= 0:
		return bad("connect_timeout", "all timeouts must be positive")
	case c.ExtraRounds < c.MinKeptRounds:
		return bad("extra_rounds", "%d is below min_kept_rounds %d: every ratio would be refused", c.ExtraRounds, c.MinKeptRounds)
	case c.HandshakeSlice.D() < 500*time.Millisecond:
		return bad("handshake_slice", "at least 500ms")
	case c.HandshakeWorkers < 1 || c.HandshakeWorkers > 256:
		return bad("handshake_workers", "1..256")
	case c.MaxHandshakes < 1:
		return bad("max_handshakes", "at least 1")
	case c.ScalingSlice.D() < 500*time.Millisecond:
		return bad("scaling_slice", "at least 500ms")
	case c.IdleConns < 0 || c.IdleConns > 20000:
		return bad("idle_conns", "0..20000")
	}
	if c.Cluster.Enabled {
		switch {
		case c.Cluster.Writes < 1 || c.Cluster.Writes > 10000:
			return bad("cluster.writes", "1..10000")
		case c.Cluster.WriteTimeout.D() <= 0:
			return bad("cluster.write_timeout", "must be positive")
		case c.Cluster.ApplyDuration.D() <= 0:
			return bad("cluster.apply_duration", "must be positive")
		case c.Cluster.ApplyWorkers < 1 || c.Cluster.ApplyWorkers > 256:
			return bad("cluster.apply_workers", "1..256")
		case c.Cluster.MaxApplyWrites < 1:
			return bad("cluster.max_apply_writes", "at least 1")
		case c.Cluster.Routes < 0 || c.Cluster.Routes > 100000:
			return bad("cluster.routes", "0..100000")
		case c.Cluster.Routes > 0 && (c.Cluster.RouteWrites < 1 || c.Cluster.RouteWrites > 10000):
			return bad("cluster.route_writes", "1..10000")
		case c.Cluster.Routes > 0 && (c.Cluster.ApplyRepeats < 1 || c.Cluster.ApplyRepeats > 20):
			return bad("cluster.apply_repeats", "1..20")
		}
	}
	return nil
}

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("invalid bench config")
