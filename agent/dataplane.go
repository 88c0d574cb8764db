package agent

import (
	"context"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/dataplane"
	"github.com/rafterlb/rafter/dataplane/health"
	"github.com/rafterlb/rafter/secrets"
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
	// Listen and ListenVIP open listener sockets (see dataplane.Options).
	Listen, ListenVIP func(name string, shard int, addr string) (net.Listener, error)
	// Shards is the number of sockets per listener address (0: default).
	Shards int
	Spans  dataplane.SpanSink // nil: no span export
	// Secrets opens sealed certificate and ticket keys (nil: none).
	Secrets *secrets.Keyring
}

// dataPlane is the part of the proxy the agent drives: Run serves until
// ctx is done and returns once in-flight requests finished (bounded by the
// data plane's drain timeout).
type dataPlane interface {
	Run(ctx context.Context) error
	// Listeners reports each listener's bind state (/v1/health).
	Listeners() []dataplane.ListenerStatus
	// Ready is closed once the first routing table is served.
	Ready() <-chan struct{}
	// PoolCounts are the per-(route, pool) counts rollouts are judged by.
	PoolCounts(route string) []dataplane.PoolCount
	// CloseConnections makes every later response close its connection.
	CloseConnections()
	// Table is the routing table being served (its index, for the
	// configuration lag).
	Table() *dataplane.Table
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
	opts.Listen, opts.ListenVIP, opts.ListenShards = d.Listen, d.ListenVIP, d.Shards
	opts.Secrets = d.Secrets
	if d.Health != nil {
		opts.Health = d.Health
	}
	if d.Spans != nil {
		opts.Spans = d.Spans
	}
	return dataplane.New(opts)
}
