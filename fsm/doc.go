// Package fsm is rafter's replicated state: the resource types (listeners,
// routes, pools, VIPs and their assignments, nodes, zone states, TTL leases
// and the backends registered under them), their validation, the commands
// that change them, the deterministic state transition Next, the FSM that
// applies committed entries, snapshots, and the manifest format operators
// read and write.
//
// fsm is the pure leaf package. It imports no other rafter package and not
// hashicorp/raft (cluster adapts FSM to raft.FSM), and nothing it does while
// applying a command touches the network, the clock or randomness: time
// travels inside the command, from the leader. Every *Config it hands out is
// immutable; each command produces a new one that shares the parts it did
// not change.
//
// A command's log entry is its JSON envelope framed with a CRC-32C
// (EncodeCommand, frame.go); DecodeCommand refuses a damaged entry with
// ErrCorruptEntry.
package fsm
