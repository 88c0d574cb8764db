package aws

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rafterlb/rafter/cluster/awsec2"
	"github.com/rafterlb/rafter/cluster/vip"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/conf"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrNoTarget: the target node's network interface is not known.
	ErrNoTarget = errors.New("no network interface known for node")
	// ErrNotVerified: EC2 accepted the association but DescribeAddresses
	// did not show it within the verification deadline.
	ErrNotVerified = errors.New("association not verified")
	// ErrNotEIP: the VIP is not an aws-eip VIP.
	ErrNotEIP = errors.New("not an aws-eip vip")
)

// Client is the part of *awsec2.Client the Mover uses.
type Client interface {
	AssociateAddress(ctx context.Context, allocationID, eni, privateIP string) (string, error)
	DescribeAddress(ctx context.Context, allocationID string) (awsec2.Address, error)
}

// Fencer guards every cloud write; *vip.Fence implements it.
type Fencer interface {
	Check(ctx context.Context, vipName string, token uint64) error
}

// Target is where an Elastic IP is associated on a node: its network
// interface and the private address on it ("" for the primary one).
type Target struct {
	ENI        string
	PrivateIP  string
	InstanceID string // informational
}

// Targets finds a node's Target.
type Targets interface {
	Target(node fsm.Node) (Target, bool)
}

// StaticTargets maps node ids to targets, as the agent builds it from its
// configuration.
type StaticTargets map[string]Target

// Target looks node up by id.
func (s StaticTargets) Target(node fsm.Node) (Target, bool) {
	t, ok := s[node.ID]
	return t, ok && t.ENI != ""
}

// NodeTargets reads the target from the node's own record (the identity
// each agent is started with), so it needs no configuration and sees a
// node as soon as its record lands.
type NodeTargets struct{}

// Target is the node record's ENI and private IP; ok only with an ENI.
func (NodeTargets) Target(node fsm.Node) (Target, bool) {
	return Target{ENI: node.ENI, PrivateIP: node.PrivateIP, InstanceID: node.InstanceID}, node.ENI != ""
}

// Config configures a Mover. Start from DefaultConfig.
type Config struct {
	Client  Client
	Targets Targets
	Fence   Fencer
	Logger  *slog.Logger
	// Attempts bounds AssociateAddress calls per Move on errors that may
	// pass (throttling or 5xx beyond the SDK's own retries, network), the
	// first included (default 4).
	Attempts int
	// RetryBase and RetryMax bound the jittered backoff between those
	// attempts (defaults 200ms and 5s).
	RetryBase time.Duration
	RetryMax  time.Duration
	// VerifyTimeout bounds waiting for DescribeAddresses to show the new
	// association (default 30s). Describes are spaced PollInterval apart at
	// first, doubling up to PollMax (defaults 100ms and 2s).
	VerifyTimeout time.Duration
	PollInterval  time.Duration
	PollMax       time.Duration
}

// DefaultConfig returns production timing; Client, Targets and Fence must
// still be set.
func DefaultConfig() Config {
	return Config{
		Attempts:      4,
		RetryBase:     200 * time.Millisecond,
		RetryMax:      5 * time.Second,
		VerifyTimeout: 30 * time.Second,
		PollInterval:  100 * time.Millisecond,
		PollMax:       2 * time.Second,
	}
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Client == nil:
		return errors.New("aws_eip.client: required")
	case c.Targets == nil:
		return errors.New("aws_eip.targets: required")
	case c.Fence == nil:
		return errors.New("aws_eip.fence: required (only the current leader may move addresses)")
	case c.Attempts < 0 || c.Attempts > 20:
		return fmt.Errorf("aws_eip.attempts: %d out of range 1..20", c.Attempts)
	}
	return conf.NotNegative(
		conf.Field("aws_eip.retry_base", c.RetryBase),
		conf.Field("aws_eip.retry_max", c.RetryMax),
		conf.Field("aws_eip.verify_timeout", c.VerifyTimeout),
		conf.Field("aws_eip.poll_interval", c.PollInterval),
		conf.Field("aws_eip.poll_max", c.PollMax),
	)
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	conf.Logger(&c.Logger)
	conf.Default(&c.Attempts, d.Attempts)
	conf.Default(&c.RetryBase, d.RetryBase)
	conf.Default(&c.RetryMax, max(d.RetryMax, c.RetryBase))
	conf.Default(&c.VerifyTimeout, d.VerifyTimeout)
	conf.Default(&c.PollInterval, d.PollInterval)
	conf.Default(&c.PollMax, max(d.PollMax, c.PollInterval))
	return c
}

// Mover moves Elastic IPs; it implements vip.Mover and vip.Checker.
type Mover struct {
	cfg Config
	log *slog.Logger
}

var (
	_ vip.Mover   = (*Mover)(nil)
	_ vip.Checker = (*Mover)(nil)
)

// New returns a Mover. It does not call AWS.
func New(cfg Config) (*Mover, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("aws_eip: %w", err)
	}
	cfg = cfg.withDefaults()
	return &Mover{cfg: cfg, log: cfg.Logger}, nil
}

