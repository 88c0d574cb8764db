package health

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	transitions *prometheus.CounterVec
	ejections   *prometheus.CounterVec
	suppressed  *prometheus.CounterVec
}

// poolMetrics are resolved once per pool so no label lookup happens on a transition.
type poolMetrics struct {
	toHealthy, toUnhealthy prometheus.Counter
	ejections, suppressed  prometheus.Counter
}

func newMetrics(m *Monitor, reg prometheus.Registerer) *metrics {
	mt := &metrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_health_transitions_total",
			Help: "Backend health verdict changes on this node, by pool and new state.",
		}, []string{"pool", "to"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_health_ejections_total",
			Help: "Passive outlier ejections on this node, by pool.",
		}, []string{"pool"}),
		suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_health_ejections_suppressed_total",
			Help: "Outlier ejections not done because max_ejected_percent of the pool was already ejected.",
		}, []string{"pool"}),
	}
	if reg == nil {
		return mt
	}
	mt.transitions = register(m, reg, mt.transitions)
	mt.ejections = register(m, reg, mt.ejections)
	mt.suppressed = register(m, reg, mt.suppressed)
	register(m, reg, prometheus.Collector(newPoolCollector(m)))
	return mt
}

// register adopts an equal collector already registered (another monitor
// on the same registry) instead of failing construction.
func register[C prometheus.Collector](m *Monitor, reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	m.log.Warn("health metrics not registered", "err", err)
	return c
}

func (mt *metrics) forPool(name string) poolMetrics {
	return poolMetrics{
		toHealthy:   mt.transitions.WithLabelValues(name, "healthy"),
		toUnhealthy: mt.transitions.WithLabelValues(name, "unhealthy"),
		ejections:   mt.ejections.WithLabelValues(name),
		suppressed:  mt.suppressed.WithLabelValues(name),
	}
}

func (mt *metrics) dropPool(name string) {
	l := prometheus.Labels{"pool": name}
	mt.transitions.DeletePartialMatch(l)
	mt.ejections.DeletePartialMatch(l)
	mt.suppressed.DeletePartialMatch(l)
}

func newPoolCollector(m *Monitor) poolCollector {
	return poolCollector{
		m: m,
		healthy: prometheus.NewDesc("rafter_health_backends_healthy",
			"Backends of a pool this node considers healthy.", []string{"pool"}, nil),
		total: prometheus.NewDesc("rafter_health_backends",
			"Distinct backend addresses of a pool this node monitors.", []string{"pool"}, nil),
		ejected: prometheus.NewDesc("rafter_health_backends_ejected",
			"Backends of a pool currently ejected by outlier detection on this node.", []string{"pool"}, nil),
	}
}

// poolCollector reads the per-pool gauges at scrape time from the same
// atomics the request path reads, so they never disagree with it and
// removed pools vanish by themselves.
type poolCollector struct {
	m                       *Monitor
	healthy, total, ejected *prometheus.Desc
}

func (c poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.healthy
	ch <- c.total
	ch <- c.ejected
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	for name, p := range c.m.snap.Load().pools {
		h, n := c.m.HealthyCount(name)
		ch <- prometheus.MustNewConstMetric(c.healthy, prometheus.GaugeValue, float64(h), name)
		ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(n), name)
		ch <- prometheus.MustNewConstMetric(c.ejected, prometheus.GaugeValue, float64(p.ejected.Load()), name)
	}
}
