package rollout

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/fsm"
)

var rolloutStates = []string{fsm.RolloutProgressing, fsm.RolloutPaused, fsm.RolloutSucceeded, fsm.RolloutFailed, fsm.RolloutAborted}

// Metrics exposes every rollout's committed status, read from state at
// each scrape, so every node shows the same figures.
type Metrics struct {
	state  func() *fsm.Config
	step   *prometheus.Desc
	weight *prometheus.Desc
	states *prometheus.Desc
}

// NewMetrics returns the collector of rafter_rollout_step,
// rafter_rollout_weight and rafter_rollout_state.
func NewMetrics(state func() *fsm.Config) *Metrics {
	return &Metrics{
		state:  state,
		step:   prometheus.NewDesc("rafter_rollout_step", "The step a rollout is at, counted from 1.", []string{"rollout"}, nil),
		weight: prometheus.NewDesc("rafter_rollout_weight", "The canary's share of the rollout's route, percent.", []string{"rollout"}, nil),
		states: prometheus.NewDesc("rafter_rollout_state", "1 for the state a rollout is in, 0 for the others.", []string{"rollout", "state"}, nil),
	}
}

// Describe sends the descriptors.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.step
	ch <- m.weight
	ch <- m.states
}

// Collect sends one series set per rollout.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	cfg := m.state()
	if cfg == nil {
		return
	}
	for _, name := range sortedNames(cfg.Rollouts) {
		st := cfg.RolloutStatus[name]
		if st == nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(m.step, prometheus.GaugeValue, float64(st.Step+1), name)
		ch <- prometheus.MustNewConstMetric(m.weight, prometheus.GaugeValue, float64(st.Weight), name)
		for _, s := range rolloutStates {
			v := 0.0
			if s == st.State {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(m.states, prometheus.GaugeValue, v, name, s)
		}
	}
}
