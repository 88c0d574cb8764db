// Package lease runs TTL leases for self-registering backends on the Raft
// leader, with etcd's lease semantics: a grant is a Raft write and returns
// the lease id (the granting entry's index); keepalives are answered by
// the leader from memory and are never Raft writes; a revoke drains the
// lease's backends before removing them; when a lease's TTL runs out the
// leader proposes its expiry (one lease_expire entry per check round may
// end many leases), which removes its backends from every pool.
//
// Deadlines exist only in the leader's memory. A node that gains
// leadership gives every lease a fresh full TTL, so owners that keep
// sending keepalives never lose a lease to a leader change. When more than
// a configured share of the live leases would expire within one check
// interval, the cause is more likely on our side (a partition, a stalled
// leader) than a mass departure: expiry is held back, a gauge and a log
// line say so, and it resumes once keepalives return.
//
// lease imports fsm, cluster/leading, internal/conf, and cluster for its
// sentinel errors; it talks to the node only through the Store interface
// it declares. It must not import
// cluster/httpapi or dataplane, and cluster must not import it.
package lease
