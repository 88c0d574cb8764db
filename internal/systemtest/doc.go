// Package systemtest starts real rafter agent processes on 127.0.0.1-3 and
// drives them through the admin API and their proxies: kill -9, restarts,
// leader loss and linearizability of the API under failures; route changes
// under load with zero failed requests, propagation to every node, graceful
// stop, health checks end to end, and answers when every backend is down.
//
// The tests build ./cmd/rafter once per run. Every process a test starts is
// killed in t.Cleanup; traffic goes only to loopback addresses.
package systemtest
