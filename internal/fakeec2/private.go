package fakeec2

import (
	"encoding/xml"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"time"
)

// The private-address actions the fake answers.
const (
	ActionAssignPrivateIPAddresses  = "AssignPrivateIpAddresses"
	ActionDescribeNetworkInterfaces = "DescribeNetworkInterfaces"
	ActionReplaceRoute              = "ReplaceRoute"
	ActionCreateRoute               = "CreateRoute"
	ActionDescribeRouteTables       = "DescribeRouteTables"
)

// privateState is the fake's network interfaces and route tables as
// DescribeNetworkInterfaces and DescribeRouteTables show them while a
// recent change is not yet visible. The true secondary addresses live in
// Instance.SecondaryIPs (on the instance's ENI), the true routes in
// tables.
type privateState struct {
	ifaceViews map[string]lagged[[]string] // ENI -> secondary IPs shown
	tables     map[string]map[netip.Prefix]string
	routeViews map[routeKey]lagged[string] // -> ENI shown ("" none)
}

type routeKey struct {
	table string
	cidr  netip.Prefix
}

// lagged is what a describe shows until visibleAt.
type lagged[T any] struct {
	visible   T
	visibleAt time.Time
}

func (p *privateState) init() {
	p.ifaceViews = map[string]lagged[[]string]{}
	p.tables = map[string]map[netip.Prefix]string{}
	p.routeViews = map[routeKey]lagged[string]{}
}

// AddRouteTable creates an empty route table (a no-op when it exists).
func (s *Server) AddRouteTable(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.priv.tables[id]; !ok {
		s.priv.tables[id] = map[netip.Prefix]string{}
	}
}

// Route returns the true target of a route (no lag): the network
// interface, and false when the table has no route for cidr.
func (s *Server) Route(table, cidr string) (eni string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return "", false
	}
	eni, ok = s.priv.tables[table][p.Masked()]
	return eni, ok
}

// SetRoute points a route at a network interface behind the API's back,
// as an operator in the console would (drift); visible at once. It
// reports false for an unknown table or a malformed cidr.
func (s *Server) SetRoute(table, cidr, eni string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := netip.ParsePrefix(cidr)
	rt, ok := s.priv.tables[table]
	if err != nil || !ok {
		return false
	}
	rt[p.Masked()] = eni
	delete(s.priv.routeViews, routeKey{table, p.Masked()})
	return true
}

// SecondaryIPs returns the true secondary addresses of the instance that
// owns the network interface (no lag).
func (s *Server) SecondaryIPs(eni string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.byENI(eni); in != nil {
		return slices.Clone(in.SecondaryIPs)
	}
	return nil
}

// MovePrivateIP makes ip a secondary address of eni behind the API's
// back (drift), taking it from any other interface; visible at once. It
// reports false for an unknown interface.
func (s *Server) MovePrivateIP(ip, eni string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	to := s.byENI(eni)
	if to == nil {
		return false
	}
	for _, in := range s.instances {
		in.SecondaryIPs = slices.DeleteFunc(in.SecondaryIPs, func(a string) bool { return a == ip })
		delete(s.priv.ifaceViews, in.ENI)
	}
	to.SecondaryIPs = append(to.SecondaryIPs, ip)
	return true
}

// byENI finds the instance whose interface is eni. Called with s.mu held.
func (s *Server) byENI(eni string) *Instance {
	for _, id := range slices.Sorted(maps.Keys(s.instances)) {
		if in := s.instances[id]; in.ENI == eni {
			return in
		}
	}
	return nil
}

// laggedChange starts the describe lag of a change, keeping what was shown
// before while an earlier change is still invisible.
func laggedChange[T any](views map[string]lagged[T], key string, before T, now time.Time, lag time.Duration) {
	if lag <= 0 {
		delete(views, key)
		return
	}
	v, ok := views[key]
	if !ok || !now.Before(v.visibleAt) {
		v.visible = before
	}
	v.visibleAt = now.Add(lag)
	views[key] = v
}

func notFoundENI(eni string) *apiError {
	return errorf(http.StatusBadRequest, "InvalidNetworkInterfaceID.NotFound", "The networkInterface ID '%s' does not exist", eni)
}

