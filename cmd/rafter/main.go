// Command rafter runs a rafter node (agent), a local three-node cluster
// (dev), and the commands that manage a cluster through its admin API.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// SIGHUP must not stop any rafter command, as it would by default;
	// `rafter agent` listens for it to start an upgrade.
	signal.Ignore(syscall.SIGHUP)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := execute(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
