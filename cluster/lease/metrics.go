package lease

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	live       prometheus.Gauge
	held       prometheus.Gauge
	keepalives prometheus.Counter
	expired    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		live: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rafter_leases_live",
			Help: "Leases in this node's copy of the configuration that are not being revoked.",
		}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rafter_lease_expiry_held",
			Help: "1 while self-preservation holds lease expiry back on this leader because too many leases would expire at once.",
		}),
		keepalives: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rafter_lease_keepalives_total",
			Help: "Lease keepalives answered by this node as leader.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rafter_lease_expired_total",
			Help: "Leases this node expired as leader because their TTL ran out.",
		}),
	}
	for _, c := range []prometheus.Collector{m.live, m.held, m.keepalives, m.expired} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("lease metrics: %w", err)
		}
	}
	return m, nil
}
