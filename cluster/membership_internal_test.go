package cluster

import (
	"testing"

	"github.com/rafterlb/rafter/fsm"
)

// When adding a voter fails after its record was written, the record goes
// back to what it was: removed when it is new, restored when it replaced
// an older one.
func TestUndoRecord(t *testing.T) {
	n := openNode(t, diskConfig("solo", t.TempDir(), "127.0.0.1:0"))
	waitLeader(t, n)
	ctx := testCtx(t)

	fresh := &fsm.Node{ID: "n4", Zone: "z", RaftAddr: "127.0.0.4:7701", AdminAddr: "127.0.0.4:7700"}
	if err := n.upsertNode(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	if err := n.undoRecord(ctx, "n4", nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := n.Config().Nodes["n4"]; ok {
		t.Fatal("a new record was left behind")
	}

	old := &fsm.Node{ID: "n5", Zone: "z", RaftAddr: "127.0.0.5:7701", AdminAddr: "127.0.0.5:7700"}
	if err := n.upsertNode(ctx, old); err != nil {
		t.Fatal(err)
	}
	prev := n.Config().Nodes["n5"]
	changed := *old
	changed.Zone, changed.RaftAddr = "y", "127.0.0.6:7701"
	if err := n.upsertNode(ctx, &changed); err != nil {
		t.Fatal(err)
	}
	if err := n.undoRecord(ctx, "n5", prev); err != nil {
		t.Fatal(err)
	}
	if got := n.Config().Nodes["n5"]; got == nil || !sameNode(got, prev) {
		t.Fatalf("record after undo = %+v, want %+v", got, prev)
	}
}