func (s *Server) assignPrivateIPs(f map[string][]string) (any, *apiError) {
	eni := firstOf(f, "NetworkInterfaceId")
	if eni == "" {
		return nil, errorf(http.StatusBadRequest, "MissingParameter", "NetworkInterfaceId is required")
	}
	to := s.byENI(eni)
	if to == nil {
		return nil, notFoundENI(eni)
	}
	ips := listParam(f, "PrivateIpAddress")
	if len(ips) == 0 {
		return nil, invalidParam("give PrivateIpAddress (this fake does not pick addresses)")
	}
	now := s.now()
	for _, ip := range ips {
		if _, err := netip.ParseAddr(ip); err != nil {
			return nil, invalidParam("%s is not a valid IP address", ip)
		}
		if ip == to.PrivateIP || slices.Contains(to.SecondaryIPs, ip) {
			continue
		}
		var from *Instance
		for _, in := range s.instances {
			if in.PrivateIP == ip {
				return nil, invalidParam("address %s is the primary address of %s", ip, in.ENI)
			}
			if slices.Contains(in.SecondaryIPs, ip) {
				from = in
			}
		}
		if from != nil {
			if firstOf(f, "AllowReassignment") != "true" {
				return nil, invalidParam("address %s is assigned to %s; pass AllowReassignment", ip, from.ENI)
			}
			if from.Subnet != "" && to.Subnet != "" && from.Subnet != to.Subnet {
				return nil, invalidParam("address %s is not in the subnet of %s", ip, eni)
			}
			laggedChange(s.priv.ifaceViews, from.ENI, slices.Clone(from.SecondaryIPs), now, s.lag)
			from.SecondaryIPs = slices.DeleteFunc(from.SecondaryIPs, func(a string) bool { return a == ip })
		}
		laggedChange(s.priv.ifaceViews, to.ENI, slices.Clone(to.SecondaryIPs), now, s.lag)
		to.SecondaryIPs = append(to.SecondaryIPs, ip)
	}
	type assigned struct {
		IP string `xml:"privateIpAddress"`
	}
	resp := struct {
		XMLName   xml.Name   `xml:"AssignPrivateIpAddressesResponse"`
		Xmlns     string     `xml:"xmlns,attr"`
		RequestID string     `xml:"requestId"`
		Return    bool       `xml:"return"`
		ENI       string     `xml:"networkInterfaceId"`
		Assigned  []assigned `xml:"assignedPrivateIpAddressesSet>item"`
	}{Xmlns: Namespace, RequestID: "fake-request", Return: true, ENI: eni}
	for _, ip := range ips {
		resp.Assigned = append(resp.Assigned, assigned{ip})
	}
	return resp, nil
}

type xmlPrivateIP struct {
	IP      string `xml:"privateIpAddress"`
	Primary bool   `xml:"primary"`
}

type xmlInterface struct {
	ID        string         `xml:"networkInterfaceId"`
	Zone      string         `xml:"availabilityZone"`
	PrivateIP string         `xml:"privateIpAddress"`
	Status    string         `xml:"status"`
	IPs       []xmlPrivateIP `xml:"privateIpAddressesSet>item"`
}

func (s *Server) describeInterfaces(f map[string][]string) (any, *apiError) {
	ids := listParam(f, "NetworkInterfaceId")
	if len(ids) == 0 {
		for _, in := range s.instances {
			ids = append(ids, in.ENI)
		}
		slices.Sort(ids)
	}
	now := s.now()
	resp := struct {
		XMLName    xml.Name       `xml:"DescribeNetworkInterfacesResponse"`
		Xmlns      string         `xml:"xmlns,attr"`
		RequestID  string         `xml:"requestId"`
		Interfaces []xmlInterface `xml:"networkInterfaceSet>item"`
	}{Xmlns: Namespace, RequestID: "fake-request"}
	for _, id := range ids {
		in := s.byENI(id)
		if in == nil {
			return nil, notFoundENI(id)
		}
		secondary := in.SecondaryIPs
		if v, ok := s.priv.ifaceViews[id]; ok && now.Before(v.visibleAt) {
			secondary = v.visible
		}
		xi := xmlInterface{ID: id, Zone: in.Zone, PrivateIP: in.PrivateIP, Status: "in-use",
			IPs: []xmlPrivateIP{{IP: in.PrivateIP, Primary: true}}}
		for _, ip := range secondary {
			xi.IPs = append(xi.IPs, xmlPrivateIP{IP: ip})
		}
		resp.Interfaces = append(resp.Interfaces, xi)
	}
	return resp, nil
}

