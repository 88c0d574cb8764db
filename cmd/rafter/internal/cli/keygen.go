package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rafterlb/rafter/secrets"
)

func newKeygenCmd(s Streams) *cobra.Command {
	return &cobra.Command{
		Use:   "keygen FILE",
		Short: "Write a new secrets key file (mode 0600) for --secrets-key-file",
		Long: "keygen writes a new AES-256 secrets key to FILE with mode 0600; it never\n" +
			"overwrites a file. Every node of a cluster needs the same key file\n" +
			"(--secrets-key-file): it seals certificate private keys and TLS\n" +
			"session-ticket keys in the Raft log and snapshots. Copy it to each\n" +
			"node over a secure channel; see docs/operations.md, \"Secrets key\".",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := secrets.WriteKeyFile(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(s.Out, "wrote secrets key %s to %s (mode 0600)\n", id, args[0])
			fmt.Fprintf(s.Out, "copy this same file to every node and start each with --secrets-key-file %s\n", args[0])
			return nil
		},
	}
}
