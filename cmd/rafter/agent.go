package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/spf13/cobra"

	"github.com/rafterlb/rafter/agent"
	"github.com/rafterlb/rafter/cmd/rafter/internal/cli"
)

// upgradeReadyTimeout bounds how long an upgrade waits for the new
// process to serve before it kills it and the old one carries on.
const upgradeReadyTimeout = 30 * time.Second

func newAgentCmd(s cli.Streams) *cobra.Command {
	cfg := agent.DefaultConfig()
	var configFile string
	var check, upgrade bool
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a rafter node: Raft member, admin API and HTTP proxy",
		Long: "Run one rafter node. Flags may also be given in a YAML file (--config) with the\n" +
			"same keys (node_id or node-id ...); a flag on the command line wins over the\n" +
			"environment (RAFTER_TOKEN, RAFTER_READ_ONLY_TOKEN), which wins over the file.\n\n" +
			"SIGHUP (`systemctl reload rafter`, or `rafter agent --upgrade`) upgrades the\n" +
			"running agent in place: the binary at the same path starts, takes over the\n" +
			"listening sockets and serves, and the old process finishes its requests,\n" +
			"hands Raft over and exits. Membership and VIPs stay as they are.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := LoadAgentConfig(cmd.Flags(), configFile, s.Getenv); err != nil {
				return err
			}
			if check && upgrade {
				return fmt.Errorf("--upgrade: not with --check")
			}
			if check {
				if err := cfg.Check(); err != nil {
					return err
				}
				_, err := fmt.Fprintln(s.Out, "configuration ok")
				return err
			}
			if upgrade {
				return requestUpgrade(cmd.Context(), s, cfg.DataDir)
			}
			cfg.Stdout, cfg.Stderr = s.Out, s.Err
			cfg.NotifySocket = s.Getenv("NOTIFY_SOCKET")
			return runAgent(cmd.Context(), cfg)
		},
	}
	BindAgentFlags(cmd.Flags(), &cfg)
	cmd.Flags().StringVar(&configFile, "config", "", "YAML file with the same keys as the flags")
	cmd.Flags().BoolVar(&check, "check", false, "load and validate the configuration (and TLS files), print \"configuration ok\" and exit without starting")
	cmd.Flags().BoolVar(&upgrade, "upgrade", false, "upgrade the agent running on --data-dir (SIGHUP to the PID in its rafter.pid) and wait until the new process serves")
	return cmd
}

// requestUpgrade is `rafter agent --upgrade`.
func requestUpgrade(ctx context.Context, s cli.Streams, dataDir string) error {
	if dataDir == "" {
		return fmt.Errorf("--data-dir: required with --upgrade (it holds the agent's rafter.pid)")
	}
	ctx, cancel := context.WithTimeout(ctx, upgradeReadyTimeout+30*time.Second)
	defer cancel()
	oldPID, newPID, err := agent.RequestUpgrade(ctx, dataDir)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(s.Out, "upgraded: pid %d serves now (was %d)\n", newPID, oldPID)
	return err
}

// runAgent runs the agent with an upgrader: SIGHUP starts the upgrade.
func runAgent(ctx context.Context, cfg agent.Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	upg, err := tableflip.New(tableflip.Options{
		UpgradeTimeout: upgradeReadyTimeout,
		PIDFile:        agent.PIDFile(cfg.DataDir),
	})
	if err != nil {
		return fmt.Errorf("upgrader: %w", err)
	}
	defer upg.Stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	requests := make(chan struct{}, 1)
	done := make(chan struct{})
	forwarded := make(chan struct{})
	go func() {
		defer close(forwarded)
		for {
			select {
			case <-done:
				return
			case <-hup:
				select {
				case requests <- struct{}{}:
				default:
				}
			}
		}
	}()
	defer func() {
		close(done)
		<-forwarded
	}()
	cfg.Upgrader, cfg.UpgradeRequests = upg, requests
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
