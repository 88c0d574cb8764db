// Package fakeec2 is an in-process fake of the EC2 query API, enough of it
// for rafter's Elastic IP and private address moves and tag discovery:
// AssociateAddress, DisassociateAddress, DescribeAddresses,
// DescribeInstances, AssignPrivateIpAddresses, DescribeNetworkInterfaces,
// ReplaceRoute, CreateRoute and DescribeRouteTables, answered in the XML
// the AWS SDK for Go v2 decodes. It keeps addresses, associations,
// instances (with their interface and its secondary addresses) and route
// tables in memory, counts calls per action and injects the failures
// real EC2 shows (throttling, internal errors, a failed page, describe
// lagging behind associate, denied permissions).
//
// It is for tests only: it listens on 127.0.0.1 and is never pointed at,
// nor forwards to, a real AWS endpoint. It imports no rafter package and not
// the AWS SDK (it speaks the wire format, so tests exercise the SDK's own
// serializers and deserializers).
package fakeec2