// routeArgs reads RouteTableId, the destination and NetworkInterfaceId of
// ReplaceRoute and CreateRoute.
func (s *Server) routeArgs(f map[string][]string) (table string, cidr netip.Prefix, eni string, aerr *apiError) {
	table = firstOf(f, "RouteTableId")
	if _, ok := s.priv.tables[table]; !ok {
		return "", netip.Prefix{}, "", errorf(http.StatusBadRequest, "InvalidRouteTableID.NotFound", "The routeTable ID '%s' does not exist", table)
	}
	dest := firstOf(f, "DestinationCidrBlock")
	if v6 := firstOf(f, "DestinationIpv6CidrBlock"); v6 != "" {
		if dest != "" {
			return "", netip.Prefix{}, "", invalidParam("give one destination, not both")
		}
		dest = v6
	}
	p, err := netip.ParsePrefix(dest)
	if err != nil {
		return "", netip.Prefix{}, "", invalidParam("Value (%s) for parameter destinationCidrBlock is invalid", dest)
	}
	eni = firstOf(f, "NetworkInterfaceId")
	if eni == "" {
		return "", netip.Prefix{}, "", errorf(http.StatusBadRequest, "MissingParameter", "a route target is required (this fake knows NetworkInterfaceId)")
	}
	if s.byENI(eni) == nil {
		return "", netip.Prefix{}, "", notFoundENI(eni)
	}
	return table, p.Masked(), eni, nil
}

func (s *Server) putRoute(f map[string][]string, create bool) (any, *apiError) {
	table, cidr, eni, aerr := s.routeArgs(f)
	if aerr != nil {
		return nil, aerr
	}
	rt := s.priv.tables[table]
	prev, exists := rt[cidr]
	name := "ReplaceRouteResponse"
	switch {
	case create && exists:
		return nil, errorf(http.StatusBadRequest, "RouteAlreadyExists", "The route identified by %s already exists.", cidr)
	case !create && !exists:
		return nil, invalidParam("There is no route defined for '%s' in the route table. Use CreateRoute instead.", cidr)
	case create:
		name = "CreateRouteResponse"
	}
	key := routeKey{table, cidr}
	if s.lag > 0 {
		now := s.now()
		v, ok := s.priv.routeViews[key]
		if !ok || !now.Before(v.visibleAt) {
			v.visible = prev
		}
		v.visibleAt = now.Add(s.lag)
		s.priv.routeViews[key] = v
	}
	rt[cidr] = eni
	return returnResponse{XMLName: xml.Name{Local: name}, Xmlns: Namespace, RequestID: "fake-request", Return: true}, nil
}

type xmlRoute struct {
	CIDR   string `xml:"destinationCidrBlock,omitempty"`
	CIDR6  string `xml:"destinationIpv6CidrBlock,omitempty"`
	ENI    string `xml:"networkInterfaceId,omitempty"`
	State  string `xml:"state"`
	Origin string `xml:"origin"`
}

type xmlRouteTable struct {
	ID     string     `xml:"routeTableId"`
	Routes []xmlRoute `xml:"routeSet>item"`
}

func (s *Server) describeRouteTables(f map[string][]string) (any, *apiError) {
	ids := listParam(f, "RouteTableId")
	if len(ids) == 0 {
		ids = slices.Sorted(maps.Keys(s.priv.tables))
	}
	now := s.now()
	resp := struct {
		XMLName   xml.Name        `xml:"DescribeRouteTablesResponse"`
		Xmlns     string          `xml:"xmlns,attr"`
		RequestID string          `xml:"requestId"`
		Tables    []xmlRouteTable `xml:"routeTableSet>item"`
	}{Xmlns: Namespace, RequestID: "fake-request"}
	for _, id := range ids {
		rt, ok := s.priv.tables[id]
		if !ok {
			return nil, errorf(http.StatusBadRequest, "InvalidRouteTableID.NotFound", "The routeTable ID '%s' does not exist", id)
		}
		xt := xmlRouteTable{ID: id}
		shown := maps.Clone(rt)
		for k, v := range s.priv.routeViews {
			if k.table == id && now.Before(v.visibleAt) {
				if v.visible == "" {
					delete(shown, k.cidr)
				} else {
					shown[k.cidr] = v.visible
				}
			}
		}
		cidrs := slices.SortedFunc(maps.Keys(shown), func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		for _, c := range cidrs {
			eni := shown[c]
			r := xmlRoute{ENI: eni, State: "active", Origin: "CreateRoute"}
			if s.byENI(eni) == nil {
				r.State = "blackhole"
			}
			if c.Addr().Is6() {
				r.CIDR6 = c.String()
			} else {
				r.CIDR = c.String()
			}
			xt.Routes = append(xt.Routes, r)
		}
		resp.Tables = append(resp.Tables, xt)
	}
	return resp, nil
}
