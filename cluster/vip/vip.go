package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/conf"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrStaleToken: the caller's assignment token is older than the one in
	// the replicated state (or the VIP is gone); the move must not happen.
	ErrStaleToken = errors.New("stale assignment token")
	// ErrNotLeader: this node no longer leads; it must not write to the cloud.
	ErrNotLeader = errors.New("not the leader")
	// ErrNotClaimed: the new holder of a Linux VIP did not add the address
	// in time (LinuxMover.ClaimTimeout); the controller then gives the VIP
	// to another node and keeps it from that holder for a while.
	ErrNotClaimed = errors.New("the new holder did not claim the address")
)

// Mover makes the network agree with an assignment: after Move returns nil
// the address reaches target. A Mover must put Fence.Check (or an
// equivalent) before every cloud write it makes, retries included.
type Mover interface {
	Move(ctx context.Context, v fsm.VIP, target fsm.Node, token uint64) error
}

// Checker is implemented by Movers that can read where an address is now;
// the Controller uses it to repair drift and, after a leader change, to
// skip moves the previous leader already made.
type Checker interface {
	InPlace(ctx context.Context, v fsm.VIP, holder fsm.Node) (bool, error)
}

// Liveness says whether a node is alive and since when it has been in that
// state (for a dead node: its last contact).
type Liveness interface {
	Alive(nodeID string) (alive bool, since time.Time)
}

// Store is what the Controller needs of the cluster node; *cluster.Node
// satisfies it.
type Store interface {
	Config() *fsm.Config
	Changed() <-chan struct{}
	Apply(ctx context.Context, cmd *fsm.Command) (uint64, error)
	VerifyLeader(ctx context.Context) error
}

// FenceStore is what a Fence needs of the cluster node.
type FenceStore interface {
	Config() *fsm.Config
	VerifyLeader(ctx context.Context) error
}

// Fence refuses cloud writes by a node that no longer leads or that acts on
// an assignment which a newer one has replaced.
type Fence struct {
	store FenceStore
}

// NewFence returns a Fence reading the local state of store.
func NewFence(store FenceStore) *Fence { return &Fence{store: store} }

// Check returns nil when a cloud write for the assignment of vipName with
// token may proceed now: the token is not older than the assignment in the
// local Config and a quorum confirms this node leads. The token is checked
// again after VerifyLeader because an entry may apply meanwhile.
func (f *Fence) Check(ctx context.Context, vipName string, token uint64) error {
	if err := f.checkToken(vipName, token); err != nil {
		return err
	}
	if err := f.store.VerifyLeader(ctx); err != nil {
		return fmt.Errorf("vip: %w: %w", ErrNotLeader, err)
	}
	return f.checkToken(vipName, token)
}

func (f *Fence) checkToken(vipName string, token uint64) error {
	cfg := f.store.Config()
	if _, ok := cfg.VIPs[vipName]; !ok {
		return fmt.Errorf("vip: %w: vip %q no longer exists", ErrStaleToken, vipName)
	}
	a, ok := cfg.Assignments[vipName]
	if !ok {
		return fmt.Errorf("vip: %w: vip %q has no assignment", ErrStaleToken, vipName)
	}
	if token < a.Token {
		return fmt.Errorf("vip: %w: vip %q token %d is older than the current %d (holder %s)",
			ErrStaleToken, vipName, token, a.Token, a.Holder)
	}
	return nil
}

// Config configures a Controller. Start from DefaultConfig.
type Config struct {
	Store    Store
	Liveness Liveness
	// Movers by provider (fsm.ProviderAWSEIP, fsm.ProviderAWSPrivateIP,
	// fsm.ProviderAWSRoute, fsm.ProviderLinux). VIPs of
	// provider "none" are assigned without a move; VIPs of a provider with
	// no Mover are left alone.
	Movers     map[string]Mover
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics registered nowhere
	Now        func() time.Time      // default time.Now

	// Tick is how often the leader re-evaluates assignments (besides every
	// change of the replicated state); it bounds how late a loss is noticed
	// after Liveness reports it (default 50ms).
	Tick time.Duration
	// HoldDown is how long the home node must have been live before its
	// VIPs move back (default 30s).
	HoldDown time.Duration
	// ReconcileInterval spaces the drift checks: each VIP is described at
	// most once per interval (default 30s).
	ReconcileInterval time.Duration
	// MoveTimeout bounds one Move call (default 2m).
	MoveTimeout time.Duration
	// ApplyTimeout bounds writing one assignment (default 5s).
	ApplyTimeout time.Duration
	// RetryBase and RetryMax bound the jittered backoff between failed
	// moves of one VIP (defaults 500ms and 30s).
	RetryBase time.Duration
	RetryMax  time.Duration
}

// DefaultConfig returns the production timing; Store, Liveness and Movers
// must still be set.
func DefaultConfig() Config {
	return Config{
		Tick:              50 * time.Millisecond,
		HoldDown:          30 * time.Second,
		ReconcileInterval: 30 * time.Second,
		MoveTimeout:       2 * time.Minute,
		ApplyTimeout:      5 * time.Second,
		RetryBase:         500 * time.Millisecond,
		RetryMax:          30 * time.Second,
	}
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Store == nil:
		return errors.New("vip.store: required")
	case c.Liveness == nil:
		return errors.New("vip.liveness: required")
	}
	if err := conf.NotNegative(
		conf.Field("vip.tick", c.Tick),
		conf.Field("vip.hold_down", c.HoldDown),
		conf.Field("vip.reconcile_interval", c.ReconcileInterval),
		conf.Field("vip.move_timeout", c.MoveTimeout),
		conf.Field("vip.apply_timeout", c.ApplyTimeout),
		conf.Field("vip.retry_base", c.RetryBase),
	); err != nil {
		return err
	}
	if c.RetryMax < 0 || (c.RetryMax > 0 && c.RetryMax < c.RetryBase) {
		return fmt.Errorf("vip.retry_max: %s is below retry_base %s", c.RetryMax, c.RetryBase)
	}
	for p, m := range c.Movers {
		if m == nil {
			return fmt.Errorf("vip.movers[%s]: nil mover", p)
		}
		switch p {
		case fsm.ProviderAWSEIP, fsm.ProviderAWSPrivateIP, fsm.ProviderAWSRoute, fsm.ProviderLinux:
		default:
			return fmt.Errorf("vip.movers[%s]: not a provider that moves (aws-eip, aws-private-ip, aws-route, linux)", p)
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	conf.Logger(&c.Logger)
	conf.Now(&c.Now)
	conf.Default(&c.Tick, d.Tick)
	conf.Default(&c.HoldDown, d.HoldDown)
	conf.Default(&c.ReconcileInterval, d.ReconcileInterval)
	conf.Default(&c.MoveTimeout, d.MoveTimeout)
	conf.Default(&c.ApplyTimeout, d.ApplyTimeout)
	conf.Default(&c.RetryBase, d.RetryBase)
	conf.Default(&c.RetryMax, max(d.RetryMax, c.RetryBase))
	return c
}
