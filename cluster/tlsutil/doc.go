// Package tlsutil creates the cluster's certificate authority and node
// certificates (`rafter tls init`) and loads them into tls.Configs for Raft
// (mutual TLS, client certificates required), the admin API (HTTPS, client
// certificates verified when presented) and clients.
//
// It owns only files and tls.Configs: it imports no other rafter package and
// opens no connection.
package tlsutil
