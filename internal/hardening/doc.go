// Package hardening holds the tests behind "no input may take a node
// down": random and malformed admin input against a live in-memory
// cluster (TestAdminInputFuzz), and FuzzValidate, which holds that
// whatever fsm validation accepts round-trips and is compiled and served
// by the data plane without a panic.
//
// It has no code of its own. Its tests import fsm, cluster (through
// cluster/clustertest), cluster/httpapi and dataplane together, which
// none of those packages may do themselves.
package hardening
