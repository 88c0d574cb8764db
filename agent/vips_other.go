//go:build !linux

package agent

import (
	"errors"
	"log/slog"
	"time"

	"github.com/rafterlb/rafter/cluster"
)

// linuxHandoverDelay matches the Linux holder's default timing, so a leader
// on another system still waits long enough for Linux holders.
func linuxHandoverDelay() time.Duration { return 2 * time.Second }

// linuxLeasePeriod is at least the Linux holder's default lease.
func linuxLeasePeriod() time.Duration { return 500 * time.Millisecond }

func preflightLinuxVIPs(cfg Config) error {
	if cfg.VIPLinux {
		return errors.New("--vip-linux: linux VIPs need Linux")
	}
	return nil
}

func newLinuxKeeper(Config, *cluster.Node, func() time.Time, func(), *slog.Logger) (linuxKeeper, error) {
	return nil, errors.New("--vip-linux: linux VIPs need Linux")
}
