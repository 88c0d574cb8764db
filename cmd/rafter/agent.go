package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rafterlb/rafter/agent"
	"github.com/rafterlb/rafter/cmd/rafter/internal/cli"
)

func newAgentCmd(s cli.Streams) *cobra.Command {
	cfg := agent.DefaultConfig()
	var configFile string
	var check bool
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a rafter node: Raft member, admin API and HTTP proxy",
		Long: "Run one rafter node. Flags may also be given in a YAML file (--config) with the\n" +
			"same keys (node_id or node-id ...); a flag on the command line wins over the\n" +
			"environment (RAFTER_TOKEN, RAFTER_READ_ONLY_TOKEN), which wins over the file.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := LoadAgentConfig(cmd.Flags(), configFile, s.Getenv); err != nil {
				return err
			}
			if check {
				if err := cfg.Check(); err != nil {
					return err
				}
				_, err := fmt.Fprintln(s.Out, "configuration ok")
				return err
			}
			cfg.Stdout, cfg.Stderr = s.Out, s.Err
			cfg.NotifySocket = s.Getenv("NOTIFY_SOCKET")
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	BindAgentFlags(cmd.Flags(), &cfg)
	cmd.Flags().StringVar(&configFile, "config", "", "YAML file with the same keys as the flags")
	cmd.Flags().BoolVar(&check, "check", false, "load and validate the configuration (and TLS files), print \"configuration ok\" and exit without starting")
	return cmd
}
