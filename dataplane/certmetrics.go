package dataplane

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	certNotAfterDesc = prometheus.NewDesc("rafter_certificate_not_after_seconds",
		"When the leaf of a certificate this node serves expires (Unix time).", []string{"certificate"}, nil)
	certLoadedDesc = prometheus.NewDesc("rafter_certificate_loaded",
		"1 when this node opened and parsed a certificate's key and chain, 0 when it could not (see its log).",
		[]string{"certificate"}, nil)
)

// certCollector exports what the last configuration's certificates gave
// on this node.
type certCollector struct{ m *certManager }

func (certCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- certNotAfterDesc
	ch <- certLoadedDesc
}

func (c certCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range *c.m.status.Load() {
		loaded := 0.0
		if s.loaded {
			loaded = 1
			ch <- prometheus.MustNewConstMetric(certNotAfterDesc, prometheus.GaugeValue, float64(s.notAfter.Unix()), s.name)
		}
		ch <- prometheus.MustNewConstMetric(certLoadedDesc, prometheus.GaugeValue, loaded, s.name)
	}
}
