// Package dataplane is rafter's HTTP proxy. It owns the listeners (one
// fasthttp server per configured listener), the routing table compiled from
// the replicated configuration and swapped atomically, the balancers, the
// per-backend connection pools and the forwarding rules (hop-by-hop
// stripping, X-Forwarded-*, smuggling rejection, streaming, Upgrade tunnels,
// retries).
//
// The package reads configuration only through ConfigSource and backend
// health only through HealthView, both declared here. It must never import
// rafter's cluster packages, hashicorp/raft or the AWS SDK: a node that
// loses its cluster keeps serving with the last table it compiled.
//
// Backend state that must survive a configuration change (active request
// counts, idle connections) lives in a registry keyed by pool and address,
// outside the immutable table.
package dataplane
