package cluster

import (
	"testing"

	gometrics "github.com/hashicorp/go-metrics"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func histCount(t *testing.T, o prometheus.Observer) uint64 {
	t.Helper()
	var m dto.Metric
	if err := o.(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

func counterOf(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// The sink maps raft's go-metrics keys to rafter's series, in seconds.
func TestRaftSinkMapsKeys(t *testing.T) {
	h := &metricsHub{}
	s := newRaftSink()
	h.attach(s)
	peer := []gometrics.Label{{Name: "peer_id", Value: "n2"}}
	h.IncrCounter([]string{"raft", "state", "leader"}, 1)
	h.IncrCounter([]string{"raft", "transition", "heartbeat_timeout"}, 1)
	h.AddSample([]string{"raft", "commitTime"}, 3)
	h.AddSample([]string{"raft", "fsm", "apply"}, 0.5)
	h.AddSampleWithLabels([]string{"raft", "replication", "heartbeat"}, 2, peer)
	h.AddSampleWithLabels([]string{"raft", "replication", "appendEntries", "rpc"}, 2, peer)
	h.AddSample([]string{"raft", "some", "other"}, 1)
	if v := counterOf(t, s.transitions.WithLabelValues("leader")); v != 1 {
		t.Errorf("state changes{leader} = %v", v)
	}
	if v := counterOf(t, s.timeouts.WithLabelValues("heartbeat_timeout")); v != 1 {
		t.Errorf("timeouts{heartbeat_timeout} = %v", v)
	}
	var m dto.Metric
	if err := s.commit.Write(&m); err != nil || m.GetHistogram().GetSampleCount() != 1 || m.GetHistogram().GetSampleSum() != 0.003 {
		t.Errorf("commit histogram: %v (%v), want one sample of 0.003s", &m, err)
	}
	if n := histCount(t, s.fsmApply); n != 1 {
		t.Errorf("fsm apply samples = %d", n)
	}
	if n := histCount(t, s.heartbeat.WithLabelValues("n2")); n != 1 {
		t.Errorf("heartbeat{n2} samples = %d", n)
	}
	if n := histCount(t, s.appendRPC.WithLabelValues("n2")); n != 1 {
		t.Errorf("append{n2} samples = %d", n)
	}
}

// With several nodes in one process a sample goes only where it can be
// attributed: a leader's figure to the one leading node, nothing else.
func TestRaftMetricsHubAttribution(t *testing.T) {
	h := &metricsHub{}
	a, b := newRaftSink(), newRaftSink()
	aLeads, bLeads := true, false
	a.leading = func() bool { return aLeads }
	b.leading = func() bool { return bLeads }
	h.attach(a)
	h.attach(b)
	h.AddSample([]string{"raft", "commitTime"}, 1)
	h.AddSample([]string{"raft", "fsm", "apply"}, 1)
	h.IncrCounter([]string{"raft", "state", "follower"}, 1)
	if histCount(t, a.commit) != 1 || histCount(t, b.commit) != 0 {
		t.Errorf("commit time went to a %d, b %d; want only the leader a", histCount(t, a.commit), histCount(t, b.commit))
	}
	if histCount(t, a.fsmApply)+histCount(t, b.fsmApply) != 0 {
		t.Error("fsm apply time, which every node emits, was credited to a node")
	}
	if counterOf(t, a.transitions.WithLabelValues("follower"))+counterOf(t, b.transitions.WithLabelValues("follower")) != 0 {
		t.Error("a state change was credited to a node")
	}
	bLeads = true // two leaders for a moment: nobody can be told
	h.AddSample([]string{"raft", "commitTime"}, 1)
	if histCount(t, a.commit) != 1 || histCount(t, b.commit) != 0 {
		t.Error("a commit time was credited while two nodes claimed to lead")
	}
	h.detach(a)
	h.AddSample([]string{"raft", "fsm", "apply"}, 1)
	if histCount(t, b.fsmApply) != 1 {
		t.Error("the one node left did not get the sample")
	}
}

// A peer that left loses its series and its late samples are dropped
// until it joins again; a node that stops leading drops every peer's.
func TestRaftSinkForgetsPeers(t *testing.T) {
	h := &metricsHub{}
	s := newRaftSink()
	h.attach(s)
	sample := func(peer string) {
		l := []gometrics.Label{{Name: "peer_id", Value: peer}}
		h.AddSampleWithLabels([]string{"raft", "replication", "heartbeat"}, 1, l)
		h.AddSampleWithLabels([]string{"raft", "replication", "appendEntries", "rpc"}, 1, l)
	}
	series := func() int { return collected(s.heartbeat) + collected(s.appendRPC) }
	sample("n2")
	sample("n3")
	if n := series(); n != 4 {
		t.Fatalf("%d series, want 4", n)
	}
	s.peerLeft("n2")
	sample("n2")
	if n := series(); n != 2 {
		t.Fatalf("after n2 left: %d series, want n3's 2", n)
	}
	if histCount(t, s.heartbeat.WithLabelValues("n3")) != 1 {
		t.Fatal("n3's series changed when n2 left")
	}
	s.peerJoined("n2")
	sample("n2")
	if n := histCount(t, s.heartbeat.WithLabelValues("n2")); n != 1 {
		t.Fatalf("n2 joined again: %d heartbeat samples, want 1", n)
	}
	s.notLeading()
	if n := series(); n != 0 {
		t.Fatalf("after leadership ended: %d series, want 0", n)
	}
}

// collected counts the series c has.
func collected(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 64)
	c.Collect(ch)
	close(ch)
	return len(ch)
}
