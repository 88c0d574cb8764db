// Package aws moves AWS addresses for the vip Controller. Three movers:
// Mover (aws-eip), PrivateIPMover (aws-private-ip: a secondary private IP
// moved between network interfaces with AssignPrivateIpAddresses and
// AllowReassignment, verified with DescribeNetworkInterfaces) and
// RouteMover (aws-route: a route-table entry for a CIDR pointed at the
// holder's interface with ReplaceRoute, or CreateRoute when absent,
// verified with DescribeRouteTables). VPCs ignore gratuitous ARP, so the
// last two are how an internal address moves. All three share the rules
// below (the private ones through Timing).
//
// The Elastic IP mover: AssociateAddress
// (with AllowReassociation) to the target node's network interface and
// private address, then DescribeAddresses until EC2 shows the new
// association, since EC2 is eventually consistent. Throttling and 5xx
// answers are retried by cluster/awsec2's SDK retryer; on top of that a
// Move retries the association with jittered backoff and gives the
// verification its own deadline.
//
// Every AssociateAddress, retries included, is preceded by the Fence
// (vip.Fence): a node that no longer leads, or a call carrying an older
// token than the current assignment, never reaches EC2.
//
// Where a node's interface is comes from Targets: today a per-node map the
// agent builds from its flags; once fsm.Node carries the interface, a
// Targets reading it.
//
// The package imports fsm, internal/conf, cluster/vip and cluster/awsec2
// (the only door to the SDK); it must not import the AWS SDK itself or hashicorp/raft.
package aws
