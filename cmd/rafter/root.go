package main

import (
	"context"

	"github.com/rafterlb/rafter/cmd/rafter/internal/cli"
)

// execute runs the command line args (without the program name).
func execute(ctx context.Context, args []string) error {
	s := cli.OSStreams()
	root := cli.NewRoot(s, newAgentCmd(s), newDevCmd(s))
	return cli.Execute(ctx, root, args)
}
