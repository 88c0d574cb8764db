// Package main is the rafter binary: main parses the command line and
// calls run(ctx, cfg) for `rafter agent`, or the dev cluster, or one of the
// API commands of package cli. It wires cluster, cluster/httpapi and the
// data plane together; nothing here is imported by another package.
package main
