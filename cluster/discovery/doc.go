// Package discovery fills pools from EC2 tag listings. A Discoverer runs on
// the Raft leader only: for every pool with discovery.ec2 it lists the
// running instances carrying the pool's tags on the pool's refresh interval
// and writes, through Raft, only the differences to the pool's backends
// (privateIP:port, zone from the placement, weight 1).
//
// Writes are compare-and-set on the pool's modify_index, so an operator's
// concurrent edit wins and discovery tries again next round; each write is
// preceded by VerifyLeader. Backends discovery adds carry source "ec2";
// only those are ever changed or removed, so a new leader picks up where
// the old one stopped. Static and lease-attached backends are never
// touched. A backend whose instance left the listing is removed only after
// a grace period of continuous absence, and never in a round whose listing
// failed on any page: a partial listing is not evidence that instances are
// gone.
//
// The package declares the small interfaces it consumes (Lister, Writer)
// and must import neither the AWS SDK nor hashicorp/raft; the agent adapts
// cluster/awsec2 and the cluster Node to them. Of rafter it imports fsm,
// cluster/leading and internal/conf only.
package discovery
