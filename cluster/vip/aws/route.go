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

// RouteClient is the part of *awsec2.Client the RouteMover uses.
type RouteClient interface {
	ReplaceRoute(ctx context.Context, routeTableID, cidr, eni string) error
	CreateRoute(ctx context.Context, routeTableID, cidr, eni string) error
	DescribeRoute(ctx context.Context, routeTableID, cidr string) (awsec2.Route, error)
}

// RouteConfig configures a RouteMover. Timing zero fields take
// DefaultTiming.
type RouteConfig struct {
	Client  RouteClient
	Targets Targets
	Fence   Fencer
	Logger  *slog.Logger
	Timing
}

// Validate names the first invalid field.
func (c RouteConfig) Validate() error {
	switch {
	case c.Client == nil:
		return errors.New("aws_route.client: required")
	case c.Targets == nil:
		return errors.New("aws_route.targets: required")
	case c.Fence == nil:
		return errors.New("aws_route.fence: required (only the current leader may move addresses)")
	}
	return c.Timing.validate("aws_route")
}

// RouteMover moves aws-route VIPs: in every route table of the spec, the
// route for its CIDR points at the holder's network interface
// (ReplaceRoute, or CreateRoute when the table has none), verified with
// DescribeRouteTables. Unlike a secondary private IP it reaches across
// subnets and zones; the holders need source/destination checking off.
// It implements vip.Mover and vip.Checker.
type RouteMover struct {
	cfg RouteConfig
	log *slog.Logger
}

var (
	_ vip.Mover   = (*RouteMover)(nil)
	_ vip.Checker = (*RouteMover)(nil)
)

// NewRoute returns a RouteMover. It does not call AWS.
func NewRoute(cfg RouteConfig) (*RouteMover, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("aws_route: %w", err)
	}
	cfg.Timing = cfg.Timing.withDefaults()
	conf.Logger(&cfg.Logger)
	return &RouteMover{cfg: cfg, log: cfg.Logger}, nil
}

func (m *RouteMover) target(v fsm.VIP, node fsm.Node) (string, error) {
	if v.Spec.Provider != fsm.ProviderAWSRoute {
		return "", fmt.Errorf("aws_route: vip %q: %w (provider %q)", v.Name, ErrWrongProvider, v.Spec.Provider)
	}
	eni, ok := interfaceFor(m.cfg.Targets, v, node)
	if !ok {
		return "", fmt.Errorf("aws_route: vip %q to node %s: %w", v.Name, node.ID, ErrNoTarget)
	}
	return eni, nil
}

// Move points v's route in each table at target's interface, then waits
// until DescribeRouteTables shows every one. Each write, retries included,
// is preceded by the Fence; a table that already points there is left
// alone.
func (m *RouteMover) Move(ctx context.Context, v fsm.VIP, target fsm.Node, token uint64) error {
	eni, err := m.target(v, target)
	if err != nil {
		return err
	}
	cidr := v.Spec.CIDR
	start := time.Now()
	for _, table := range v.Spec.RouteTableIDs {
		err := m.cfg.fencedWrite(ctx, m.log, m.cfg.Fence, v.Name, token, "pointing route", func(ctx context.Context) error {
			return m.point(ctx, v.Name, table, cidr, eni, target.ID, token)
		})
		if err != nil {
			return fmt.Errorf("aws_route: vip %q route %s in %s to node %s: %w", v.Name, cidr, table, target.ID, err)
		}
	}
	if err := m.cfg.verify(ctx, func(ctx context.Context) (bool, string, error) {
		return m.shows(ctx, v, eni)
	}); err != nil {
		return fmt.Errorf("aws_route: vip %q to node %s (%s): %w", v.Name, target.ID, eni, err)
	}
	m.log.Info("routes point at the holder", "vip", v.Name, "cidr", cidr, "tables", len(v.Spec.RouteTableIDs),
		"target", target.ID, "eni", eni, "token", token, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// point makes one table's route target eni: ReplaceRoute when the table
// has a route for cidr, CreateRoute when it has none. Racing another
// writer, either may fail (RouteAlreadyExists, no route to replace); the
// retry describes again and picks the other.
func (m *RouteMover) point(ctx context.Context, vipName, table, cidr, eni, node string, token uint64) error {
	r, err := m.cfg.Client.DescribeRoute(ctx, table, cidr)
	switch {
	case errors.Is(err, awsec2.ErrNoRoute):
		m.log.Info("creating route", "vip", vipName, "route_table", table, "cidr", cidr, "target", node, "eni", eni, "token", token)
		return m.cfg.Client.CreateRoute(ctx, table, cidr, eni)
	case err != nil:
		return err
	case r.NetworkInterfaceID == eni && r.State != "blackhole":
		return nil
	}
	m.log.Info("replacing route", "vip", vipName, "route_table", table, "cidr", cidr, "from_eni", r.NetworkInterfaceID,
		"target", node, "eni", eni, "token", token)
	return m.cfg.Client.ReplaceRoute(ctx, table, cidr, eni)
}

// InPlace reports whether every table's route for v's CIDR points at
// holder's interface. It is a read and needs no fencing.
func (m *RouteMover) InPlace(ctx context.Context, v fsm.VIP, holder fsm.Node) (bool, error) {
	eni, err := m.target(v, holder)
	if err != nil {
		return false, err
	}
	ok, _, err := m.shows(ctx, v, eni)
	if err != nil {
		return false, fmt.Errorf("aws_route: vip %q: %w", v.Name, err)
	}
	return ok, nil
}

// shows reports whether EC2 shows every table's route at eni; a table
// without the route is drift too (someone deleted it), not an error.
func (m *RouteMover) shows(ctx context.Context, v fsm.VIP, eni string) (bool, string, error) {
	for _, table := range v.Spec.RouteTableIDs {
		r, err := m.cfg.Client.DescribeRoute(ctx, table, v.Spec.CIDR)
		switch {
		case errors.Is(err, awsec2.ErrNoRoute):
			return false, fmt.Sprintf("describe shows no route for %s in %s", v.Spec.CIDR, table), nil
		case err != nil:
			return false, "", err
		case r.NetworkInterfaceID != eni:
			return false, fmt.Sprintf("describe shows %s in %s at %q", v.Spec.CIDR, table, r.NetworkInterfaceID), nil
		}
	}
	return true, "", nil
}
