package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/cluster"
)

// clusterCollector exports this node's view of the Raft group at scrape
// time, for the alerts in deploy/prometheus/alerts.yml (no leader, lost
// members).
type clusterCollector struct {
	status func() cluster.Status

	hasLeader, isLeader, members, healthy, term, commit, applied, contact *prometheus.Desc
}

func newClusterCollector(status func() cluster.Status) *clusterCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &clusterCollector{
		status:    status,
		hasLeader: d("rafter_raft_has_leader", "1 when this node knows a leader, else 0."),
		isLeader:  d("rafter_raft_is_leader", "1 when this node is the leader, else 0."),
		members:   d("rafter_raft_members", "Servers in the Raft configuration, by suffrage.", "suffrage"),
		healthy: d("rafter_raft_members_healthy",
			"Servers this node saw recently (the leader sees every member; a follower only itself and the leader)."),
		term:    d("rafter_raft_term", "Current Raft term."),
		commit:  d("rafter_raft_commit_index", "Raft commit index."),
		applied: d("rafter_raft_applied_index", "Raft index applied to this node's state."),
		contact: d("rafter_raft_last_contact_seconds", "Seconds since a follower last heard from the leader (0 on the leader)."),
	}
}

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.hasLeader, c.isLeader, c.members, c.healthy, c.term, c.commit, c.applied, c.contact} {
		ch <- d
	}
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	gauge(c.hasLeader, b(st.Leader != ""))
	gauge(c.isLeader, b(st.Leader != "" && st.Leader == st.NodeID))
	bySuffrage := map[string]int{"Voter": 0, "Nonvoter": 0}
	healthy := 0
	for _, m := range st.Members {
		bySuffrage[m.Suffrage]++
		if m.Healthy {
			healthy++
		}
	}
	for s, n := range bySuffrage {
		gauge(c.members, float64(n), s)
	}
	gauge(c.healthy, float64(healthy))
	gauge(c.term, float64(st.Term))
	gauge(c.commit, float64(st.CommitIndex))
	gauge(c.applied, float64(st.AppliedIndex))
	contact := 0.0
	if !st.LastContact.IsZero() {
		contact = time.Since(st.LastContact).Seconds()
	}
	gauge(c.contact, contact)
}
