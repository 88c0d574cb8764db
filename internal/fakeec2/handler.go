package fakeec2

import (
	"encoding/xml"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

const apiVersion = "2016-11-15"

// apiError is an EC2 error answer: status, code and message.
type apiError struct {
	status  int
	code    string
	message string
}

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func invalidParam(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, "InvalidParameterValue", format, args...)
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, errorf(http.StatusBadRequest, "InvalidAction", "the EC2 query API takes POST, not %s", r.Method))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		writeError(w, invalidParam("malformed form: %v", err))
		return
	}
	f := r.PostForm
	action := f.Get("Action")
	if v := f.Get("Version"); v != apiVersion {
		writeError(w, errorf(http.StatusBadRequest, "InvalidAction", "version %q not supported (want %s)", v, apiVersion))
		return
	}
	var (
		body any
		aerr *apiError
	)
	s.mu.Lock()
	s.calls[action]++
	switch action {
	case ActionAssociateAddress, ActionDisassociateAddress, ActionDescribeAddresses, ActionDescribeInstances,
		ActionAssignPrivateIPAddresses, ActionDescribeNetworkInterfaces, ActionReplaceRoute, ActionCreateRoute, ActionDescribeRouteTables:
		page := 0
		if action == ActionDescribeInstances {
			page, _, aerr = parseToken(f.Get("NextToken"))
		}
		if aerr == nil {
			if ft := s.takeFault(action, page); ft != nil {
				aerr = errorf(ft.status, ft.code, "injected %s", ft.code)
			}
		}
		if aerr == nil {
			aerr = s.checkPermission(action, f.Get("DryRun") == "true")
		}
		if aerr == nil {
			switch action {
			case ActionAssociateAddress:
				body, aerr = s.associate(f)
			case ActionDisassociateAddress:
				body, aerr = s.disassociate(f)
			case ActionDescribeAddresses:
				body, aerr = s.describeAddresses(f)
			case ActionDescribeInstances:
				body, aerr = s.describeInstances(f)
			case ActionAssignPrivateIPAddresses:
				body, aerr = s.assignPrivateIPs(f)
			case ActionDescribeNetworkInterfaces:
				body, aerr = s.describeInterfaces(f)
			case ActionReplaceRoute:
				body, aerr = s.putRoute(f, false)
			case ActionCreateRoute:
				body, aerr = s.putRoute(f, true)
			case ActionDescribeRouteTables:
				body, aerr = s.describeRouteTables(f)
			}
		}
	default:
		aerr = errorf(http.StatusBadRequest, "InvalidAction", "the action %q is not valid for this web service", action)
	}
	s.mu.Unlock()
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	out, err := xml.Marshal(body)
	if err != nil {
		writeError(w, errorf(http.StatusInternalServerError, "InternalError", "encoding: %v", err))
		return
	}
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(out)
}

// checkPermission answers a DryRun the way EC2 does: DryRunOperation (412)
// when the call would have been allowed. Called with s.mu held.
func (s *Server) checkPermission(action string, dryRun bool) *apiError {
	if s.denied[action] {
		return errorf(http.StatusForbidden, "UnauthorizedOperation", "You are not authorized to perform this operation (%s).", action)
	}
	if dryRun {
		return errorf(http.StatusPreconditionFailed, "DryRunOperation", "Request would have succeeded, but DryRun flag is set.")
	}
	return nil
}

type xmlError struct {
	XMLName   xml.Name `xml:"Response"`
	Code      string   `xml:"Errors>Error>Code"`
	Message   string   `xml:"Errors>Error>Message"`
	RequestID string   `xml:"RequestID"`
}

func writeError(w http.ResponseWriter, e *apiError) {
	out, _ := xml.Marshal(xmlError{Code: e.code, Message: e.message, RequestID: "fake-request"})
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(e.status)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(out)
}

type associateResponse struct {
	XMLName       xml.Name `xml:"AssociateAddressResponse"`
	Xmlns         string   `xml:"xmlns,attr"`
	RequestID     string   `xml:"requestId"`
	Return        bool     `xml:"return"`
	AssociationID string   `xml:"associationId"`
}

