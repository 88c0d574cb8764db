// Package clustertest runs a whole rafter cluster in one process for
// tests: nodes on raft.InmemTransport and in-memory stores, with
// partitions, crashes and restarts that keep each node's stores.
//
// It is imported only by tests. It may import cluster and fsm, never
// dataplane or cluster/httpapi.
package clustertest
