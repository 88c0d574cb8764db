package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/dataplane"
)

// clusterCollector exports this node's view of the Raft group at scrape
// time, for the alerts in deploy/prometheus/alerts.yml (no leader, lost
// members).
type clusterCollector struct {
	status func() cluster.Status

	hasLeader, isLeader, members, healthy, term, commit, applied, contact *prometheus.Desc
	state, memberContact                                                  *prometheus.Desc
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
		state:   d("rafter_raft_state", "1 for this node's Raft state (Leader, Follower, Candidate, Shutdown), 0 for the others.", "state"),
		memberContact: d("rafter_raft_member_last_contact_seconds",
			"Seconds since this node last heard from each other member: on the leader every follower, on a follower the leader.", "member"),
	}
}

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.hasLeader, c.isLeader, c.members, c.healthy, c.term, c.commit, c.applied, c.contact,
		c.state, c.memberContact} {
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
	for _, s := range raftStates {
		gauge(c.state, b(st.State == s), s)
	}
	now := time.Now()
	for _, m := range st.Members {
		if m.ID != st.NodeID && !m.LastContact.IsZero() {
			gauge(c.memberContact, now.Sub(m.LastContact).Seconds(), m.ID)
		}
	}
}

// raftStates are the values of rafter_raft_state's label.
var raftStates = [...]string{"Leader", "Follower", "Candidate", "Shutdown"}

// configLagCollector exports how far the data plane's table trails the
// Raft commit index, at scrape time.
type configLagCollector struct {
	status func() cluster.Status
	watch  interface{ indexes() (seen, handed uint64) }
	dp     interface{ Table() *dataplane.Table }
	lag    *prometheus.Desc
}

func newConfigLagCollector(status func() cluster.Status, w *watcher, dp dataPlane) *configLagCollector {
	return &configLagCollector{status: status, watch: w, dp: dp, lag: prometheus.NewDesc("rafter_config_lag_entries",
		"Committed Raft entries this node's data plane does not serve yet: the commit index minus the index the served table is current with.",
		nil, nil)}
}

func (c *configLagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.lag }

func (c *configLagCollector) Collect(ch chan<- prometheus.Metric) {
	commit := c.status().CommitIndex
	ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(configLag(commit, c.dp.Table().Index(), c.watch)))
}

// configLag is commit minus the index the table is current with: a table
// compiled from the newest configuration the watcher handed over is
// current with everything the watcher has seen since (those entries did
// not change what the data plane reads).
func configLag(commit, table uint64, w interface{ indexes() (seen, handed uint64) }) uint64 {
	seen, handed := w.indexes()
	current := table
	if table >= handed {
		current = max(table, seen)
	}
	if commit <= current {
		return 0
	}
	return commit - current
}
