package vip

import (
	"cmp"
	"maps"
	"slices"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// Reasons for a move, as logged, written in the assignment and used as the
// metric label.
const (
	ReasonInitial     = "initial"             // the VIP had no holder
	ReasonUnreachable = "holder_unreachable"  // no Raft contact for the detection period
	ReasonRemoved     = "holder_removed"      // the holder left the cluster
	ReasonEvacuated   = "zone_evacuated"      // the holder's zone is evacuated
	ReasonFailback    = "failback"            // the home node is back for the hold-down period
	ReasonDrift       = "drift"               // the cloud disagreed with the assignment
	ReasonLeaving     = "holder_leaving"      // the holder is stopping and hands its VIPs over
	ReasonOperator    = "operator"            // an operator moved it (no failback follows)
	ReasonNotClaiming = "holder_not_claiming" // the holder did not add the address in time (ErrNotClaimed)
)

// Decision is one assignment the leader is about to write.
type Decision struct {
	VIP    string
	From   string // current holder, "" when none
	To     string
	Reason string
	// CAS is the token of the assignment being replaced (0: none), so a
	// concurrent write makes this one fail instead of overwriting it.
	CAS uint64
	// LostSince is when the cause began, when known: the lost holder's last
	// contact. Zero otherwise.
	LostSince time.Time
}

// planInput is everything a plan depends on; plan is a pure function of it.
type planInput struct {
	cfg      *fsm.Config
	alive    func(nodeID string) (bool, time.Time)
	now      time.Time
	holdDown time.Duration
	managed  func(*fsm.VIP) bool
	leaving  func(nodeID string) bool // nil: no node is leaving
	// avoid: the node failed to claim the VIP lately (ErrNotClaimed); it
	// is given the VIP only when no other node may hold it. nil: none.
	avoid func(vip, nodeID string) bool
	// missed: the holder of this assignment token did not claim it in
	// time, and the VIP should go to another node. nil: none did.
	missed func(vip string, token uint64) bool
}

// plan returns the assignments the leader should write now, in VIP name
// order, and the VIPs that need a new holder but have no usable node (To
// is ""). Targets spread VIPs evenly: each pick counts the decisions made
// before it.
func plan(in planInput) (moves, stuck []Decision) {
	cfg := in.cfg
	if cfg == nil || len(cfg.Nodes) == 0 {
		return nil, nil
	}
	// Liveness is asked once per node per plan so one plan sees one view.
	type live struct {
		ok    bool
		since time.Time
	}
	lives := make(map[string]live, len(cfg.Nodes))
	for id := range cfg.Nodes {
		ok, since := in.alive(id)
		lives[id] = live{ok, since}
	}
	evacuated := func(n *fsm.Node) bool {
		z, ok := cfg.Zones[n.Zone]
		return n.Zone != "" && ok && z.Evacuated
	}
	leaving := func(id string) bool { return in.leaving != nil && in.leaving(id) }
	avoided := func(vip, id string) bool { return in.avoid != nil && in.avoid(vip, id) }
	usable := func(id string) bool {
		n, ok := cfg.Nodes[id]
		return ok && lives[id].ok && !evacuated(n) && !leaving(id)
	}
	settled := func(id string) bool {
		return usable(id) && in.now.Sub(lives[id].since) >= in.holdDown
	}
	load := map[string]int{}
	for _, a := range cfg.Assignments {
		if a.Holder != "" {
			load[a.Holder]++
		}
	}
	// pick prefers nodes not avoided for v; an avoided one only when no
	// other may hold it.
	pick := func(v *fsm.VIP, avoidZone string) string {
		ids := slices.Collect(maps.Keys(cfg.Nodes))
		ids = slices.DeleteFunc(ids, func(id string) bool { return !v.Spec.MayHold(id) || !usable(id) })
		if len(ids) == 0 {
			return ""
		}
		slices.SortFunc(ids, func(a, b string) int {
			if avA, avB := avoided(v.Name, a), avoided(v.Name, b); avA != avB {
				if avA {
					return 1
				}
				return -1
			}
			sameA, sameB := avoidZone != "" && cfg.Nodes[a].Zone == avoidZone, avoidZone != "" && cfg.Nodes[b].Zone == avoidZone
			if sameA != sameB {
				if sameA {
					return 1
				}
				return -1
			}
			if c := cmp.Compare(load[a], load[b]); c != 0 {
				return c
			}
			return cmp.Compare(a, b)
		})
		return ids[0]
	}

	for _, name := range slices.Sorted(maps.Keys(cfg.VIPs)) {
		v := cfg.VIPs[name]
		if in.managed != nil && !in.managed(v) {
			continue
		}
		home := v.Spec.HomeNode
		d := Decision{VIP: name}
		a := cfg.Assignments[name]
		if a != nil {
			d.From, d.CAS = a.Holder, a.Token
		}
		holder, holderKnown := cfg.Nodes[d.From]
		switch {
		case d.From == "":
			d.Reason = ReasonInitial
			if usable(home) && !avoided(name, home) {
				d.To = home
			} else {
				d.To = pick(v, zoneOf(cfg, home))
			}
		case !holderKnown:
			d.Reason = ReasonRemoved
		case evacuated(holder):
			d.Reason = ReasonEvacuated
		case leaving(d.From):
			d.Reason = ReasonLeaving
		case !lives[d.From].ok:
			d.Reason, d.LostSince = ReasonUnreachable, lives[d.From].since
		case in.missed != nil && in.missed(name, a.Token):
			d.Reason = ReasonNotClaiming
		case d.From != home && failback(v) && a.Reason != ReasonOperator && settled(home) && !avoided(name, home):
			d.Reason, d.To = ReasonFailback, home
		default:
			continue // the holder is fine
		}
		if d.To == "" {
			if settled(home) && !avoided(name, home) {
				d.To = home
			} else {
				d.To = pick(v, zoneOf(cfg, d.From))
			}
		}
		if d.To == "" {
			stuck = append(stuck, d) // nowhere to go; the next plan tries again
			continue
		}
		if d.To == d.From {
			continue
		}
		if d.From != "" {
			load[d.From]--
		}
		load[d.To]++
		moves = append(moves, d)
	}
	return moves, stuck
}

func zoneOf(cfg *fsm.Config, id string) string {
	if n, ok := cfg.Nodes[id]; ok {
		return n.Zone
	}
	return ""
}

func failback(v *fsm.VIP) bool { return v.Spec.Failback == nil || *v.Spec.Failback }
