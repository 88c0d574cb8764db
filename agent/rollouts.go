package agent

import (
	"context"
	"log/slog"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cluster/rollout"
	"github.com/rafterlb/rafter/dataplane"
)

// poolCounter is the data plane's per-(route, pool) counts.
type poolCounter interface {
	PoolCounts(route string) []dataplane.PoolCount
}

// rolloutCounts adapts the data plane's counts to the reporter's.
type rolloutCounts struct{ dp poolCounter }

func (c rolloutCounts) PoolCounts(route string) []rollout.PoolCount {
	in := c.dp.PoolCounts(route)
	out := make([]rollout.PoolCount, len(in))
	for i, p := range in {
		out[i] = rollout.PoolCount{Route: p.Route, Pool: p.Pool, Requests: p.Requests, Errors: p.Errors, Latency: p.Latency}
	}
	return out
}

// rolloutDeps is what the rollout machinery needs from the agent.
type rolloutDeps struct {
	Node       *cluster.Node
	NodeID     string
	Counts     poolCounter
	Transport  http.RoundTripper
	Scheme     string
	Token      string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// startRollouts starts this node's reporter and the controller that
// judges rollouts while this node leads; its goroutines belong to wg and
// stop when ctx ends. The returned collector takes the nodes' reports.
func startRollouts(ctx context.Context, wg *sync.WaitGroup, d rolloutDeps) (*rollout.Collector, error) {
	log := d.Logger.With("component", "rollout")
	col := rollout.NewCollector()
	ctrl, err := rollout.New(rollout.Config{
		Store:         d.Node,
		Collector:     col,
		LatencyBounds: dataplane.LatencyBounds(),
		Logger:        log,
	})
	if err != nil {
		return nil, err
	}
	rep, err := rollout.NewReporter(rollout.ReporterConfig{
		NodeID: d.NodeID,
		State:  d.Node.Config,
		Leader: d.Node.Leader,
		Local:  col.Add,
		Sender: rollout.HTTPSender{
			Client: &http.Client{
				Transport:     d.Transport,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			},
			Scheme: d.Scheme,
			Token:  d.Token,
		},
		Counts: rolloutCounts{d.Counts},
		Logger: log,
	})
	if err != nil {
		return nil, err
	}
	if d.Registerer != nil {
		if err := d.Registerer.Register(rollout.NewMetrics(d.Node.Config)); err != nil {
			return nil, err
		}
	}
	leads, cancel := d.Node.WatchLeadership()
	wg.Go(func() {
		defer cancel()
		_ = ctrl.Run(ctx, leads)
	})
	wg.Go(func() { rep.Run(ctx) })
	return col, nil
}
