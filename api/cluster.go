package api

import (
	"encoding/json"
	"time"
)

// The cluster-wide views: what one node gathers by asking every member's
// admin API in parallel, each member's answer or the error that took its
// place side by side.

// TokenInfo answers GET /v1/auth: what the caller's token may do, so a
// client (the dashboard) offers only the actions it may take.
type TokenInfo struct {
	// Auth: the node requires a token at all.
	Auth bool `json:"auth"`
	// Write: the token may change the configuration.
	Write bool   `json:"write"`
	Node  string `json:"node"`
}

// TargetHealth is one backend as one node sees it (GET /v1/health).
type TargetHealth struct {
	Pool            string    `json:"pool"`
	Addr            string    `json:"addr"`
	Healthy         bool      `json:"healthy"`
	Reason          string    `json:"reason,omitempty"`
	Since           time.Time `json:"since"`
	ActiveCheck     bool      `json:"active_check"`
	ActiveFailures  int       `json:"active_failures"`
	ActiveSuccesses int       `json:"active_successes"`
	Checks          uint64    `json:"checks"`
	LastCheck       time.Time `json:"last_check,omitzero"`
	Ejections       int       `json:"ejections"`
	EjectedUntil    time.Time `json:"ejected_until,omitzero"`
}

// NodeHealth is one node's GET /v1/health, or why it is missing.
type NodeHealth struct {
	NodeAnswer
	Targets   []TargetHealth  `json:"targets"`
	Listeners json.RawMessage `json:"listeners,omitempty"`
}

// NodeAnswer is what every cluster-wide view records of one member's
// answer: who, when, at which configuration index, or the error.
type NodeAnswer struct {
	Node      string `json:"node"`
	Zone      string `json:"zone,omitempty"`
	AdminAddr string `json:"admin_addr,omitempty"`
	// Index is the configuration index the member had when it answered
	// (its X-Rafter-Index).
	Index uint64 `json:"index,omitempty"`
	// AnsweredAt is when the answer arrived (the asked node's clock);
	// AgeSeconds is how old it was when the view was written.
	AnsweredAt time.Time `json:"answered_at,omitzero"`
	AgeSeconds float64   `json:"age_seconds"`
	// LatencyMS is how long the member took to answer.
	LatencyMS float64 `json:"latency_ms"`
	// Error is set when the member did not answer within the deadline
	// (or answered with an error); the view then has nothing else of it.
	Error string `json:"error,omitempty"`
}

// ClusterHealth answers GET /v1/health/cluster: every member's verdict on
// every backend.
type ClusterHealth struct {
	Node  string       `json:"node"` // the node that gathered the view
	Nodes []NodeHealth `json:"nodes"`
}

// MemberStatus is one member in GET /v1/status/cluster: as the leader
// sees it (health, last contact), with what the member itself says
// (state, indexes).
type MemberStatus struct {
	Member
	// LatencyMS and Error are as in NodeAnswer: how long the member took
	// to answer, or why it did not.
	LatencyMS    float64 `json:"latency_ms"`
	Error        string  `json:"error,omitempty"`
	State        string  `json:"state,omitempty"`
	Term         uint64  `json:"term,omitempty"`
	CommitIndex  uint64  `json:"commit_index,omitempty"`
	AppliedIndex uint64  `json:"applied_index,omitempty"`
	// Lag is how many entries the member has still to apply: the
	// leader's commit index less the member's applied index.
	Lag uint64 `json:"lag"`
	// HealthFrom names whose view Healthy and Health are: the leader's
	// when it answered, else the asked node's.
	HealthFrom string `json:"health_from,omitempty"`
}

// ClusterStatus answers GET /v1/status/cluster.
type ClusterStatus struct {
	Node        string         `json:"node"`
	Leader      string         `json:"leader"`
	Term        uint64         `json:"term"`
	CommitIndex uint64         `json:"commit_index"`
	Members     []MemberStatus `json:"members"`
}

