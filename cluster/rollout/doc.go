// Package rollout drives progressive canary rollouts (fsm kind rollout)
// from the figures every node reports, outside Raft.
//
// Every node runs a Reporter: every ReportInterval it sends the leader its
// cumulative counts (requests, 5xx and connection failures, a latency
// histogram) for the stable and canary pools of each running rollout's
// route, over POST /v1/cluster/rollout-report. The leader's Collector keeps
// the latest report of each node.
//
// The Controller acts once per leadership term (cluster/leading). For each
// progressing rollout it opens a window on the step the committed status
// names, subtracts each node's counts at the window's start from its latest
// ones and sums them over the nodes. It fails the step as soon as the
// window holds min_requests canary requests and a criterion fails, and
// advances once the step's interval has passed with min_requests and every
// criterion met. Each verdict is one committed fsm.RolloutDecide naming the
// status token it was made on and the leader's term, so a deposed leader
// can neither skip nor repeat a step; a new leader opens a fresh window on
// the step the committed status names.
//
// The package imports fsm, cluster/leading and internal packages, not
// cluster or dataplane: the node and the data plane reach it through the
// small interfaces it declares.
package rollout
