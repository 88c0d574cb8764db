package vip

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	moves    *prometheus.CounterVec // decisions written, by reason
	lastMove prometheus.Gauge
	failures *prometheus.CounterVec // failed moves, by vip
	drift    *prometheus.CounterVec // drift found, by vip
}

func newMetrics() metrics {
	return metrics{
		moves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_vip_moves_total",
			Help: "VIP assignments changed by the leader, by reason (initial, holder_unreachable, holder_removed, zone_evacuated, failback, drift).",
		}, []string{"reason"}),
		lastMove: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rafter_vip_last_move_seconds",
			Help: "Duration of the last completed VIP move: from its cause (the lost holder's last Raft contact, or the decision) until the cloud showed the new holder.",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_vip_move_failures_total",
			Help: "Failed attempts to move a VIP in the cloud (retried with backoff).",
		}, []string{"vip"}),
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_vip_drift_total",
			Help: "Times the reconciler found a VIP elsewhere than its assignment says.",
		}, []string{"vip"}),
	}
}

func (m metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.moves, m.lastMove, m.failures, m.drift} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
