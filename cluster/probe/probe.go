// Package probe is the light node-liveness protocol between every node and
// the Raft leader, outside the Raft log.
//
// Every node sends the leader a Request every Interval (100ms) over the
// admin API (POST /v1/cluster/probe). The leader records the arrival, then
// answers only after a quorum has confirmed its leadership in a round that
// began after the arrival (one batched VerifyLeader serves every waiting
// probe). So when a node gets an answer to a probe it sent at S, a quorum
// acknowledged the leader after S, and no other leader can have been
// elected before S. The node's QuorumContact is the send time S of its last
// answered probe: a Linux VIP lease measured from it is safe under one-way
// partitions, where heartbeats still arrive but nothing gets back.
//
// The leader's record of each node (last arrival, what it reports holding,
// whether it is leaving) drives VIP liveness: a node is alive while a probe
// arrived within the detection period, which is much faster than Raft's
// failed-heartbeat signal on a silent partition (the transport's I/O
// timeout). A new leader knows nothing of the previous term: it counts every
// node as last heard at the start of its term.
package probe

import "time"

// Path is where the admin API serves probes.
const Path = "/v1/cluster/probe"

// The headers that carry Request.Incarnation and Request.Seq over HTTP.
// They are headers, not body fields, because a leader of the previous
// release decodes the body strictly; such a leader ignores them.
const (
	HeaderIncarnation = "X-Rafter-Probe-Incarnation"
	HeaderSeq         = "X-Rafter-Probe-Seq"
	// HeaderPrior carries Request.Prior as "LEADER TERM AGO_NS".
	HeaderPrior = "X-Rafter-Probe-Prior"
)

// Prior is a node's last contact with any leader of a term before the
// current leader's (cluster.Node.PriorContact), as an age at the probe's
// send time: a duration, so the leader needs no common clock.
type Prior struct {
	Leader string // the leader it is meant for
	Term   uint64 // that leader's term
	Ago    time.Duration
}

// Request is what a node sends the leader.
type Request struct {
	Node string `json:"node"`
	// Incarnation names the sending process (random at its start) and Seq
	// numbers its probes from 1, in the order they are sent. The leader
	// drops a probe not newer than one it already recorded from the same
	// process (one that timed out at the node and arrived late), and it
	// counts a report of not holding a VIP as clearance only when the probe
	// was sent after every answer that granted the node that VIP: a node
	// acts on a grant only until its next probe goes out
	// (vip/linux.Keeper). Zero: a node that does not number its probes;
	// its reports count as they arrive.
	Incarnation uint64 `json:"-"`
	Seq         uint64 `json:"-"`
	// Prior: see Prior; nil when the node does not know it.
	Prior *Prior `json:"-"`
	// Holding: the Linux VIPs the node holds as it sends, name -> token.
	Holding map[string]uint64 `json:"holding,omitempty"`
	// Leaving: the node is stopping and asks for its VIPs to be moved away.
	Leaving bool `json:"leaving,omitempty"`
}

// Response is the leader's answer, sent only after a quorum confirmed it
// leads (see the package comment).
type Response struct {
	Leader string `json:"leader"`
	// Grants: the Linux VIPs the node may claim now, name -> token. The
	// node claims one only while its own replicated state names it holder
	// with that same token.
	Grants map[string]uint64 `json:"grants,omitempty"`
}

// Report is the leader's record of one node in the current term.
type Report struct {
	// Arrived: when the node's last probe arrived, or, when none has
	// arrived in this term (then Reported is false), the latest instant its
	// lease from an earlier leader can have started (TrackerConfig.PriorQuiet).
	Arrived  time.Time
	Reported bool
	Holding  map[string]uint64
	Leaving  bool
	// Pending: Linux VIPs an answer of this term granted the node, in
	// answer to a probe that is still the newest recorded from the
	// process it went to and arrived within TrackerConfig.GrantLife. The
	// node may claim such a VIP at any moment, whatever its last report
	// says, so that report is no clearance.
	Pending map[string]bool
}

// Clear reports whether r shows that the node cannot hold vip: it said so
// in a probe sent after it could last act on a grant of vip.
func (r Report) Clear(vip string) bool {
	if !r.Reported || r.Pending[vip] {
		return false
	}
	_, holds := r.Holding[vip]
	return !holds
}

// Granter computes, on the leader, the Linux VIPs a node may claim now.
type Granter interface {
	Grants(node string) map[string]uint64
}