// Histogram is a latency histogram: Counts[i] requests took at most
// Bounds[i] seconds (cumulative, as Prometheus keeps them); Count is all
// of them (the +Inf bucket).
type Histogram struct {
	Bounds []float64 `json:"bounds"`
	Counts []uint64  `json:"counts"`
	Count  uint64    `json:"count"`
	Sum    float64   `json:"sum"`
}

// RequestStats is one route's, pool's or backend's request counters on
// one node since it started: requests by status class ("2xx", "5xx"; for
// backends also "failed": attempts that got no answer, such as a refused
// connection or a timeout) and, for routes and backends, the latency
// histogram. A backend's Name is "POOL/ADDR".
type RequestStats struct {
	Name     string            `json:"name"`
	Requests map[string]uint64 `json:"requests"`
	Latency  *Histogram        `json:"latency,omitempty"`
}

// NodeStats answers GET /v1/stats: this node's data plane counters.
type NodeStats struct {
	Node     string         `json:"node"`
	At       time.Time      `json:"at"`
	Routes   []RequestStats `json:"routes"`
	Pools    []RequestStats `json:"pools"`
	Backends []RequestStats `json:"backends"`
}

// NodeStatsAnswer is one member's NodeStats in a cluster-wide view.
type NodeStatsAnswer struct {
	NodeAnswer
	Stats *NodeStats `json:"stats,omitempty"`
}

// ClusterStats answers GET /v1/stats/cluster: every member's counters and
// their sums over the members that answered.
type ClusterStats struct {
	Node     string            `json:"node"`
	Nodes    []NodeStatsAnswer `json:"nodes"`
	Routes   []RequestStats    `json:"routes"`
	Pools    []RequestStats    `json:"pools"`
	Backends []RequestStats    `json:"backends"`
}

// Rate is one route's, pool's or backend's traffic over the cluster during
// a recent window: requests per second, the share answered 5xx (for
// backends: 5xx or no answer), and (for routes and backends) the 99th
// percentile time to the response head.
type Rate struct {
	Name      string  `json:"name"`
	RPS       float64 `json:"rps"`
	ErrorRate float64 `json:"error_rate"`
	// P99MS is -1 when unknown (pools: the data plane keeps latency per
	// route and per backend; or no request in the window).
	P99MS float64 `json:"p99_ms"`
}

// Rates is the traffic over the cluster during the last WindowSeconds.
type Rates struct {
	WindowSeconds float64 `json:"window_seconds"`
	Routes        []Rate  `json:"routes"`
	Pools         []Rate  `json:"pools"`
	Backends      []Rate  `json:"backends"`
}

// HistoryEntry is one change to the replicated configuration: the object
// of Kind and Name, changed (Op create, update or delete) at Index. At is
// when the answering node applied it; it is zero for changes made before
// that node started, which are known only from their modify_index.
type HistoryEntry struct {
	Index  uint64    `json:"index"`
	At     time.Time `json:"at,omitzero"`
	Op     string    `json:"op"`
	Kind   string    `json:"kind"`
	Name   string    `json:"name"`
	Detail string    `json:"detail,omitempty"`
}

// History answers GET /v1/history: the most recent changes, newest first.
type History struct {
	Index   uint64         `json:"index"`
	Entries []HistoryEntry `json:"entries"`
	// VIPMoves are the assignments that changed a VIP's holder, newest
	// first (Detail: "from → to (reason)").
	VIPMoves []HistoryEntry `json:"vip_moves"`
}

// ConfigView is the configuration as the dashboard shows it (the
// "config" event of GET /v1/events): each kind's objects as GET lists
// them, at most MaxItems of each (Truncated says which kinds had more),
// the zones and the recent history.
type ConfigView struct {
	Index     uint64   `json:"index"`
	Listeners []Item   `json:"listeners"`
	Routes    []Item   `json:"routes"`
	Pools     []Item   `json:"pools"`
	VIPs      []Item   `json:"vips"`
	Zones     []Zone   `json:"zones"`
	History   History  `json:"history"`
	Truncated []string `json:"truncated,omitempty"`
}
