// Package tlsutil creates the cluster's certificate authority, node
// certificates and the CLI's client-only certificate (`rafter tls init`),
// loads them into tls.Configs for Raft and the admin API (mutual TLS,
// client certificates required on both) and clients, and tells a node
// certificate's node id (NodeID).
//
// It owns only files and tls.Configs: it imports no other rafter package and
// opens no connection.
package tlsutil
