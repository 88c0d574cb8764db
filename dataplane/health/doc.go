// Package health owns this node's health verdict for every backend of every
// pool: active HTTP checks and passive outlier ejection. Verdicts are
// node-local telemetry; they never go through Raft and no other node sees
// them except through the admin API's view.
//
// The proxy uses one *Monitor:
//
//	m := health.NewMonitor(health.Options{NodeID: id, Logger: log, Registerer: reg})
//	go m.Run(ctx)                  // active checks and ejection expiry; returns when ctx is done
//	m.Update(pools)                // on every config change, before the new route table is used
//	if m.Healthy(pool, addr) {...} // request path: lock-free, allocation-free
//	m.Observe(pool, addr, health.Status5xx) // request path: after each upstream exchange
//	h, n := m.HealthyCount(pool)   // request path: for the panic threshold
//	mux.Handle("GET /v1/health", m.Handler(nil))
//
// A target is one distinct (pool, backend addr) pair. Its verdict is healthy
// when active checks say up and it is not ejected.
//
// Active checks (pool health_check): GET of path on http://addr with Host
// set to host (default: addr), one fresh connection per check, redirects
// not followed. A pool with tls is checked over https with its
// verification and client certificate (package upstreamtls), so a backend
// is up only when the proxy's own handshake would succeed; a pool with
// send_proxy_protocol starts each check with a PROXY LOCAL header (v1
// UNKNOWN), the protocol's way of saying the connection is the proxy's own. Success is the expect status, or any 2xx/3xx when expect is
// 0. Every interval ±10% (default 2s), each bounded by timeout (default
// 1s); a timeout is a failure. A healthy target leaves rotation after fall
// consecutive failures (default 3), an unhealthy one returns after rise
// consecutive successes (default 2). New targets start healthy, with or
// without a health_check, so a new pool serves at once; fall failed checks
// take a dead backend out.
//
// Passive outlier detection (pool outlier): the proxy reports every upstream
// exchange with Observe. consecutive_5xx 5xx answers in a row, or
// consecutive_connect_errors connection failures (ConnectError, Timeout,
// Reset) in a row, eject the target for base_ejection (default 30s) × its
// ejection multiplier, which grows by one with each ejection up to
// MaxEjectionMultiplier and starts over once the target has stayed in
// rotation for MaxEjectionMultiplier × base_ejection. A zero threshold
// disables that trigger; no outlier block disables passive ejection. An
// ejection that would put more than max_ejected_percent (default 50) of the
// pool's targets out at once is not done (so a one-backend pool is never
// ejected). An ejected target returns when its time is up, with its
// streaks reset; active checks go on during an ejection.
//
// The panic threshold, zone preference, weights and drain are the proxy's
// business: this package only says which targets are healthy.
//
// Update keeps the state of targets that stay, whatever else changes in
// their pool. A changed health_check restarts the pool's checkers with
// fresh counters but keeps the verdicts; removing it puts actively failed
// targets back; removing the outlier block ends running ejections.
//
// Time: check scheduling and ejection expiry use Options.Clock, so tests
// step them with a fake; the timeout of one check is real time because it
// bounds real I/O.
//
// Metrics: rafter_health_transitions_total{pool,to},
// rafter_health_ejections_total{pool},
// rafter_health_ejections_suppressed_total{pool}, and the gauges
// rafter_health_backends_healthy{pool}, rafter_health_backends{pool},
// rafter_health_backends_ejected{pool}.
//
// This package imports fsm, internal/conf and dataplane/upstreamtls and no
// other rafter package;
// never cluster, hashicorp/raft or the AWS SDK.
package health
