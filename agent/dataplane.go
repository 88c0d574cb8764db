package agent

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/dataplane"
	"github.com/rafterlb/rafter/dataplane/health"
)

// dataPlaneDeps is what the agent hands the data plane.
type dataPlaneDeps struct {
	Source     dataplane.ConfigSource
	BindIP     string
	NodeID     string
	Zone       string
	Logger     *slog.Logger
	AccessLog  *slog.Logger
	Registerer prometheus.Registerer
	Health     *health.Monitor
}

// dataPlane is the part of the proxy the agent drives: Run serves until
// ctx is done and returns once in-flight requests finished (bounded by the
// data plane's drain timeout).
type dataPlane interface {
	Run(ctx context.Context) error
	// Ready is closed once the first routing table is served.
	Ready() <-chan struct{}
}

// newDataPlane builds this node's proxy.
func newDataPlane(d dataPlaneDeps) (dataPlane, error) {
	opts := dataplane.DefaultOptions()
	opts.Source = d.Source
	opts.BindIP = d.BindIP
	opts.Zone = d.Zone
	opts.NodeID = d.NodeID
	opts.Logger = d.Logger
	opts.AccessLog = d.AccessLog
	opts.Registerer = d.Registerer
	if d.Health != nil {
		opts.Health = healthView{d.Health}
	}
	return dataplane.New(opts)
}

// healthView adapts the health monitor to the interface the data plane
// declares: the two packages do not import each other, so each has its
// own outcome type.
type healthView struct{ m *health.Monitor }

func (h healthView) Healthy(pool, addr string) bool { return h.m.Healthy(pool, addr) }

func (h healthView) Observe(pool, addr string, o dataplane.Outcome) {
	h.m.Observe(pool, addr, healthOutcome(o))
}

func healthOutcome(o dataplane.Outcome) health.Outcome {
	switch o {
	case dataplane.Outcome5xx:
		return health.Status5xx
	case dataplane.OutcomeConnectError:
		return health.ConnectError
	case dataplane.OutcomeTimeout:
		return health.Timeout
	case dataplane.OutcomeReset:
		return health.Reset
	}
	return health.Success
}
