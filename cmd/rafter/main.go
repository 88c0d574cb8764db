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
	// SIGHUP (`systemctl reload rafter`) will start the upgrade hand-over;
	// until that exists it must not stop the node, as it would by default.
	signal.Ignore(syscall.SIGHUP)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := execute(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
