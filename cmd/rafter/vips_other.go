//go:build !linux

package main

import (
	"errors"
	"log/slog"
	"time"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cmd/rafter/internal/cli"
)

// linuxHandoverDelay matches the Linux holder's default timing, so a leader
// on another system still waits long enough for Linux holders.
func linuxHandoverDelay() time.Duration { return 2 * time.Second }

func preflightLinuxVIPs(cfg cli.AgentConfig) error {
	if cfg.VIPLinux {
		return errors.New("--vip-linux: linux VIPs need Linux")
	}
	return nil
}

func newLinuxKeeper(cli.AgentConfig, *cluster.Node, func() time.Time, func(), *slog.Logger) (linuxKeeper, error) {
	return nil, errors.New("--vip-linux: linux VIPs need Linux")
}
