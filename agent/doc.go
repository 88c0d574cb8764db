// Package agent is the composition root of one rafter node. New checks a
// Config (what `rafter agent` parses from flags, a YAML file and the
// environment); Run builds and runs the Raft node, the admin API, the data
// plane, health checks, leases, VIP machinery and EC2 discovery, and stops
// them in order. One watch loop per node feeds each new configuration to
// the health monitor and then to the data plane. DevCluster runs several
// agents in one process for `rafter dev` and tests.
//
// agent may import every other rafter package; nothing but cmd/rafter and
// tests imports agent.
package agent
