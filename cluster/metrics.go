package cluster

import (
	"sync"
	"sync/atomic"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Buckets for Raft latencies: commits within a region take a few
// milliseconds; a slow disk or a lost peer shows in the upper ones.
var raftBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// nodeMetrics are the Raft figures one node measures itself, so they are
// right even when several nodes share a process (tests, `rafter dev`),
// plus the bridge of what hashicorp/raft reports through go-metrics.
type nodeMetrics struct {
	apply         prometheus.Histogram
	leaderChanges prometheus.Counter
	snapshot      *prometheus.HistogramVec
	raft          *raftSink
}

func newNodeMetrics() *nodeMetrics {
	m := &nodeMetrics{
		apply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rafter_raft_apply_seconds",
			Help:    "Time from proposing a command on the leader to its being applied there (a write's commit latency).",
			Buckets: raftBuckets,
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rafter_raft_leader_changes_total",
			Help: "Times this node saw the leader change (an election won by anyone, or the leader lost).",
		}),
		snapshot: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rafter_raft_snapshot_seconds",
			Help:    "Snapshot work on this node, by phase: capture (taking the state), persist (encoding and writing it), restore (loading one).",
			Buckets: []float64{.0005, .001, .005, .01, .05, .1, .5, 1, 5, 10, 30},
		}, []string{"phase"}),
		raft: newRaftSink(),
	}
	m.precreate()
	return m
}

func (m *nodeMetrics) register(reg prometheus.Registerer) error {
	for _, c := range append([]prometheus.Collector{m.apply, m.leaderChanges, m.snapshot}, m.raft.collectors()...) {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// observeSnapshot records one snapshot phase that began at start.
func (m *nodeMetrics) observeSnapshot(phase string, start time.Time) {
	if m != nil {
		m.snapshot.WithLabelValues(phase).Observe(time.Since(start).Seconds())
	}
}

// raftSink is a go-metrics sink that turns the samples hashicorp/raft
// emits into this node's Prometheus series. Keys it does not know are
// ignored: raft reports much more than an operator watches.
type raftSink struct {
	// leading reports whether the node leads (set by the node).
	leading     func() bool
	commit      prometheus.Histogram
	fsmApply    prometheus.Histogram
	transitions *prometheus.CounterVec
	timeouts    *prometheus.CounterVec
	heartbeat   *prometheus.HistogramVec
	appendRPC   *prometheus.HistogramVec
	// gone holds the peers that left the configuration while this node
	// led: raft replicates to a removed peer up to the removal and reports
	// those last round trips after it, which must not bring its series
	// back. Replaced whole, never modified.
	gone atomic.Pointer[map[string]bool]
}

func newRaftSink() *raftSink {
	return &raftSink{
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rafter_raft_commit_seconds",
			Help:    "Leader: time from dispatching a log entry to its commit by a quorum (raft.commitTime).",
			Buckets: raftBuckets,
		}),
		fsmApply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rafter_raft_fsm_apply_seconds",
			Help:    "Time to apply committed entries to the state machine, per batch handed over (raft.fsm.applyBatch; raft.fsm.apply for single entries).",
			Buckets: raftBuckets,
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_raft_state_changes_total",
			Help: "Times this node entered a Raft state (leader, follower, candidate).",
		}, []string{"state"}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rafter_raft_timeouts_total",
			Help: "Raft timeouts that changed this node's state: heartbeat_timeout (a follower stopped hearing the leader), leader_lease_timeout (a leader lost its quorum).",
		}, []string{"reason"}),
		heartbeat: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rafter_raft_replication_heartbeat_seconds",
			Help:    "Leader: round trip of a heartbeat to each follower.",
			Buckets: raftBuckets,
		}, []string{"peer"}),
		appendRPC: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rafter_raft_replication_append_seconds",
			Help:    "Leader: round trip of an AppendEntries RPC carrying entries to each follower.",
			Buckets: raftBuckets,
		}, []string{"peer"}),
	}
}

// precreate makes the series of fixed label values exist at zero, so a
// dashboard shows 0, not "no data", before the first event.
func (m *nodeMetrics) precreate() {
	for _, p := range []string{"capture", "persist", "restore"} {
		m.snapshot.WithLabelValues(p)
	}
	for _, st := range []string{"leader", "follower", "candidate"} {
		m.raft.transitions.WithLabelValues(st)
	}
	for _, r := range []string{"heartbeat_timeout", "leader_lease_timeout"} {
		m.raft.timeouts.WithLabelValues(r)
	}
}

func (s *raftSink) collectors() []prometheus.Collector {
	return []prometheus.Collector{s.commit, s.fsmApply, s.transitions, s.timeouts, s.heartbeat, s.appendRPC}
}

// timerUnit is go-metrics' TimerGranularity as installed: samples of
// timers arrive in milliseconds.
const timerUnit = time.Millisecond

func (s *raftSink) sample(key []string, val float32, labels []gometrics.Label) {
	secs := float64(val) * float64(timerUnit) / float64(time.Second)
	switch {
	case keyIs(key, "raft", "commitTime"):
		s.commit.Observe(secs)
	case keyIs(key, "raft", "fsm", "apply"), keyIs(key, "raft", "fsm", "applyBatch"):
		s.fsmApply.Observe(secs)
	case keyIs(key, "raft", "replication", "heartbeat"):
		if p := s.peer(labels); p != "" {
			s.heartbeat.WithLabelValues(p).Observe(secs)
		}
	case keyIs(key, "raft", "replication", "appendEntries", "rpc"):
		if p := s.peer(labels); p != "" {
			s.appendRPC.WithLabelValues(p).Observe(secs)
		}
	}
}

