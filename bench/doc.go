// Package bench is rafter's benchmark harness: it runs rafter side by side
// with HAProxy and nginx on one fast backend, interleaves short measurement
// slices A-B-B-A, discards rounds in which the reference proxy disagreed
// with itself, and reports ratios against the reference (HAProxy), plus the
// cluster figures of a three-node rafter (config propagation, Raft apply
// throughput). Results are written as JSON and a PNG chart, and summarised
// in Markdown.
//
// The statistics (schedule, discard rule, ratios, result schema) are pure
// functions over Measurement values so they are tested on fake figures; the
// plumbing that produces real figures (processes, /proc sampling, wrk, the
// paced client) lives beside them.
//
// bench drives rafter only as an external process through its command line
// and admin API. It may import fsm (plain types) and must not import
// cluster, cluster/httpapi, dataplane or cmd/rafter.
package bench