func (s *Server) associate(f map[string][]string) (any, *apiError) {
	get := func(k string) string { return firstOf(f, k) }
	a, ok := s.addresses[get("AllocationId")]
	if !ok {
		return nil, errorf(http.StatusBadRequest, "InvalidAllocationID.NotFound", "The allocation ID '%s' does not exist", get("AllocationId"))
	}
	var in *Instance
	eni, instanceID, privateIP := get("NetworkInterfaceId"), get("InstanceId"), get("PrivateIpAddress")
	switch {
	case eni != "" && instanceID != "":
		return nil, invalidParam("give either InstanceId or NetworkInterfaceId, not both")
	case eni != "":
		for _, cand := range s.instances {
			if cand.ENI == eni {
				in = cand
			}
		}
		if in == nil {
			return nil, errorf(http.StatusBadRequest, "InvalidNetworkInterfaceID.NotFound", "The networkInterface ID '%s' does not exist", eni)
		}
	case instanceID != "":
		in = s.instances[instanceID]
		if in == nil {
			return nil, errorf(http.StatusBadRequest, "InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", instanceID)
		}
	default:
		return nil, errorf(http.StatusBadRequest, "MissingParameter", "either InstanceId or NetworkInterfaceId is required")
	}
	if in.State != StateRunning && in.State != StateStopped {
		return nil, errorf(http.StatusBadRequest, "IncorrectInstanceState", "The instance '%s' is not in a valid state for this operation", in.ID)
	}
	if privateIP == "" {
		privateIP = in.PrivateIP
	} else if privateIP != in.PrivateIP && !slices.Contains(in.SecondaryIPs, privateIP) {
		return nil, invalidParam("private IP %s is not assigned to %s", privateIP, in.ENI)
	}
	if a.cur.AssociationID != "" && get("AllowReassociation") != "true" {
		return nil, errorf(http.StatusBadRequest, "Resource.AlreadyAssociated", "resource %s is already associated with associate-id %s", a.cur.AllocationID, a.cur.AssociationID)
	}
	next := Address{
		AllocationID:       a.cur.AllocationID,
		PublicIP:           a.cur.PublicIP,
		AssociationID:      s.newAssociationID(),
		NetworkInterfaceID: in.ENI,
		PrivateIP:          privateIP,
		InstanceID:         in.ID,
	}
	s.change(a, next)
	return associateResponse{Xmlns: Namespace, RequestID: "fake-request", Return: true, AssociationID: next.AssociationID}, nil
}

// change records a change made through the API; DescribeAddresses keeps
// showing what it showed before for the configured lag.
func (s *Server) change(a *addressState, next Address) {
	now := s.now()
	if s.lag > 0 {
		// While an earlier change is still invisible, the older view stays.
		if !now.Before(a.visibleAt) {
			a.visible = a.cur
		}
		a.visibleAt = now.Add(s.lag)
	} else {
		a.visible, a.visibleAt = next, now
	}
	a.cur = next
}

type returnResponse struct {
	XMLName   xml.Name
	Xmlns     string `xml:"xmlns,attr"`
	RequestID string `xml:"requestId"`
	Return    bool   `xml:"return"`
}

func (s *Server) disassociate(f map[string][]string) (any, *apiError) {
	id := firstOf(f, "AssociationId")
	if id == "" {
		return nil, errorf(http.StatusBadRequest, "MissingParameter", "AssociationId is required")
	}
	for _, a := range s.addresses {
		if a.cur.AssociationID == id {
			s.change(a, Address{AllocationID: a.cur.AllocationID, PublicIP: a.cur.PublicIP})
			return returnResponse{XMLName: xml.Name{Local: "DisassociateAddressResponse"}, Xmlns: Namespace, RequestID: "fake-request", Return: true}, nil
		}
	}
	return nil, errorf(http.StatusBadRequest, "InvalidAssociationID.NotFound", "The association ID '%s' does not exist", id)
}

type xmlAddress struct {
	AllocationID       string `xml:"allocationId"`
	PublicIP           string `xml:"publicIp"`
	Domain             string `xml:"domain"`
	AssociationID      string `xml:"associationId,omitempty"`
	NetworkInterfaceID string `xml:"networkInterfaceId,omitempty"`
	PrivateIP          string `xml:"privateIpAddress,omitempty"`
	InstanceID         string `xml:"instanceId,omitempty"`
}

type describeAddressesResponse struct {
	XMLName   xml.Name     `xml:"DescribeAddressesResponse"`
	Xmlns     string       `xml:"xmlns,attr"`
	RequestID string       `xml:"requestId"`
	Addresses []xmlAddress `xml:"addressesSet>item"`
}

func (s *Server) describeAddresses(f map[string][]string) (any, *apiError) {
	ids := listParam(f, "AllocationId")
	if len(ids) == 0 {
		ids = slices.Sorted(maps.Keys(s.addresses))
	}
	now := s.now()
	resp := describeAddressesResponse{Xmlns: Namespace, RequestID: "fake-request"}
	for _, id := range ids {
		a, ok := s.addresses[id]
		if !ok {
			return nil, errorf(http.StatusBadRequest, "InvalidAllocationID.NotFound", "The allocation ID '%s' does not exist", id)
		}
		v := a.cur
		if now.Before(a.visibleAt) {
			v = a.visible
		}
		resp.Addresses = append(resp.Addresses, xmlAddress{
			AllocationID: v.AllocationID, PublicIP: v.PublicIP, Domain: "vpc",
			AssociationID: v.AssociationID, NetworkInterfaceID: v.NetworkInterfaceID,
			PrivateIP: v.PrivateIP, InstanceID: v.InstanceID,
		})
	}
	return resp, nil
}