// Move associates v's Elastic IP with target's interface and waits until
// DescribeAddresses shows it. Each AssociateAddress is preceded by the
// Fence, so a stale token or a lost leadership stops the move before EC2
// is called (the Fence's error is returned, e.g. vip.ErrStaleToken).
func (m *Mover) Move(ctx context.Context, v fsm.VIP, target fsm.Node, token uint64) error {
	if v.Spec.Provider != fsm.ProviderAWSEIP {
		return fmt.Errorf("aws_eip: vip %q: %w (provider %q)", v.Name, ErrNotEIP, v.Spec.Provider)
	}
	t, ok := m.cfg.Targets.Target(target)
	if !ok {
		return fmt.Errorf("aws_eip: vip %q to node %s: %w", v.Name, target.ID, ErrNoTarget)
	}
	alloc := v.Spec.AllocationID
	start := time.Now()
	var assoc string
	for attempt := 1; ; attempt++ {
		if err := m.cfg.Fence.Check(ctx, v.Name, token); err != nil {
			return fmt.Errorf("aws_eip: vip %q token %d: %w", v.Name, token, err)
		}
		m.log.Info("associating elastic ip", "vip", v.Name, "allocation_id", alloc, "target", target.ID,
			"eni", t.ENI, "private_ip", t.PrivateIP, "token", token, "attempt", attempt)
		var err error
		assoc, err = m.cfg.Client.AssociateAddress(ctx, alloc, t.ENI, t.PrivateIP)
		if err == nil {
			break
		}
		if !retriable(ctx, err) || attempt >= m.cfg.Attempts {
			return fmt.Errorf("aws_eip: vip %q to node %s (attempt %d): %w", v.Name, target.ID, attempt, err)
		}
		wait := vip.Backoff(m.cfg.RetryBase, m.cfg.RetryMax, attempt)
		m.log.Warn("associating elastic ip failed; retrying", "vip", v.Name, "attempt", attempt, "retry_in", wait.Round(time.Millisecond), "err", err)
		if err := sleep(ctx, wait); err != nil {
			return fmt.Errorf("aws_eip: vip %q: %w", v.Name, err)
		}
	}
	if err := m.verify(ctx, v, t); err != nil {
		return fmt.Errorf("aws_eip: vip %q to node %s (association %s): %w", v.Name, target.ID, assoc, err)
	}
	m.log.Info("elastic ip associated", "vip", v.Name, "allocation_id", alloc, "target", target.ID,
		"association_id", assoc, "token", token, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// verify polls DescribeAddresses until it shows t or the deadline passes.
func (m *Mover) verify(ctx context.Context, v fsm.VIP, t Target) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.VerifyTimeout)
	defer cancel()
	poll := m.cfg.PollInterval
	var last error
	for {
		a, err := m.cfg.Client.DescribeAddress(ctx, v.Spec.AllocationID)
		switch {
		case err == nil && matches(a, t):
			return nil
		case err == nil:
			last = fmt.Errorf("describe shows eni %q private ip %q", a.NetworkInterfaceID, a.PrivateIP)
		case errors.Is(err, awsec2.ErrUnauthorized):
			return err
		default:
			last = err
		}
		if err := sleep(ctx, poll); err != nil {
			return fmt.Errorf("%w within %s: %w (last: %w)", ErrNotVerified, m.cfg.VerifyTimeout, err, last)
		}
		poll = min(poll*2, m.cfg.PollMax)
	}
}

// InPlace reports whether EC2 shows v's Elastic IP on holder's target. It
// is a read and needs no fencing.
func (m *Mover) InPlace(ctx context.Context, v fsm.VIP, holder fsm.Node) (bool, error) {
	if v.Spec.Provider != fsm.ProviderAWSEIP {
		return false, fmt.Errorf("aws_eip: vip %q: %w", v.Name, ErrNotEIP)
	}
	t, ok := m.cfg.Targets.Target(holder)
	if !ok {
		return false, fmt.Errorf("aws_eip: vip %q holder %s: %w", v.Name, holder.ID, ErrNoTarget)
	}
	a, err := m.cfg.Client.DescribeAddress(ctx, v.Spec.AllocationID)
	if err != nil {
		return false, fmt.Errorf("aws_eip: vip %q: %w", v.Name, err)
	}
	return matches(a, t), nil
}

func matches(a awsec2.Address, t Target) bool {
	return a.NetworkInterfaceID == t.ENI && (t.PrivateIP == "" || a.PrivateIP == t.PrivateIP)
}

// retriable: EC2 may accept the same call later. Missing resources and
// permissions do not heal by themselves.
func retriable(ctx context.Context, err error) bool {
	return ctx.Err() == nil &&
		!errors.Is(err, awsec2.ErrNotFound) &&
		!errors.Is(err, awsec2.ErrUnauthorized) &&
		!errors.Is(err, context.Canceled) &&
		!errors.Is(err, context.DeadlineExceeded)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
