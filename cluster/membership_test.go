package cluster_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cluster/clustertest"
	"github.com/rafterlb/rafter/fsm"
)

// A join that is refused changes neither the Raft membership nor the node
// records: a voter added before its record was validated could cost the
// cluster its quorum.
func TestAddVoterRefusedChangesNothing(t *testing.T) {
	c := clustertest.NewCluster(t, 3)
	leader := c.Leader(t)
	eventually(t, "3 node records", func() bool { return len(leader.Config().Nodes) == 3 })
	ok := cluster.PeerInfo{ID: "node4", Zone: "zone-4", RaftAddr: "node4.inmem:7000", AdminAddr: "node4.inmem:8400"}
	tests := []struct {
		name  string
		mod   func(*cluster.PeerInfo)
		err   error
		field string
	}{
		{"bad zone", func(p *cluster.PeerInfo) { p.Zone = "zone 4!" }, fsm.ErrInvalid, "zone"},
		{"bad id", func(p *cluster.PeerInfo) { p.ID = "node/4" }, fsm.ErrInvalid, "id"},
		{"raft addr not host:port", func(p *cluster.PeerInfo) { p.RaftAddr = "node4" }, fsm.ErrInvalid, "raft_addr"},
		{"admin addr not host:port", func(p *cluster.PeerInfo) { p.AdminAddr = "node4" }, fsm.ErrInvalid, "admin_addr"},
		{"no raft addr", func(p *cluster.PeerInfo) { p.RaftAddr = "" }, fsm.ErrInvalid, "raft_addr"},
		{"id of a member at another address", func(p *cluster.PeerInfo) { p.ID = "node2" }, fsm.ErrConflict, "id"},
		{"address of another member", func(p *cluster.PeerInfo) { p.RaftAddr = "node3.inmem:7000" }, fsm.ErrConflict, "raft_addr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := leader.Config()
			info := ok
			tt.mod(&info)
			err := leader.AddVoter(ctxT(t), info)
			var fe *fsm.FieldError
			if !errors.Is(err, tt.err) || !errors.As(err, &fe) || !strings.Contains(fe.Field, tt.field) {
				t.Fatalf("AddVoter(%+v) = %v, want %v on field %s", info, err, tt.err, tt.field)
			}
			if got := len(leader.Status().Members); got != 3 {
				t.Fatalf("members after a refused join = %d, want 3: %+v", got, leader.Status().Members)
			}
			after := leader.Config()
			if after.Index != before.Index || len(after.Nodes) != 3 {
				t.Fatalf("refused join wrote to the log: index %d -> %d, %d node records", before.Index, after.Index, len(after.Nodes))
			}
		})
	}
}