// listParam reads a query-protocol list: Name.1, Name.2, ...
func listParam(f map[string][]string, name string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := f[name+"."+strconv.Itoa(i)]
		if !ok || len(v) == 0 {
			return out
		}
		out = append(out, v[0])
	}
}

type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

type xmlInstance struct {
	InstanceID string `xml:"instanceId"`
	State      struct {
		Code int    `xml:"code"`
		Name string `xml:"name"`
	} `xml:"instanceState"`
	PrivateIP string `xml:"privateIpAddress,omitempty"`
	Placement struct {
		AvailabilityZone string `xml:"availabilityZone"`
	} `xml:"placement"`
	Tags []xmlTag `xml:"tagSet>item"`
}

type xmlReservation struct {
	ReservationID string        `xml:"reservationId"`
	Instances     []xmlInstance `xml:"instancesSet>item"`
}

type describeInstancesResponse struct {
	XMLName      xml.Name         `xml:"DescribeInstancesResponse"`
	Xmlns        string           `xml:"xmlns,attr"`
	RequestID    string           `xml:"requestId"`
	Reservations []xmlReservation `xml:"reservationSet>item"`
	NextToken    string           `xml:"nextToken,omitempty"`
}

var stateCodes = map[string]int{StatePending: 0, StateRunning: 16, "shutting-down": 32, StateTerminated: 48, StateStopping: 64, StateStopped: 80}

// filter is one DescribeInstances filter: the instance matches when any
// value matches.
type filter struct {
	name   string
	values []string
}

func (fl filter) match(in *Instance) bool {
	var have string
	switch {
	case fl.name == "instance-state-name":
		have = in.State
	case strings.HasPrefix(fl.name, "tag:"):
		v, ok := in.Tags[strings.TrimPrefix(fl.name, "tag:")]
		if !ok {
			return false
		}
		have = v
	}
	return slices.Contains(fl.values, have)
}

func parseFilters(f map[string][]string) ([]filter, *apiError) {
	var out []filter
	for i := 1; ; i++ {
		p := "Filter." + strconv.Itoa(i)
		name, ok := f[p+".Name"]
		if !ok || len(name) == 0 {
			return out, nil
		}
		fl := filter{name: name[0], values: listParam(f, p+".Value")}
		if fl.name != "instance-state-name" && (!strings.HasPrefix(fl.name, "tag:") || len(fl.name) == len("tag:")) {
			return nil, invalidParam("The filter '%s' is invalid", fl.name)
		}
		if len(fl.values) == 0 {
			return nil, invalidParam("The filter '%s' has no values", fl.name)
		}
		out = append(out, fl)
	}
}

// parseToken reads a NextToken: "" is page 1 at offset 0.
func parseToken(tok string) (page, offset int, aerr *apiError) {
	if tok == "" {
		return 1, 0, nil
	}
	if _, err := fmt.Sscanf(tok, "p%d-o%d", &page, &offset); err != nil || page < 2 || offset < 0 {
		return 0, 0, invalidParam("The token '%s' is invalid", tok)
	}
	return page, offset, nil
}

func (s *Server) describeInstances(f map[string][]string) (any, *apiError) {
	filters, aerr := parseFilters(f)
	if aerr != nil {
		return nil, aerr
	}
	page, offset, aerr := parseToken(firstOf(f, "NextToken"))
	if aerr != nil {
		return nil, aerr
	}
	limit := 1000
	if v := firstOf(f, "MaxResults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 5 || n > 1000 {
			return nil, invalidParam("MaxResults must be between 5 and 1000, got %q", v)
		}
		limit = n
	}
	if s.pageSize > 0 {
		limit = min(limit, s.pageSize)
	}
	var matched []*Instance
	for _, id := range slices.Sorted(maps.Keys(s.instances)) {
		in := s.instances[id]
		ok := true
		for _, fl := range filters {
			if !fl.match(in) {
				ok = false
				break
			}
		}
		if ok {
			matched = append(matched, in)
		}
	}
	resp := describeInstancesResponse{Xmlns: Namespace, RequestID: "fake-request"}
	end := min(offset+limit, len(matched))
	for i := min(offset, len(matched)); i < end; i++ {
		in := matched[i]
		xi := xmlInstance{InstanceID: in.ID, PrivateIP: in.PrivateIP}
		xi.State.Name, xi.State.Code = in.State, stateCodes[in.State]
		xi.Placement.AvailabilityZone = in.Zone
		for _, k := range slices.Sorted(maps.Keys(in.Tags)) {
			xi.Tags = append(xi.Tags, xmlTag{Key: k, Value: in.Tags[k]})
		}
		resp.Reservations = append(resp.Reservations, xmlReservation{ReservationID: "r-" + in.ID, Instances: []xmlInstance{xi}})
	}
	if end < len(matched) {
		resp.NextToken = fmt.Sprintf("p%d-o%d", page+1, end)
	}
	return resp, nil
}

func firstOf(f map[string][]string, k string) string {
	if v := f[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}
