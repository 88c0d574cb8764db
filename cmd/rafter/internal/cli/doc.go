// Package cli is rafter's command line apart from the processes it starts:
// the commands that speak to the admin API through package client (status,
// apply, get, delete, node, snapshot, zone, register), `tls init`,
// `version`, and the agent's configuration (flags, YAML file, environment,
// validation).
//
// It must not import cluster, cluster/httpapi or dataplane: the commands here
// work against any node over HTTP, and they build and test on their own.
// Package main adds the `agent` and `dev` commands that run nodes.
package cli
