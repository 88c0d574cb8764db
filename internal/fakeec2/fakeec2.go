package fakeec2

import (
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// Namespace is the XML namespace of EC2 API version 2016-11-15.
const Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"

// The actions the fake answers.
const (
	ActionAssociateAddress    = "AssociateAddress"
	ActionDisassociateAddress = "DisassociateAddress"
	ActionDescribeAddresses   = "DescribeAddresses"
	ActionDescribeInstances   = "DescribeInstances"
)

// Instance states as EC2 names them.
const (
	StatePending    = "pending"
	StateRunning    = "running"
	StateStopping   = "stopping"
	StateStopped    = "stopped"
	StateTerminated = "terminated"
)

// Instance is an EC2 instance as the fake keeps it. ENI is its primary
// network interface; PrivateIP the interface's primary address. A
// secondary address moves only between interfaces of one Subnet (no check
// when either is "").
type Instance struct {
	ID           string
	PrivateIP    string
	SecondaryIPs []string
	ENI          string
	Subnet       string
	Zone         string
	State        string
	Tags         map[string]string
}

// Address is an Elastic IP and its association, if any.
type Address struct {
	AllocationID       string
	PublicIP           string
	AssociationID      string
	NetworkInterfaceID string
	PrivateIP          string
	InstanceID         string
}

// Server is a running fake EC2 endpoint.
type Server struct {
	srv *httptest.Server

	mu        sync.Mutex
	now       func() time.Time
	instances map[string]*Instance
	addresses map[string]*addressState
	nextAssoc int
	calls     map[string]int
	denied    map[string]bool
	faults    []*fault
	pageSize  int
	lag       time.Duration
	priv      privateState
}

// addressState is an address with what DescribeAddresses shows of it while
// a recent change has not yet become visible.
type addressState struct {
	cur       Address
	visible   Address   // shown until visibleAt
	visibleAt time.Time // when cur becomes visible to DescribeAddresses
}

type fault struct {
	action string // "" matches every action
	page   int    // DescribeInstances page (1-based); 0 matches any request
	status int
	code   string
	left   int // answers still to fail; < 0 means until cleared
}

// New starts a fake on 127.0.0.1 and stops it when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		now:       time.Now,
		instances: map[string]*Instance{},
		addresses: map[string]*addressState{},
		calls:     map[string]int{},
		denied:    map[string]bool{},
	}
	s.priv.init()
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the endpoint to give the SDK as its base endpoint.
func (s *Server) URL() string { return s.srv.URL }

// SetClock replaces the clock used for describe lag.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// SetDescribeLag makes DescribeAddresses, DescribeNetworkInterfaces and
// DescribeRouteTables show the previous state of an address, an interface
// or a route for d after every change made through the API, as EC2's
// eventual consistency does. Changes made with MoveAddress, MovePrivateIP
// and SetRoute are visible at once.
func (s *Server) SetDescribeLag(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lag = d
}

// SetPageSize caps the instances per DescribeInstances page below what the
// caller asked for (0: no cap), so small fleets paginate.
func (s *Server) SetPageSize(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pageSize = n
}

// AddInstance adds or replaces an instance. Empty fields get defaults:
// state running, ENI derived from the id.
func (s *Server) AddInstance(in Instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in.State == "" {
		in.State = StateRunning
	}
	if in.ENI == "" {
		in.ENI = "eni-" + in.ID
	}
	in.Tags = maps.Clone(in.Tags)
	in.SecondaryIPs = slices.Clone(in.SecondaryIPs)
	s.instances[in.ID] = &in
}

// RemoveInstance deletes an instance from every listing.
func (s *Server) RemoveInstance(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.instances, id)
}

// SetTags replaces an instance's tags.
func (s *Server) SetTags(id string, tags map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in, ok := s.instances[id]; ok {
		in.Tags = maps.Clone(tags)
	}
}

// SetState changes an instance's state (running, stopped, ...).
func (s *Server) SetState(id, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in, ok := s.instances[id]; ok {
		in.State = state
	}
}

// Instances returns a copy of every instance, by id.
func (s *Server) Instances() []Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Instance, 0, len(s.instances))
	for _, id := range slices.Sorted(maps.Keys(s.instances)) {
		in := *s.instances[id]
		in.Tags = maps.Clone(in.Tags)
		out = append(out, in)
	}
	return out
}

// AddAddress allocates an unassociated Elastic IP.
func (s *Server) AddAddress(allocationID, publicIP string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := Address{AllocationID: allocationID, PublicIP: publicIP}
	s.addresses[allocationID] = &addressState{cur: a, visible: a}
}

// Address returns the true current state of an address (no lag).
func (s *Server) Address(allocationID string) (Address, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.addresses[allocationID]
	if !ok {
		return Address{}, false
	}
	return a.cur, true
}

// MoveAddress associates an address with an instance's primary interface
// behind the API's back, as an operator in the console would (drift). An
// empty instanceID disassociates it. It reports false for unknown ids.
func (s *Server) MoveAddress(allocationID, instanceID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.addresses[allocationID]
	if !ok {
		return false
	}
	next := Address{AllocationID: a.cur.AllocationID, PublicIP: a.cur.PublicIP}
	if instanceID != "" {
		in, ok := s.instances[instanceID]
		if !ok {
			return false
		}
		next.AssociationID = s.newAssociationID()
		next.NetworkInterfaceID = in.ENI
		next.PrivateIP = in.PrivateIP
		next.InstanceID = in.ID
	}
	a.cur, a.visible, a.visibleAt = next, next, time.Time{}
	return true
}

// Deny makes the actions answer UnauthorizedOperation (403), with DryRun
// and without.
func (s *Server) Deny(actions ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range actions {
		s.denied[a] = true
	}
}

// Throttle makes the next n calls of action ("" for any) answer
// RequestLimitExceeded with status 503, as EC2 does; n < 0 until
// ClearFaults.
func (s *Server) Throttle(action string, n int) {
	s.addFault(&fault{action: action, status: http.StatusServiceUnavailable, code: "RequestLimitExceeded", left: n})
}

// FailInternal makes the next n calls of action ("" for any) answer
// InternalError with status 500; n < 0 until ClearFaults.
func (s *Server) FailInternal(action string, n int) {
	s.addFault(&fault{action: action, status: http.StatusInternalServerError, code: "InternalError", left: n})
}

// FailPage makes the next n requests for page `page` (1 is the first) of a
// DescribeInstances listing answer InternalError (500); n < 0 until
// ClearFaults. Earlier pages succeed, so the caller holds a partial listing.
func (s *Server) FailPage(page, n int) {
	s.addFault(&fault{action: ActionDescribeInstances, page: page, status: http.StatusInternalServerError, code: "InternalError", left: n})
}

// ClearFaults removes every injected fault and denial.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
	s.denied = map[string]bool{}
}

func (s *Server) addFault(f *fault) {
	if f.left == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
}

// Calls returns how many requests for action arrived (failed ones included).
func (s *Server) Calls(action string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[action]
}

// ResetCalls sets every call count back to zero.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = map[string]int{}
}

func (s *Server) newAssociationID() string {
	s.nextAssoc++
	return fmt.Sprintf("eipassoc-%08x", s.nextAssoc)
}

// takeFault returns the first matching injected fault, consuming one of
// its answers. Called with s.mu held.
func (s *Server) takeFault(action string, page int) *fault {
	for i, f := range s.faults {
		if f.action != "" && f.action != action {
			continue
		}
		if f.page != 0 && f.page != page {
			continue
		}
		if f.left > 0 {
			f.left--
			if f.left == 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
		}
		return f
	}
	return nil
}
