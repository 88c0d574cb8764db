package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/rafterlb/rafter/cmd/rafter/internal/cli"
)

// execute runs the command line args (without the program name).
func execute(ctx context.Context, args []string) error {
	return cli.Execute(ctx, newRoot(cli.OSStreams()), args)
}

// newRoot is every command of the binary, on the streams s.
func newRoot(s cli.Streams) *cobra.Command {
	return cli.NewRoot(s, newAgentCmd(s), newDevCmd(s), newRecoverCmd(s))
}
