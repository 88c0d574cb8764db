package awsec2

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
)

// The actions the private-address movers call.
const (
	ActionAssignPrivateIPAddresses  = "AssignPrivateIpAddresses"
	ActionDescribeNetworkInterfaces = "DescribeNetworkInterfaces"
	ActionReplaceRoute              = "ReplaceRoute"
	ActionCreateRoute               = "CreateRoute"
	ActionDescribeRouteTables       = "DescribeRouteTables"
)

// ErrNoRoute: the route table exists but has no route for the CIDR
// (CreateRoute adds one). A missing table is ErrNotFound.
var ErrNoRoute = errors.New("no route for the destination")

// Route is a route-table entry for one destination CIDR.
type Route struct {
	RouteTableID       string
	CIDR               string
	NetworkInterfaceID string // "" when the route points elsewhere (a gateway, an instance)
	State              string // active | blackhole
}

// AssignPrivateIP makes ip a secondary private address of the network
// interface, taking it from the interface that has it now (same subnet).
func (c *Client) AssignPrivateIP(ctx context.Context, eni, ip string) error {
	_, err := c.ec2.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{
		NetworkInterfaceId: aws.String(eni),
		PrivateIpAddresses: []string{ip},
		AllowReassignment:  aws.Bool(true),
	})
	return wrap("AssignPrivateIpAddresses", err)
}

// InterfaceIPs returns the private addresses EC2 shows on the network
// interface now, primary first; after a change it may show the previous
// state for a while (eventual consistency).
func (c *Client) InterfaceIPs(ctx context.Context, eni string) ([]string, error) {
	res, err := c.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{NetworkInterfaceIds: []string{eni}})
	if err != nil {
		return nil, wrap("DescribeNetworkInterfaces", err)
	}
	for _, ni := range res.NetworkInterfaces {
		if aws.ToString(ni.NetworkInterfaceId) != eni {
			continue
		}
		var out []string
		for _, a := range ni.PrivateIpAddresses {
			if aws.ToBool(a.Primary) {
				out = append([]string{aws.ToString(a.PrivateIpAddress)}, out...)
			} else {
				out = append(out, aws.ToString(a.PrivateIpAddress))
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("awsec2: DescribeNetworkInterfaces %s: %w", eni, ErrNotFound)
}

// ReplaceRoute points the route for cidr in the table at the network
// interface. EC2 refuses it when the table has no such route: see
// CreateRoute.
func (c *Client) ReplaceRoute(ctx context.Context, routeTableID, cidr, eni string) error {
	in := &ec2.ReplaceRouteInput{RouteTableId: aws.String(routeTableID), NetworkInterfaceId: aws.String(eni)}
	if isIPv6(cidr) {
		in.DestinationIpv6CidrBlock = aws.String(cidr)
	} else {
		in.DestinationCidrBlock = aws.String(cidr)
	}
	_, err := c.ec2.ReplaceRoute(ctx, in)
	return wrap("ReplaceRoute", err)
}

// CreateRoute adds a route for cidr to the table, pointing at the network
// interface. EC2 refuses it when the table has one already.
func (c *Client) CreateRoute(ctx context.Context, routeTableID, cidr, eni string) error {
	in := &ec2.CreateRouteInput{RouteTableId: aws.String(routeTableID), NetworkInterfaceId: aws.String(eni)}
	if isIPv6(cidr) {
		in.DestinationIpv6CidrBlock = aws.String(cidr)
	} else {
		in.DestinationCidrBlock = aws.String(cidr)
	}
	_, err := c.ec2.CreateRoute(ctx, in)
	return wrap("CreateRoute", err)
}

// DescribeRoute returns the table's route for cidr as EC2 shows it now;
// the error wraps ErrNoRoute when the table has none, ErrNotFound when the
// table does not exist.
func (c *Client) DescribeRoute(ctx context.Context, routeTableID, cidr string) (Route, error) {
	res, err := c.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{RouteTableIds: []string{routeTableID}})
	if err != nil {
		return Route{}, wrap("DescribeRouteTables", err)
	}
	want, err := netip.ParsePrefix(cidr)
	if err != nil {
		return Route{}, fmt.Errorf("awsec2: DescribeRouteTables %s: cidr %q: %w", routeTableID, cidr, err)
	}
	for _, rt := range res.RouteTables {
		if aws.ToString(rt.RouteTableId) != routeTableID {
			continue
		}
		for _, r := range rt.Routes {
			if samePrefix(r, want) {
				return Route{RouteTableID: routeTableID, CIDR: cidr,
					NetworkInterfaceID: aws.ToString(r.NetworkInterfaceId), State: string(r.State)}, nil
			}
		}
		return Route{}, fmt.Errorf("awsec2: route table %s has no route for %s: %w", routeTableID, cidr, ErrNoRoute)
	}
	return Route{}, fmt.Errorf("awsec2: DescribeRouteTables %s: %w", routeTableID, ErrNotFound)
}

func samePrefix(r types.Route, want netip.Prefix) bool {
	dest := aws.ToString(r.DestinationCidrBlock)
	if dest == "" {
		dest = aws.ToString(r.DestinationIpv6CidrBlock)
	}
	p, err := netip.ParsePrefix(dest)
	return err == nil && p.Masked() == want.Masked()
}

func isIPv6(cidr string) bool {
	p, err := netip.ParsePrefix(cidr)
	return err == nil && p.Addr().Is6() && !p.Addr().Is4In6()
}

// probePrivate answers CheckPermissions for the private-address actions;
// known is false for an action it does not know.
//
// AssignPrivateIpAddresses takes no DryRun. It is probed on an interface
// id that cannot exist: EC2 authorizes before it looks the interface up,
// so a denied action answers UnauthorizedOperation and an allowed one
// InvalidNetworkInterfaceID.NotFound, and nothing changes either way.
func (c *Client) probePrivate(ctx context.Context, action string) (known bool, err error) {
	const eni, rtb, cidr = "eni-00000000000000000", "rtb-00000000000000000", "192.0.2.0/32"
	switch action {
	case ActionAssignPrivateIPAddresses:
		_, err = c.ec2.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{
			NetworkInterfaceId: aws.String(eni), PrivateIpAddresses: []string{"192.0.2.1"}, AllowReassignment: aws.Bool(true)})
		if code := errorCode(err); code == "InvalidNetworkInterfaceID.NotFound" || code == "InvalidNetworkInterfaceID.Malformed" {
			err = &smithy.GenericAPIError{Code: "DryRunOperation", Message: "allowed: the placeholder interface was looked up"}
		}
	case ActionDescribeNetworkInterfaces:
		_, err = c.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{DryRun: aws.Bool(true)})
	case ActionReplaceRoute:
		_, err = c.ec2.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{DryRun: aws.Bool(true),
			RouteTableId: aws.String(rtb), DestinationCidrBlock: aws.String(cidr), NetworkInterfaceId: aws.String(eni)})
	case ActionCreateRoute:
		_, err = c.ec2.CreateRoute(ctx, &ec2.CreateRouteInput{DryRun: aws.Bool(true),
			RouteTableId: aws.String(rtb), DestinationCidrBlock: aws.String(cidr), NetworkInterfaceId: aws.String(eni)})
	case ActionDescribeRouteTables:
		_, err = c.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{DryRun: aws.Bool(true)})
	default:
		return false, nil
	}
	return true, err
}
