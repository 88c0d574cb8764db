package vip

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

func TestPlan(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	const holdDown = 30 * time.Second
	off := false
	nodes := map[string]*fsm.Node{
		"n1": {ID: "n1", Zone: "a"},
		"n2": {ID: "n2", Zone: "b"},
		"n3": {ID: "n3", Zone: "c"},
		"n4": {ID: "n4", Zone: "a"},
	}
	eip := func(name, home string, mod ...func(*fsm.VIPSpec)) *fsm.VIP {
		v := &fsm.VIP{Name: name, Spec: fsm.VIPSpec{Provider: fsm.ProviderAWSEIP, AllocationID: "eipalloc-" + name, HomeNode: home}}
		for _, f := range mod {
			f(&v.Spec)
		}
		return v
	}
	held := func(vip, holder string, token uint64) *fsm.Assignment {
		return &fsm.Assignment{VIP: vip, Holder: holder, Token: token}
	}
	type liveness map[string]time.Time // node -> alive since; absent: dead since now-1s
	settled := now.Add(-time.Hour)
	allLive := liveness{"n1": settled, "n2": settled, "n3": settled, "n4": settled}
	without := func(l liveness, ids ...string) liveness {
		out := liveness{}
		for k, v := range l {
			if !slices.Contains(ids, k) {
				out[k] = v
			}
		}
		return out
	}
	tests := []struct {
		name    string
		vips    []*fsm.VIP
		assign  []*fsm.Assignment
		live    liveness
		zones   map[string]*fsm.ZoneState
		nodes   []string // default: every node
		want    []Decision
		wantStk []string
		leaving []string
		avoid   []string // "vip/node": the node did not claim the vip lately
		missed  []string // "vip@token": that token's holder did not claim it
	}{
		{
			name: "unassigned vip goes home",
			vips: []*fsm.VIP{eip("a", "n1")},
			live: allLive,
			want: []Decision{{VIP: "a", To: "n1", Reason: ReasonInitial}},
		},
		{
			name: "unassigned vip with dead home goes to another zone",
			vips: []*fsm.VIP{eip("a", "n1")},
			live: without(allLive, "n1"),
			want: []Decision{{VIP: "a", To: "n2", Reason: ReasonInitial}},
		},
		{
			name: "home just back still gets an unassigned vip",
			vips: []*fsm.VIP{eip("a", "n1")},
			live: liveness{"n1": now, "n2": settled},
			want: []Decision{{VIP: "a", To: "n1", Reason: ReasonInitial}},
		},
		{
			name:   "healthy holder keeps its vip",
			vips:   []*fsm.VIP{eip("a", "n1")},
			assign: []*fsm.Assignment{held("a", "n1", 7)},
			live:   allLive,
		},
		{
			name:   "unreachable holder: another zone, least loaded",
			vips:   []*fsm.VIP{eip("a", "n1"), eip("b", "n2"), eip("c", "n2")},
			assign: []*fsm.Assignment{held("a", "n1", 7), held("b", "n2", 8), held("c", "n2", 9)},
			live:   without(allLive, "n1"),
			want:   []Decision{{VIP: "a", From: "n1", To: "n3", Reason: ReasonUnreachable, CAS: 7, LostSince: now.Add(-time.Second)}},
		},
		{
			name:   "same zone only when no other zone is usable",
			vips:   []*fsm.VIP{eip("a", "n1")},
			assign: []*fsm.Assignment{held("a", "n1", 7)},
			live:   liveness{"n4": settled},
			want:   []Decision{{VIP: "a", From: "n1", To: "n4", Reason: ReasonUnreachable, CAS: 7, LostSince: now.Add(-time.Second)}},
		},
		{
			name:   "vips of a lost node spread over live nodes",
			vips:   []*fsm.VIP{eip("a", "n1"), eip("b", "n1")},
			assign: []*fsm.Assignment{held("a", "n1", 7), held("b", "n1", 8)},
			live:   without(allLive, "n1", "n4"),
			want: []Decision{
				{VIP: "a", From: "n1", To: "n2", Reason: ReasonUnreachable, CAS: 7, LostSince: now.Add(-time.Second)},
				{VIP: "b", From: "n1", To: "n3", Reason: ReasonUnreachable, CAS: 8, LostSince: now.Add(-time.Second)},
			},
		},
		{
			name:   "removed holder",
			vips:   []*fsm.VIP{eip("a", "n1")},
			assign: []*fsm.Assignment{held("a", "n9", 7)},
			live:   allLive,
			want:   []Decision{{VIP: "a", From: "n9", To: "n1", Reason: ReasonRemoved, CAS: 7}},
		},
		{
			name:   "evacuated zone: vips leave and avoid it",
			vips:   []*fsm.VIP{eip("a", "n1"), eip("b", "n2")},
			assign: []*fsm.Assignment{held("a", "n1", 7), held("b", "n2", 8)},
			live:   allLive,
			zones:  map[string]*fsm.ZoneState{"a": {Zone: "a", Evacuated: true}},
			want:   []Decision{{VIP: "a", From: "n1", To: "n3", Reason: ReasonEvacuated, CAS: 7}},
		},
		{
			name:   "failback after hold-down",
			vips:   []*fsm.VIP{eip("a", "n1")},
			assign: []*fsm.Assignment{held("a", "n2", 7)},
			live:   allLive,
			want:   []Decision{{VIP: "a", From: "n2", To: "n1", Reason: ReasonFailback, CAS: 7}},
		},
		{
			name:   "no failback within hold-down",
			vips:   []*fsm.VIP{eip("a", "n1")},
			assign: []*fsm.Assignment{held("a", "n2", 7)},
			live:   liveness{"n1": now.Add(-holdDown + time.Second), "n2": settled},
		},
		{
			name:   "no failback after an operator move",
			vips:   []*fsm.VIP{eip("a", "n1")},
			assign: []*fsm.Assignment{{VIP: "a", Holder: "n2", Token: 7, Reason: ReasonOperator}},
			live:   allLive,
		},
		{
			name:    "leaving holder hands over to a node that is not leaving",
			vips:    []*fsm.VIP{eip("a", "n1"), eip("b", "n2")},
			assign:  []*fsm.Assignment{held("a", "n1", 7), held("b", "n2", 8)},
			live:    allLive,
			leaving: []string{"n1", "n3"},
			want:    []Decision{{VIP: "a", From: "n1", To: "n2", Reason: ReasonLeaving, CAS: 7}}, // n3 (zone c, no load) is leaving too
		},
		{
			name:   "failback turned off",
			vips:   []*fsm.VIP{eip("a", "n1", func(s *fsm.VIPSpec) { s.Failback = &off })},
			assign: []*fsm.Assignment{held("a", "n2", 7)},
			live:   allLive,
		},
		{
			name:   "lost holder goes straight home when home is settled",
			vips:   []*fsm.VIP{eip("a", "n1")},
			assign: []*fsm.Assignment{held("a", "n2", 7)},
			live:   without(allLive, "n2"),
			want:   []Decision{{VIP: "a", From: "n2", To: "n1", Reason: ReasonUnreachable, CAS: 7, LostSince: now.Add(-time.Second)}},
		},
		{
			name:   "candidates restrict targets",
			vips:   []*fsm.VIP{eip("a", "n1", func(s *fsm.VIPSpec) { s.Candidates = []string{"n4"} })},
			assign: []*fsm.Assignment{held("a", "n1", 7)},
			live:   without(allLive, "n1"),
			want:   []Decision{{VIP: "a", From: "n1", To: "n4", Reason: ReasonUnreachable, CAS: 7, LostSince: now.Add(-time.Second)}},
		},
		{
			name:    "no usable candidate: stuck",
			vips:    []*fsm.VIP{eip("a", "n1", func(s *fsm.VIPSpec) { s.Candidates = []string{"n4"} })},
			assign:  []*fsm.Assignment{held("a", "n1", 7)},
			live:    without(allLive, "n1", "n4"),
			wantStk: []string{"a"},
		},
		{
			name:   "holder that did not claim: another node",
			vips:   []*fsm.VIP{eip("a", "n1")},
			assign: []*fsm.Assignment{held("a", "n1", 7)},
			live:   allLive,
			avoid:  []string{"a/n1"},
			missed: []string{"a@7"},
			want:   []Decision{{VIP: "a", From: "n1", To: "n2", Reason: ReasonNotClaiming, CAS: 7}},
		},
		{
			name:   "an operator's move to a node kept away is tried",
			vips:   []*fsm.VIP{eip("a", "n1")},
			assign: []*fsm.Assignment{{VIP: "a", Holder: "n2", Token: 9, Reason: ReasonOperator}},
			live:   allLive,
			avoid:  []string{"a/n2"},
			missed: []string{"a@7"},
		},
		{
			name:   "a node kept away is the last resort",
			vips:   []*fsm.VIP{eip("a", "n1", func(s *fsm.VIPSpec) { s.Candidates = []string{"n1", "n2"} })},
			assign: []*fsm.Assignment{{VIP: "a", Holder: "n2", Token: 9, Reason: ReasonNotClaiming}},
			live:   without(allLive, "n2"),
			avoid:  []string{"a/n1"},
			want:   []Decision{{VIP: "a", From: "n2", To: "n1", Reason: ReasonUnreachable, CAS: 9, LostSince: now.Add(-time.Second)}},
		},
		{
			name:   "no failback to a home that did not claim",
			vips:   []*fsm.VIP{eip("a", "n1")},
			assign: []*fsm.Assignment{held("a", "n2", 7)},
			live:   allLive,
			avoid:  []string{"a/n1"},
		},
		{
			name:   "a lost holder's vip skips a home that did not claim",
			vips:   []*fsm.VIP{eip("a", "n1")},
			assign: []*fsm.Assignment{held("a", "n2", 7)},
			live:   without(allLive, "n2"),
			avoid:  []string{"a/n1", "a/n4"},
			want:   []Decision{{VIP: "a", From: "n2", To: "n3", Reason: ReasonUnreachable, CAS: 7, LostSince: now.Add(-time.Second)}},
		},
		{
			name:  "unassigned vip skips a home that did not claim it",
			vips:  []*fsm.VIP{eip("a", "n1"), eip("b", "n1")},
			live:  allLive,
			avoid: []string{"a/n1"},
			want: []Decision{
				{VIP: "a", To: "n2", Reason: ReasonInitial},
				{VIP: "b", To: "n1", Reason: ReasonInitial},
			},
		},
		{
			name:   "holder that did not claim and nowhere else to go: it stays",
			vips:   []*fsm.VIP{eip("a", "n1", func(s *fsm.VIPSpec) { s.Candidates = []string{"n1", "n4"} })},
			assign: []*fsm.Assignment{held("a", "n1", 7)},
			live:   without(allLive, "n4"),
			avoid:  []string{"a/n1"},
			missed: []string{"a@7"},
		},
		{
			name:  "unmanaged provider ignored",
			vips:  []*fsm.VIP{{Name: "l", Spec: fsm.VIPSpec{Provider: fsm.ProviderLinux, Address: "10.0.0.1/24", HomeNode: "n1"}}},
			live:  allLive,
			nodes: []string{"n1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fsm.Empty()
			for id, n := range nodes {
				if tt.nodes == nil || slices.Contains(tt.nodes, id) {
					cfg.Nodes[id] = n
				}
			}
			for _, v := range tt.vips {
				cfg.VIPs[v.Name] = v
			}
			for _, a := range tt.assign {
				cfg.Assignments[a.VIP] = a
			}
			if tt.zones != nil {
				cfg.Zones = tt.zones
			}
			got, stuck := plan(planInput{
				cfg: cfg,
				alive: func(id string) (bool, time.Time) {
					if since, ok := tt.live[id]; ok {
						return true, since
					}
					return false, now.Add(-time.Second)
				},
				now:      now,
				holdDown: holdDown,
				managed:  func(v *fsm.VIP) bool { return v.Spec.Provider != fsm.ProviderLinux },
				leaving:  func(id string) bool { return slices.Contains(tt.leaving, id) },
				avoid:    func(vip, id string) bool { return slices.Contains(tt.avoid, vip+"/"+id) },
				missed: func(vip string, token uint64) bool {
					return slices.Contains(tt.missed, fmt.Sprintf("%s@%d", vip, token))
				},
			})
			if !slices.Equal(got, tt.want) {
				t.Errorf("moves:\n got %+v\nwant %+v", got, tt.want)
			}
			var stuckNames []string
			for _, d := range stuck {
				stuckNames = append(stuckNames, d.VIP)
			}
			if !slices.Equal(stuckNames, tt.wantStk) {
				t.Errorf("stuck: got %v, want %v", stuckNames, tt.wantStk)
			}
		})
	}
}
