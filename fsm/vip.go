package fsm

import "slices"

// MayHold reports whether node may hold a VIP of this spec: any member
// when Candidates is empty, else a candidate or the home node. The VIP
// controller, the admin API (operator moves) and the data plane (which
// addresses to listen on) all ask it.
func (s *VIPSpec) MayHold(node string) bool {
	return len(s.Candidates) == 0 || node == s.HomeNode || slices.Contains(s.Candidates, node)
}
