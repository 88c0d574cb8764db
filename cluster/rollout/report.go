package rollout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/adminhttp"
	"github.com/rafterlb/rafter/internal/conf"
)

// Path is where the admin API takes reports.
const Path = "/v1/cluster/rollout-report"

// Bounds on a report, so that a malformed one cannot cost the leader much.
const (
	MaxReportPools   = 1024
	MaxLatencyBucket = 64
)

// Report is one node's cumulative counts of the pools rollouts watch.
type Report struct {
	Node  string      `json:"node"`
	Pools []PoolCount `json:"pools,omitempty"`
}

// PoolCount is what one node answered for one route and pool since it
// started. Latency counts requests by time to response head in the
// buckets of the Controller's LatencyBounds, plus one for slower ones.
type PoolCount struct {
	Route    string   `json:"route"`
	Pool     string   `json:"pool"`
	Requests uint64   `json:"requests"`
	Errors   uint64   `json:"errors"`
	Latency  []uint64 `json:"latency,omitempty"`
}

// Check refuses a report the leader must not keep.
func (r *Report) Check() error {
	switch {
	case r.Node == "":
		return errors.New("node: required")
	case len(r.Pools) > MaxReportPools:
		return fmt.Errorf("pools: at most %d entries, got %d", MaxReportPools, len(r.Pools))
	}
	for i, p := range r.Pools {
		if len(p.Latency) > MaxLatencyBucket {
			return fmt.Errorf("pools[%d].latency: at most %d buckets, got %d", i, MaxLatencyBucket, len(p.Latency))
		}
	}
	return nil
}

// CountSource gives this node's cumulative counts of a route's pools (the
// data plane, through the agent).
type CountSource interface {
	PoolCounts(route string) []PoolCount
}

// Sender delivers one report to the leader's admin address.
type Sender interface {
	Send(ctx context.Context, adminAddr string, r Report) error
}

// HTTPSender posts reports to the admin API.
type HTTPSender struct {
	Client *http.Client
	Scheme string // default "http"
	Token  string // bearer token; empty: none
}

// Send posts r to Scheme://adminAddr/v1/cluster/rollout-report.
func (s HTTPSender) Send(ctx context.Context, adminAddr string, r Report) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	scheme := s.Scheme
	if scheme == "" {
		scheme = "http"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+adminAddr+Path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, b, err := adminhttp.Do(s.Client, req, s.Token, 64<<10)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("rollout report: %s answered %d: %s", adminAddr, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

// ReporterConfig configures a Reporter.
type ReporterConfig struct {
	NodeID   string
	Interval time.Duration // between reports (default 200ms)
	Timeout  time.Duration // for one report (default 1s)
	// State is this node's replicated state (cluster.Node.Config).
	State func() *fsm.Config
	// Leader names the leader and its admin address (cluster.Node.Leader).
	Leader func() (id, adminAddr string)
	// Local takes the report when this node leads (Collector.Add).
	Local  func(Report)
	Sender Sender
	Counts CountSource
	Logger *slog.Logger
}

// Reporter sends this node's counts to the leader while a rollout runs.
type Reporter struct {
	cfg ReporterConfig
}

// NewReporter checks cfg and returns a Reporter; Run sends.
func NewReporter(cfg ReporterConfig) (*Reporter, error) {
	switch {
	case cfg.NodeID == "":
		return nil, errors.New("rollout: reporter.node_id: required")
	case cfg.State == nil, cfg.Leader == nil, cfg.Local == nil, cfg.Sender == nil, cfg.Counts == nil:
		return nil, errors.New("rollout: reporter: state, leader, local, sender and counts are required")
	}
	if err := conf.NotNegative(
		conf.Field("rollout: reporter.interval", cfg.Interval),
		conf.Field("rollout: reporter.timeout", cfg.Timeout),
	); err != nil {
		return nil, err
	}
	conf.Default(&cfg.Interval, 200*time.Millisecond)
	conf.Default(&cfg.Timeout, time.Second)
	conf.Logger(&cfg.Logger)
	return &Reporter{cfg: cfg}, nil
}

// Run reports every Interval until ctx ends.
func (r *Reporter) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := r.report(ctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			r.cfg.Logger.Debug("rollout report to the leader failed", "err", err)
			failing = true
		case err == nil:
			failing = false
		}
	}
}

// Build returns the report of the counts running rollouts watch, or false
// when no rollout is progressing.
func (r *Reporter) Build() (Report, bool) {
	cfg := r.cfg.State()
	if cfg == nil {
		return Report{}, false
	}
	rep := Report{Node: r.cfg.NodeID}
	watched := false
	for _, name := range sortedNames(cfg.Rollouts) {
		st := cfg.RolloutStatus[name]
		if st == nil || st.State != fsm.RolloutProgressing {
			continue
		}
		watched = true
		s := cfg.Rollouts[name].Spec
		for _, pc := range r.cfg.Counts.PoolCounts(s.Route) {
			if (pc.Pool == s.Stable || pc.Pool == s.Canary) && len(rep.Pools) < MaxReportPools {
				rep.Pools = append(rep.Pools, pc)
			}
		}
	}
	return rep, watched
}

func (r *Reporter) report(ctx context.Context) error {
	rep, ok := r.Build()
	if !ok {
		return nil
	}
	id, addr := r.cfg.Leader()
	switch {
	case id == "":
		return errors.New("no known leader")
	case id == r.cfg.NodeID:
		r.cfg.Local(rep)
		return nil
	case addr == "":
		return fmt.Errorf("leader %s has no known admin address", id)
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	return r.cfg.Sender.Send(ctx, addr, rep)
}
