// Package secrets seals and opens the cluster's secrets (certificate
// private keys, TLS session-ticket keys) with the secrets key every node
// reads from --secrets-key-file: AES-256-GCM with a random nonce, so the
// Raft log and snapshots hold only ciphertext.
//
// Sealing happens outside the state machine (at the node that takes an
// admin API write, or at the leader for generated keys): the command
// carries the sealed value and Apply stays deterministic. Opening happens
// where a node builds its data plane.
//
// A key file holds one or more keys; the first seals, every one opens, so
// the secrets key can be rotated without losing what the old key sealed.
//
// It imports only the standard library, so fsm-level code, the data plane,
// the cluster and the CLI may all use it.
package secrets
