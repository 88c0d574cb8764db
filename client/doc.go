// Package client is the Go client of rafter's admin API (/v1): the CLI
// speaks to the cluster only through it, and tests use it to drive real
// nodes. Registrar keeps a self-registered backend under a TTL lease
// (what `rafter register` runs).
//
// It owns the wire format as seen from the caller. It imports only fsm (for
// the plain resource types) and must not import cluster, dataplane or
// hashicorp/raft, so that programs embedding the client stay small; the
// status and peer types it decodes mirror cluster's JSON.
package client
