package fsm

import (
	"fmt"
	"net/netip"
	"slices"
)

// validateVIPPrivate checks the fields of the aws-private-ip and aws-route
// providers.
func validateVIPPrivate(p string, s *VIPSpec) error {
	for _, f := range []struct{ field, v string }{
		{"allocation_id", s.AllocationID}, {"address", s.Address}, {"interface", s.Interface},
	} {
		if f.v != "" {
			return invalidf(p+"."+f.field, "not used by provider %s", s.Provider)
		}
	}
	switch s.Provider {
	case ProviderAWSPrivateIP:
		if s.PrivateIP == "" {
			return invalidf(p+".private_ip", "required with provider %s (the secondary address that moves, e.g. 10.0.1.100)", ProviderAWSPrivateIP)
		}
		a, err := netip.ParseAddr(s.PrivateIP)
		if err != nil || !a.Is4() {
			return invalidf(p+".private_ip", "%q is not an IPv4 address", clip(s.PrivateIP))
		}
		if !a.IsPrivate() {
			return invalidf(p+".private_ip", "%s is not a private address (10/8, 172.16/12, 192.168/16)", a)
		}
	case ProviderAWSRoute:
		if len(s.RouteTableIDs) == 0 {
			return invalidf(p+".route_table_ids", "required with provider %s (the tables whose subnets reach the address)", ProviderAWSRoute)
		}
		if err := maxItems(p+".route_table_ids", len(s.RouteTableIDs), maxRouteTables); err != nil {
			return err
		}
		for i, id := range s.RouteTableIDs {
			f := fmt.Sprintf("%s.route_table_ids[%d]", p, i)
			if !awsID(id, "rtb-") {
				return invalidf(f, "%q is not a route table id like rtb-0123456789abcdef0", clip(id))
			}
			if j := slices.Index(s.RouteTableIDs[:i], id); j >= 0 {
				return invalidf(f, "%q is already route_table_ids[%d]", id, j)
			}
		}
		if s.CIDR == "" {
			return invalidf(p+".cidr", "required with provider %s (e.g. 10.200.0.10/32, outside the VPC's own ranges)", ProviderAWSRoute)
		}
		pfx, err := netip.ParsePrefix(s.CIDR)
		if err != nil {
			return invalidf(p+".cidr", "%q is not in CIDR form (e.g. 10.200.0.10/32)", clip(s.CIDR))
		}
		if pfx != pfx.Masked() {
			return invalidf(p+".cidr", "%s has host bits set; did you mean %s?", pfx, pfx.Masked())
		}
	}
	if err := maxItems(p+".enis", len(s.ENIs), maxENIs); err != nil {
		return err
	}
	for _, node := range sortedKeys(s.ENIs) {
		f := p + ".enis." + clip(node)
		if err := validateNodeID(f, node); err != nil {
			return err
		}
		if err := CheckENI(s.ENIs[node]); err != nil {
			return reField(f, err)
		}
	}
	return nil
}

// onlyWithPrivate refuses the aws-private-ip and aws-route fields with
// the other providers.
func onlyWithPrivate(p string, s *VIPSpec) error {
	if s.Provider == ProviderAWSPrivateIP || s.Provider == ProviderAWSRoute {
		if s.Provider == ProviderAWSPrivateIP && (len(s.RouteTableIDs) > 0 || s.CIDR != "") {
			field := "route_table_ids"
			if s.CIDR != "" {
				field = "cidr"
			}
			return invalidf(p+"."+field, "only valid with provider %s", ProviderAWSRoute)
		}
		if s.Provider == ProviderAWSRoute && s.PrivateIP != "" {
			return invalidf(p+".private_ip", "only valid with provider %s", ProviderAWSPrivateIP)
		}
		return nil
	}
	switch {
	case s.PrivateIP != "":
		return invalidf(p+".private_ip", "only valid with provider %s", ProviderAWSPrivateIP)
	case len(s.RouteTableIDs) > 0:
		return invalidf(p+".route_table_ids", "only valid with provider %s", ProviderAWSRoute)
	case s.CIDR != "":
		return invalidf(p+".cidr", "only valid with provider %s", ProviderAWSRoute)
	case len(s.ENIs) > 0:
		return invalidf(p+".enis", "only valid with providers %s and %s", ProviderAWSPrivateIP, ProviderAWSRoute)
	}
	return nil
}

// clip shortens a refused value for the error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// ENI is the network interface node uses for this VIP: the spec's enis
// entry for it, else the node's own.
func (s *VIPSpec) ENI(node *Node) string {
	if e, ok := s.ENIs[node.ID]; ok {
		return e
	}
	return node.ENI
}

// samePrivateTarget reports why two VIP specs would fight over one cloud
// resource: the same secondary address, or a route for the same CIDR in
// the same table. "" when they do not.
func samePrivateTarget(a, b *VIPSpec) (field, msg string) {
	if a.PrivateIP != "" && a.PrivateIP == b.PrivateIP {
		return "private_ip", a.PrivateIP
	}
	if a.CIDR == "" || b.CIDR == "" {
		return "", ""
	}
	pa, errA := netip.ParsePrefix(a.CIDR)
	pb, errB := netip.ParsePrefix(b.CIDR)
	if errA != nil || errB != nil || pa.Masked() != pb.Masked() {
		return "", ""
	}
	for _, t := range a.RouteTableIDs {
		if slices.Contains(b.RouteTableIDs, t) {
			return "cidr", fmt.Sprintf("%s in %s", pa.Masked(), t)
		}
	}
	return "", ""
}
