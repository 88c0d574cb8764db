package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

// flipStoredEntry changes one byte inside the payload of log entry index
// in dir's raft.db, leaving its checksum as it was, as a bad disk would.
func flipStoredEntry(t *testing.T, dir string, index uint64) {
	t.Helper()
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var l raft.Log
	if err := store.GetLog(index, &l); err != nil {
		t.Fatalf("entry %d: %v", index, err)
	}
	if l.Type != raft.LogCommand {
		t.Fatalf("entry %d is %v, not a command", index, l.Type)
	}
	// "port":3002 becomes "port":3003: still a valid command, so only the
	// checksum can tell.
	i := bytes.LastIndex(l.Data, []byte("3002"))
	if i < 0 {
		t.Fatalf("entry %d: %q holds no port 3002", index, l.Data)
	}
	l.Data[i+3] = '3'
	if err := store.StoreLog(&l); err != nil {
		t.Fatal(err)
	}
}

// A log entry changed on disk is refused: the node applies nothing from
// it on, leaves Raft, keeps the last good state, writes no snapshot of a
// diverged state, and says which entry of which file and how to recover.
func TestCorruptLogEntryRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := diskConfig("solo", dir, "127.0.0.1:0")
	n := openNode(t, cfg)
	waitLeader(t, n)
	cfg.RaftBind = n.PeerInfo().RaftAddr
	var idx []uint64
	for i := range 5 {
		idx = append(idx, apply(t, n, listenerCmd(fmt.Sprintf("l%d", i), 3000+i)))
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	bad := idx[2]
	flipStoredEntry(t, dir, bad)

	var logs testutil.SyncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	n = openNode(t, cfg)
	waitFor(t, "the node to refuse the corrupt entry and leave Raft", func() bool {
		return n.Status().Error != "" && n.raft.State() == raft.Shutdown
	})
	st := n.Status()
	dbPath := filepath.Join(dir, "raft.db")
	for _, want := range []string{fmt.Sprintf("entry %d", bad), dbPath, "rafter node remove solo", "delete " + dir} {
		if !strings.Contains(st.Error, want) {
			t.Errorf("status error %q does not say %q", st.Error, want)
		}
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log does not say %q:\n%s", want, logs.String())
		}
	}
	c := n.Config()
	if c.Index >= bad || c.Listeners["l1"] == nil || c.Listeners["l2"] != nil || c.Listeners["l4"] != nil {
		t.Fatalf("state after the corrupt entry: index %d, listeners %v; want the state before index %d", c.Index, c.Listeners, bad)
	}
	if st.AppliedIndex >= bad {
		t.Errorf("status applied_index %d, want before %d", st.AppliedIndex, bad)
	}
	var ce *CorruptEntryError
	if err := n.TakeSnapshot(); err == nil {
		t.Fatal("a node past a corrupt entry took a snapshot")
	} else if !errors.As(err, &ce) && !errors.Is(err, raft.ErrRaftShutdown) {
		t.Fatalf("snapshot: %v", err)
	}
	if _, err := n.Apply(testCtx(t), listenerCmd("late", 4000)); err == nil {
		t.Fatal("a node that left Raft accepted a write")
	}
	if err := n.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	// The refusal survives a restart: nothing was skipped or snapshotted.
	n = openNode(t, cfg)
	waitFor(t, "the refusal again after a restart", func() bool { return n.Status().Error != "" })
	if c := n.Config(); c.Listeners["l2"] != nil || c.Index >= bad {
		t.Fatalf("after restart: index %d listeners %v", c.Index, c.Listeners)
	}
}

// The adapter stops at the first corrupt entry of a batch and refuses
// every entry after it.
func TestAdapterStopsAtCorruptEntry(t *testing.T) {
	a := newRaftFSM(fsm.New(), "n1", "")
	var logs []*raft.Log
	for i := range 4 {
		b, err := fsm.EncodeCommand(listenerCmd(fmt.Sprintf("l%d", i), 3000+i))
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, &raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: b})
	}
	logs[1].Data[len(logs[1].Data)-3] ^= 0x01
	out := a.ApplyBatch(logs)
	if out[0] != nil {
		t.Fatalf("good entry: %v", out[0])
	}
	for i := 1; i < 4; i++ {
		err, _ := out[i].(error)
		var ce *CorruptEntryError
		if !errors.As(err, &ce) || ce.Index != 2 || !errors.Is(err, fsm.ErrCorruptEntry) {
			t.Fatalf("entry %d: %v, want the corrupt entry 2 reported", i+1, out[i])
		}
	}
	if got := a.f.Config().Index; got != 1 || a.applied.Load() != 1 {
		t.Fatalf("fsm index %d applied %d, want 1", got, a.applied.Load())
	}
	if _, err := a.Snapshot(); err == nil {
		t.Fatal("snapshot after a corrupt entry")
	}
	select {
	case <-a.corruptCh:
	default:
		t.Fatal("the node was not told")
	}
}

// In a cluster, a follower with a corrupt entry leaves Raft while the
// others carry on: it can neither lead nor vote, and it keeps the state of
// its last good entry.
func TestCorruptFollowerLeavesCluster(t *testing.T) {
	var cfgs []Config
	var nodes []*Node
	for i := 1; i <= 3; i++ {
		cfg := diskConfig(fmt.Sprintf("c%d", i), t.TempDir(), "127.0.0.1:0")
		if i > 1 {
			cfg.BootstrapExpect = 0 // wait to be added
		}
		n := openNode(t, cfg)
		cfg.RaftBind = n.PeerInfo().RaftAddr
		cfgs, nodes = append(cfgs, cfg), append(nodes, n)
	}
	leader := nodes[0]
	waitLeader(t, leader)
	for _, n := range nodes[1:] {
		if err := leader.AddVoter(testCtx(t), n.PeerInfo()); err != nil {
			t.Fatalf("AddVoter %s: %v", n.cfg.NodeID, err)
		}
	}
	var idx []uint64
	for i := range 5 {
		idx = append(idx, apply(t, leader, listenerCmd(fmt.Sprintf("l%d", i), 3000+i)))
	}
	for _, n := range nodes {
		if _, err := n.WaitForIndex(testCtx(t), idx[4]); err != nil {
			t.Fatalf("%s: %v", n.cfg.NodeID, err)
		}
	}
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	flipStoredEntry(t, cfgs[2].DataDir, idx[2])
	bad := openNode(t, cfgs[2])
	waitFor(t, "c3 to refuse its corrupt entry and leave Raft", func() bool {
		return bad.Status().Error != "" && bad.raft.State() == raft.Shutdown
	})
	if e := bad.Status().Error; !strings.Contains(e, fmt.Sprintf("entry %d", idx[2])) || !strings.Contains(e, filepath.Join(cfgs[2].DataDir, "raft.db")) {
		t.Fatalf("status error %q", e)
	}
	if c := bad.Config(); c.Listeners["l1"] == nil || c.Listeners["l2"] != nil || c.Index >= idx[2] {
		t.Fatalf("c3 state: index %d listeners %v", c.Index, c.Listeners)
	}
	// The two good nodes still form a majority.
	after := apply(t, leader, listenerCmd("after", 5000))
	if _, err := nodes[1].WaitForIndex(testCtx(t), after); err != nil {
		t.Fatalf("c2 after c3 left: %v", err)
	}
	if bad.IsLeader() || bad.Config().Listeners["after"] != nil {
		t.Fatal("c3 took part in Raft after refusing an entry")
	}
}