// peer is the peer a replication sample is about, "" when there is none
// or it has left the configuration.
func (s *raftSink) peer(labels []gometrics.Label) string {
	p := peerLabel(labels)
	if gone := s.gone.Load(); gone != nil && (*gone)[p] {
		return ""
	}
	return p
}

// The per-peer series are the leader's view of its current followers:
// a peer's go when it leaves the configuration, and all of them when the
// node stops leading, so that neither a removed member nor a past term
// leaves series behind. A peer that joins (again) is counted afresh.

// peerLeft drops id's series and ignores its late samples.
func (s *raftSink) peerLeft(id string) {
	s.setGone(id, true)
	s.heartbeat.DeleteLabelValues(id)
	s.appendRPC.DeleteLabelValues(id)
}

// peerJoined counts id's samples again.
func (s *raftSink) peerJoined(id string) {
	s.setGone(id, false)
}

// notLeading drops every per-peer series.
func (s *raftSink) notLeading() {
	s.heartbeat.Reset()
	s.appendRPC.Reset()
}

// setGone is called from the node's one observer loop only.
func (s *raftSink) setGone(id string, gone bool) {
	cur := s.gone.Load()
	if cur != nil && (*cur)[id] == gone || cur == nil && !gone {
		return
	}
	next := make(map[string]bool)
	if cur != nil {
		for p := range *cur {
			next[p] = true
		}
	}
	if gone {
		next[id] = true
	} else {
		delete(next, id)
	}
	s.gone.Store(&next)
}

// keyIs compares a go-metrics key with parts without joining it (raft
// reports on every commit and heartbeat).
func keyIs(key []string, parts ...string) bool {
	if len(key) != len(parts) {
		return false
	}
	for i := range key {
		if key[i] != parts[i] {
			return false
		}
	}
	return true
}

func (s *raftSink) counter(key []string, val float32) {
	if len(key) != 3 || key[0] != "raft" {
		return
	}
	switch key[1] {
	case "state":
		s.transitions.WithLabelValues(key[2]).Add(float64(val))
	case "transition":
		s.timeouts.WithLabelValues(key[2]).Add(float64(val))
	}
}

func peerLabel(labels []gometrics.Label) string {
	for _, l := range labels {
		if l.Name == "peer_id" {
			return l.Value
		}
	}
	return ""
}

// raftMetricsHub is the go-metrics sink of this process. hashicorp/raft
// (v1.8) reports through go-metrics' package-level functions, which write
// to one process-wide global and offer no per-instance hook, so the only
// way to receive them is to install a global sink; this hub is it, set
// once, and is the one package-level variable here for that reason. It
// passes samples to the node of this process. A sample does not say which
// Raft instance emitted it, so while several nodes run in one process
// (tests, `rafter dev`) the hub passes on only what it can attribute: the
// leader's own figures (commit time, replication round trips) go to the
// one node that leads; the rest is dropped rather than credited to the
// wrong node. The figures each node measures itself (nodeMetrics) are
// unaffected.
var raftMetricsHub = &metricsHub{}

type metricsHub struct {
	once  sync.Once
	mu    sync.Mutex                  // serialises attach and detach
	sinks atomic.Pointer[[]*raftSink] // replaced whole, never modified
}

// install makes h go-metrics' global sink, once.
func (h *metricsHub) install() {
	h.once.Do(func() {
		cfg := gometrics.DefaultConfig("")
		cfg.EnableHostname = false
		cfg.EnableRuntimeMetrics = false
		cfg.TimerGranularity = timerUnit
		_, _ = gometrics.NewGlobal(cfg, h)
	})
}

func (h *metricsHub) attach(s *raftSink) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var next []*raftSink
	if cur := h.sinks.Load(); cur != nil {
		next = append(next, *cur...)
	}
	next = append(next, s)
	h.sinks.Store(&next)
}

func (h *metricsHub) detach(s *raftSink) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var next []*raftSink
	if cur := h.sinks.Load(); cur != nil {
		for _, x := range *cur {
			if x != s {
				next = append(next, x)
			}
		}
	}
	h.sinks.Store(&next)
}

// target is the sink a sample is for: the only node of the process, or
// for a leader's figure the only attached node that leads; nil when it
// cannot be told.
func (h *metricsHub) target(key []string) *raftSink {
	cur := h.sinks.Load()
	if cur == nil || len(*cur) == 0 {
		return nil
	}
	if len(*cur) == 1 {
		return (*cur)[0]
	}
	if !leaderFigure(key) {
		return nil
	}
	var found *raftSink
	for _, s := range *cur {
		if s.leading != nil && s.leading() {
			if found != nil {
				return nil
			}
			found = s
		}
	}
	return found
}

// leaderFigure: keys only a leader emits.
func leaderFigure(key []string) bool {
	return len(key) >= 2 && key[0] == "raft" && (key[1] == "commitTime" || key[1] == "replication" || key[1] == "leader")
}

// The go-metrics MetricSink methods. Gauges and key/value pairs carry
// nothing the node does not export from its own state.

func (h *metricsHub) SetGauge([]string, float32)                              {}
func (h *metricsHub) SetGaugeWithLabels([]string, float32, []gometrics.Label) {}
func (h *metricsHub) EmitKey([]string, float32)                               {}

func (h *metricsHub) IncrCounter(key []string, val float32) {
	if s := h.target(key); s != nil {
		s.counter(key, val)
	}
}

func (h *metricsHub) IncrCounterWithLabels(key []string, val float32, _ []gometrics.Label) {
	h.IncrCounter(key, val)
}

func (h *metricsHub) AddSample(key []string, val float32) {
	h.AddSampleWithLabels(key, val, nil)
}

func (h *metricsHub) AddSampleWithLabels(key []string, val float32, labels []gometrics.Label) {
	if s := h.target(key); s != nil {
		s.sample(key, val, labels)
	}
}
