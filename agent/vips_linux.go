//go:build linux

package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/rafterlb/rafter/cluster"
	viplinux "github.com/rafterlb/rafter/cluster/vip/linux"
)

// linuxHandoverDelay is how long after the leader last heard from a holder
// it may give that holder's linux VIPs to another node.
func linuxHandoverDelay() time.Duration { return viplinux.DefaultOptions().HandoverDelay() }

// linuxLeasePeriod is how long after sending a probe a holder may still
// add an address on the grants of its answer.
func linuxLeasePeriod() time.Duration { return viplinux.DefaultOptions().LeasePeriod }

// preflightLinuxVIPs refuses --vip-linux before the node joins a cluster
// when this process could not hold an address.
func preflightLinuxVIPs(cfg Config) error {
	if !cfg.VIPLinux {
		return nil
	}
	if err := viplinux.CheckCapabilities(); err != nil {
		return fmt.Errorf("--vip-linux: %w", err)
	}
	return nil
}

func newLinuxKeeper(cfg Config, node *cluster.Node, contact func() time.Time, wantGrant func(), log *slog.Logger) (linuxKeeper, error) {
	iface := cfg.VIPInterface
	if iface == "" {
		var err error
		if iface, err = interfaceOf(cfg.Bind); err != nil {
			return nil, fmt.Errorf("--vip-interface: %w", err)
		}
	}
	opts := viplinux.DefaultOptions()
	opts.Interface = iface
	opts.Logger = log.With("component", "vip-linux")
	h, err := viplinux.NewHolder(opts)
	if err != nil {
		return nil, fmt.Errorf("--vip-linux: %w", err)
	}
	k, err := viplinux.NewKeeper(viplinux.KeeperConfig{
		NodeID:        cfg.NodeID,
		Store:         node,
		Holder:        h,
		QuorumContact: contact,
		WantGrant:     wantGrant,
		Logger:        opts.Logger,
	})
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("--vip-linux: %w", err)
	}
	return k, nil
}

// interfaceOf names the interface that carries ip.
func interfaceOf(ip string) (string, error) {
	want := net.ParseIP(ip)
	if want == nil || want.IsUnspecified() {
		return "", fmt.Errorf("cannot tell the interface from --bind %q; name one", ip)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(want) {
				return ifc.Name, nil
			}
		}
	}
	return "", errors.New("no interface carries the --bind address " + ip + "; name one")
}
