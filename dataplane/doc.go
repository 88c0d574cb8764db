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
// Each request carries an X-Request-Id and a W3C trace context, taken from
// the client when well formed and made otherwise (trace.go); spans go to a
// SpanSink the caller provides, so the package holds no exporter. Metrics
// series are looked up when a table is compiled, not per request, and those
// of removed routes, pools and backends are deleted when the table swaps.
//
// Backend state that must survive a configuration change (active request
// counts, idle connections) lives in a registry keyed by pool and address,
// outside the immutable table.
//
// A listener with proxy_protocol reads a PROXY header (v1 or v2) from
// trusted sources when a connection sends its first bytes (proxyconn.go);
// the header's address becomes the connection's RemoteAddr, so everything
// that names the client uses it. Pools may speak TLS to their backends
// (backendtls.go, configured by package upstreamtls, which the health
// checks share) and send a PROXY header on backend connections private to
// one client connection (sendproxy.go), which count against the pool's
// max_conns_per_backend like shared ones (privatelimit.go).
package dataplane
