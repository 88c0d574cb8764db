package aws

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/rafterlb/rafter/cluster/vip"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/conf"
)

// ErrWrongProvider: the VIP is not of the provider the mover moves.
var ErrWrongProvider = errors.New("wrong provider for this mover")

// PrivateIPClient is the part of *awsec2.Client the PrivateIPMover uses.
type PrivateIPClient interface {
	AssignPrivateIP(ctx context.Context, eni, ip string) error
	InterfaceIPs(ctx context.Context, eni string) ([]string, error)
}

// PrivateIPConfig configures a PrivateIPMover. Timing zero fields take
// DefaultTiming.
type PrivateIPConfig struct {
	Client  PrivateIPClient
	Targets Targets
	Fence   Fencer
	Logger  *slog.Logger
	Timing
}

// Validate names the first invalid field.
func (c PrivateIPConfig) Validate() error {
	switch {
	case c.Client == nil:
		return errors.New("aws_private_ip.client: required")
	case c.Targets == nil:
		return errors.New("aws_private_ip.targets: required")
	case c.Fence == nil:
		return errors.New("aws_private_ip.fence: required (only the current leader may move addresses)")
	}
	return c.Timing.validate("aws_private_ip")
}

// PrivateIPMover moves aws-private-ip VIPs: a secondary private address
// assigned to the holder's network interface with
// AssignPrivateIpAddresses (AllowReassignment takes it from the interface
// that has it), verified with DescribeNetworkInterfaces. VPCs ignore
// gratuitous ARP, so this, not an address on a Linux interface, is what
// moves an internal address. It implements vip.Mover and vip.Checker.
type PrivateIPMover struct {
	cfg PrivateIPConfig
	log *slog.Logger
}

var (
	_ vip.Mover   = (*PrivateIPMover)(nil)
	_ vip.Checker = (*PrivateIPMover)(nil)
)

// NewPrivateIP returns a PrivateIPMover. It does not call AWS.
func NewPrivateIP(cfg PrivateIPConfig) (*PrivateIPMover, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("aws_private_ip: %w", err)
	}
	cfg.Timing = cfg.Timing.withDefaults()
	conf.Logger(&cfg.Logger)
	return &PrivateIPMover{cfg: cfg, log: cfg.Logger}, nil
}

func (m *PrivateIPMover) target(v fsm.VIP, node fsm.Node) (string, error) {
	if v.Spec.Provider != fsm.ProviderAWSPrivateIP {
		return "", fmt.Errorf("aws_private_ip: vip %q: %w (provider %q)", v.Name, ErrWrongProvider, v.Spec.Provider)
	}
	eni, ok := interfaceFor(m.cfg.Targets, v, node)
	if !ok {
		return "", fmt.Errorf("aws_private_ip: vip %q to node %s: %w", v.Name, node.ID, ErrNoTarget)
	}
	return eni, nil
}

// Move assigns v's private address to target's interface and waits until
// DescribeNetworkInterfaces shows it there. Every AssignPrivateIpAddresses,
// retries included, is preceded by the Fence.
func (m *PrivateIPMover) Move(ctx context.Context, v fsm.VIP, target fsm.Node, token uint64) error {
	eni, err := m.target(v, target)
	if err != nil {
		return err
	}
	ip := v.Spec.PrivateIP
	start := time.Now()
	err = m.cfg.fencedWrite(ctx, m.log, m.cfg.Fence, v.Name, token, "assigning private ip", func(ctx context.Context) error {
		m.log.Info("assigning private ip", "vip", v.Name, "private_ip", ip, "target", target.ID, "eni", eni, "token", token)
		return m.cfg.Client.AssignPrivateIP(ctx, eni, ip)
	})
	if err != nil {
		return fmt.Errorf("aws_private_ip: vip %q to node %s: %w", v.Name, target.ID, err)
	}
	if err := m.cfg.verify(ctx, func(ctx context.Context) (bool, string, error) {
		return m.shows(ctx, eni, ip)
	}); err != nil {
		return fmt.Errorf("aws_private_ip: vip %q to node %s (%s): %w", v.Name, target.ID, eni, err)
	}
	m.log.Info("private ip assigned", "vip", v.Name, "private_ip", ip, "target", target.ID, "eni", eni,
		"token", token, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// InPlace reports whether EC2 shows v's private address on holder's
// interface. It is a read and needs no fencing.
func (m *PrivateIPMover) InPlace(ctx context.Context, v fsm.VIP, holder fsm.Node) (bool, error) {
	eni, err := m.target(v, holder)
	if err != nil {
		return false, err
	}
	ok, _, err := m.shows(ctx, eni, v.Spec.PrivateIP)
	if err != nil {
		return false, fmt.Errorf("aws_private_ip: vip %q: %w", v.Name, err)
	}
	return ok, nil
}

func (m *PrivateIPMover) shows(ctx context.Context, eni, ip string) (bool, string, error) {
	ips, err := m.cfg.Client.InterfaceIPs(ctx, eni)
	if err != nil {
		return false, "", err
	}
	if slices.Contains(ips, ip) {
		return true, "", nil
	}
	return false, fmt.Sprintf("describe shows %s with %v", eni, ips), nil
}
