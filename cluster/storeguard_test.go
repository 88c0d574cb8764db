package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// These tests drive one real hashicorp/raft node (the follower under test,
// "f") by hand: the test plays its peers over in-memory transports and
// sends each AppendEntries and RequestVote itself, so every interleaving
// of a full disk with Raft's steps is exact and repeatable. The node's
// stores are wrapped as Open wraps them.

// diskStable is a stable store on a disk that can fill up: full fails
// every write, and fillAfterVoteTerm fills the disk right after the next
// write of LastVoteTerm, between the two writes of a vote.
type diskStable struct {
	raft.StableStore
	full              atomic.Bool
	fillAfterVoteTerm atomic.Bool
}

var errDiskFull = fmt.Errorf("write raft.db: %w", syscall.ENOSPC)

func (s *diskStable) Set(k, v []byte) error {
	if s.full.Load() {
		return errDiskFull
	}
	return s.StableStore.Set(k, v)
}

func (s *diskStable) SetUint64(k []byte, v uint64) error {
	if s.full.Load() {
		return errDiskFull
	}
	if err := s.StableStore.SetUint64(k, v); err != nil {
		return err
	}
	if bytes.Equal(k, keyLastVoteTerm) && s.fillAfterVoteTerm.Swap(false) {
		s.full.Store(true)
	}
	return nil
}

// diskLog is a log store whose appends fail while full is set.
type diskLog struct {
	raft.LogStore
	full atomic.Bool
}

func (s *diskLog) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s *diskLog) StoreLogs(logs []*raft.Log) error {
	if s.full.Load() {
		return errDiskFull
	}
	return s.LogStore.StoreLogs(logs)
}

// recordFSM remembers the data of every command it applied, by index.
type recordFSM struct {
	mu      sync.Mutex
	applied map[uint64]string
}

func (f *recordFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied[l.Index] = string(l.Data)
	return nil
}

func (f *recordFSM) get(i uint64) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.applied[i]
	return d, ok
}

func (f *recordFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errors.New("no snapshots here") }
func (f *recordFSM) Restore(io.ReadCloser) error         { return errors.New("no snapshots here") }

// handFollower is node f of a four-voter cluster {f, a, b, c} whose peers
// are the test.
type handFollower struct {
	t     *testing.T
	r     *raft.Raft
	fsm   *recordFSM
	logs  raft.LogStore
	peers map[string]*raft.InmemTransport
}

const handNode = "f"

// startHandFollower bootstraps f on the given stores (the disk), wrapped
// the way Open wraps a data directory's stores, with timeouts long enough
// that f never starts an election during a test.
func startHandFollower(t *testing.T, disk raft.LogStore, stable raft.StableStore) *handFollower {
	t.Helper()
	logs, err := raft.NewLogCache(512, guardLog(disk))
	if err != nil {
		t.Fatal(err)
	}
	guarded := guardStable(stable)
	snaps := raft.NewInmemSnapshotStore()
	addr, trans := raft.NewInmemTransport(handNode)
	conf := raft.DefaultConfig()
	conf.LocalID = handNode
	conf.HeartbeatTimeout = time.Minute
	conf.ElectionTimeout = time.Minute
	conf.LeaderLeaseTimeout = time.Second
	conf.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Output: io.Discard})
	servers := []raft.Server{{ID: handNode, Address: addr}}
	h := &handFollower{t: t, fsm: &recordFSM{applied: map[uint64]string{}}, logs: logs, peers: map[string]*raft.InmemTransport{}}
	for _, id := range []string{"a", "b", "c"} {
		paddr, pt := raft.NewInmemTransport(raft.ServerAddress(id))
		pt.Connect(addr, trans)
		h.peers[id] = pt
		servers = append(servers, raft.Server{ID: raft.ServerID(id), Address: paddr})
	}
	if err := raft.BootstrapCluster(conf, logs, guarded, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	h.r, err = raft.NewRaft(conf, h.fsm, logs, guarded, snaps, trans)
	if err != nil {
		t.Fatalf("raft: %v", err)
	}
	t.Cleanup(func() { _ = h.r.Shutdown().Error() })
	return h
}

func handHeader(id string) raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(id), Addr: []byte(id)}
}

// entries are commands index from..to of term, each carrying "index/term".
func entries(from, to, term uint64) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("%d/%d", i, term))})
	}
	return out
}

// appendFrom sends f an AppendEntries from leader in term.
func (h *handFollower) appendFrom(leader string, term, prevIndex, prevTerm uint64, logs []*raft.Log, commit uint64) *raft.AppendEntriesResponse {
	h.t.Helper()
	var resp raft.AppendEntriesResponse
	req := &raft.AppendEntriesRequest{
		RPCHeader: handHeader(leader), Term: term,
		PrevLogEntry: prevIndex, PrevLogTerm: prevTerm,
		Entries: logs, LeaderCommitIndex: commit,
	}
	if err := h.peers[leader].AppendEntries(handNode, handNode, req, &resp); err != nil {
		h.t.Fatalf("append entries from %s: %v", leader, err)
	}
	return &resp
}

// voteFor asks f for its vote for candidate in term. It is marked as a
// leadership transfer so that f does not refuse merely because it knows
// a leader: the test is about what f checks after that.
func (h *handFollower) voteFor(candidate string, term, lastIndex, lastTerm uint64) bool {
	h.t.Helper()
	var resp raft.RequestVoteResponse
	req := &raft.RequestVoteRequest{
		RPCHeader: handHeader(candidate), Term: term,
		LastLogIndex: lastIndex, LastLogTerm: lastTerm, LeadershipTransfer: true,
	}
	if err := h.peers[candidate].RequestVote(handNode, handNode, req, &resp); err != nil {
		h.t.Fatalf("request vote from %s: %v", candidate, err)
	}
	return resp.Granted
}

func (h *handFollower) waitApplied(index uint64, want string) {
	h.t.Helper()
	waitFor(h.t, fmt.Sprintf("f applying %q at index %d", want, index), func() bool {
		got, ok := h.fsm.get(index)
		return ok && got == want
	})
}

// TestVoteFailingHalfwayGrantsNoStaleCandidate: a vote is two writes
// (LastVoteTerm, then LastVoteCand). When the disk fills between them, the
// node must not end up believing it voted, in the new term, for whoever it
// voted for in an older one: Raft would grant that candidate its vote
// again without comparing logs, and a candidate missing committed entries
// could be elected and overwrite them on nodes that have applied them.
func TestVoteFailingHalfwayGrantsNoStaleCandidate(t *testing.T) {
	stable := &diskStable{StableStore: raft.NewInmemStore()}
	h := startHandFollower(t, raft.NewInmemStore(), stable)

	// Term 2: a, whose log is as long as f's (the bootstrap entry), gets
	// f's vote.
	if !h.voteFor("a", 2, 1, 1) {
		t.Fatal("term 2: f refused its vote to a, whose log is as up to date as its own")
	}
	// Term 3: b leads and commits entries 2-6 on f.
	if resp := h.appendFrom("b", 3, 1, 1, entries(2, 6, 3), 6); !resp.Success {
		t.Fatal("term 3: f refused b's entries 2-6")
	}
	h.waitApplied(6, "6/3")

	// Term 4: c, up to date, asks for f's vote; the disk fills between the
	// vote's two writes, so f does not grant it.
	stable.fillAfterVoteTerm.Store(true)
	if h.voteFor("c", 4, 6, 3) {
		t.Fatal("term 4: f granted c its vote although it could not record it")
	}
	if !stable.full.Load() {
		t.Fatal("the disk never filled: f did not try to record a vote for c")
	}
	stable.full.Store(false)

	// a asks in term 4 with only the bootstrap entry: f has applied
	// entries 2-6 of term 3, which a lacks, so it must refuse.
	if h.voteFor("a", 4, 1, 1) {
		t.Fatal("term 4: f granted its vote to a, whose log lacks the entries 2-6 f has committed and applied; " +
			"a could be elected and overwrite them (f took its term-2 vote for a as a vote in term 4)")
	}
	// f voted for nobody in term 4, so c, up to date, may still have it.
	if !h.voteFor("c", 4, 6, 3) {
		t.Fatal("term 4: f refused c, up to date, although it had voted for nobody in term 4")
	}
}

// TestTruncationFailingHalfwayKeepsTheLog: a follower that drops its
// conflicting entries for a new leader's and fails to write the new ones
// (a full disk) must still take them once the disk has room. Raft
// deletes the old entries first and, when the append fails, keeps counting
// them as its log: every later try failed on "failed to get log entry",
// and the follower stayed behind until it restarted.
func TestTruncationFailingHalfwayKeepsTheLog(t *testing.T) {
	disk := &diskLog{LogStore: raft.NewInmemStore()}
	h := startHandFollower(t, disk, raft.NewInmemStore())

	// Term 2: a leads; f gets entries 2-8 and learns that 2-4 are committed.
	if resp := h.appendFrom("a", 2, 1, 1, entries(2, 8, 2), 4); !resp.Success {
		t.Fatal("term 2: f refused a's entries 2-8")
	}
	h.waitApplied(4, "4/2")

	// Term 3: b leads with entries 6-7 of its own after the common 5; f's
	// 6-8 of term 2 conflict. The disk is full when f appends.
	disk.full.Store(true)
	if resp := h.appendFrom("b", 3, 5, 2, entries(6, 7, 3), 4); resp.Success {
		t.Fatal("term 3: f reported success for an append its disk refused")
	}
	disk.full.Store(false)

	// The disk has room again; b sends the same entries, now committed.
	resp := h.appendFrom("b", 3, 5, 2, entries(6, 7, 3), 7)
	if !resp.Success {
		var l raft.Log
		err := h.logs.GetLog(6, &l)
		t.Fatalf("term 3: f still refuses b's entries 6-7 after its disk has room (f's last log %d; entry 6 in its store: %v): "+
			"it counts entries it deleted for them as its own", resp.LastLog, err)
	}
	h.waitApplied(7, "7/3")
	if got, _ := h.fsm.get(6); got != "6/3" {
		t.Fatalf("f applied %q at index 6, want b's entry 6/3", got)
	}
	if last, err := h.logs.LastIndex(); err != nil || last != 7 {
		t.Fatalf("f's log ends at %d (%v), want 7: its conflicting entry 8 of term 2 must be gone", last, err)
	}
}

// failDeletes is a log store whose deletes fail while full is set.
type failDeletes struct {
	raft.LogStore
	full atomic.Bool
}

func (s *failDeletes) DeleteRange(min, max uint64) error {
	if s.full.Load() {
		return errDiskFull
	}
	return s.LogStore.DeleteRange(min, max)
}

// TestTruncatingLog: at every point a step can fail, the store holds a
// log Raft knows: the one before the step or the one after it.
func TestTruncatingLog(t *testing.T) {
	// A log of 1-8 in term 2.
	newStore := func(t *testing.T) (*diskLog, *failDeletes, raft.LogStore) {
		t.Helper()
		disk := &diskLog{LogStore: raft.NewInmemStore()}
		dels := &failDeletes{LogStore: disk}
		g := guardLog(dels)
		if err := g.StoreLogs(entries(1, 8, 2)); err != nil {
			t.Fatal(err)
		}
		return disk, dels, g
	}
	// want checks the store holds exactly first..last, each entry from
	// term terms(i).
	want := func(t *testing.T, g raft.LogStore, first, last uint64, terms func(uint64) uint64) {
		t.Helper()
		f, _ := g.FirstIndex()
		l, _ := g.LastIndex()
		if f != first || l != last {
			t.Fatalf("log spans %d-%d, want %d-%d", f, l, first, last)
		}
		for i := first; i <= last; i++ {
			var e raft.Log
			if err := g.GetLog(i, &e); err != nil || e.Term != terms(i) {
				t.Fatalf("entry %d: term %d (%v), want term %d", i, e.Term, err, terms(i))
			}
		}
	}
	term2 := func(uint64) uint64 { return 2 }
	newFrom6 := func(i uint64) uint64 {
		if i >= 6 {
			return 3
		}
		return 2
	}

	t.Run("conflict resolved", func(t *testing.T) {
		_, _, g := newStore(t)
		if err := g.DeleteRange(6, 8); err != nil {
			t.Fatal(err)
		}
		if err := g.StoreLogs(entries(6, 7, 3)); err != nil {
			t.Fatal(err)
		}
		want(t, g, 1, 7, newFrom6)
	})
	t.Run("append fails: the old suffix stays", func(t *testing.T) {
		disk, _, g := newStore(t)
		if err := g.DeleteRange(6, 8); err != nil {
			t.Fatal(err)
		}
		disk.full.Store(true)
		if err := g.StoreLogs(entries(6, 7, 3)); err == nil {
			t.Fatal("append on a full disk succeeded")
		}
		disk.full.Store(false)
		want(t, g, 1, 8, term2)
	})
	t.Run("delete beyond the new entries fails: the append reports it", func(t *testing.T) {
		_, dels, g := newStore(t)
		if err := g.DeleteRange(6, 8); err != nil {
			t.Fatal(err)
		}
		dels.full.Store(true)
		if err := g.StoreLogs(entries(6, 7, 3)); err == nil {
			t.Fatal("the append succeeded although the old entry 8 could not be deleted")
		}
		dels.full.Store(false)
		// Raft still counts 8 (term 2) as its last entry: so does the store.
		want(t, g, 1, 8, func(i uint64) uint64 {
			if i == 6 || i == 7 {
				return 3
			}
			return 2
		})
	})
	t.Run("compaction deletes at once", func(t *testing.T) {
		_, _, g := newStore(t)
		if err := g.DeleteRange(1, 5); err != nil {
			t.Fatal(err)
		}
		want(t, g, 6, 8, term2)
	})
	t.Run("a deferred delete is done before any other use", func(t *testing.T) {
		_, _, g := newStore(t)
		if err := g.DeleteRange(6, 8); err != nil {
			t.Fatal(err)
		}
		want(t, g, 1, 5, term2)
	})
	t.Run("an append elsewhere deletes first", func(t *testing.T) {
		_, _, g := newStore(t)
		if err := g.DeleteRange(6, 8); err != nil {
			t.Fatal(err)
		}
		if err := g.StoreLogs(entries(7, 7, 3)); err != nil {
			t.Fatal(err)
		}
		var e raft.Log
		if err := g.GetLog(6, &e); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("entry 6 after its deletion: %v, want not found", err)
		}
	})
}

// TestVoteStoreReadsAClearedCandidateAsNone: Raft tells "no vote" from
// "a vote" by the candidate key's absence; a cleared candidate must read
// so on bolt and in memory alike.
func TestVoteStoreReadsAClearedCandidateAsNone(t *testing.T) {
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(t.TempDir(), "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bolt.Close() })
	for _, tc := range []struct {
		name  string
		store raft.StableStore
	}{{"bolt", bolt}, {"memory", raft.NewInmemStore()}} {
		t.Run(tc.name, func(t *testing.T) {
			s := guardStable(tc.store)
			if err := s.Set(keyLastVoteCand, []byte("a")); err != nil {
				t.Fatal(err)
			}
			if err := s.SetUint64(keyLastVoteTerm, 5); err != nil {
				t.Fatal(err)
			}
			if v, err := s.Get(keyLastVoteCand); err == nil || err.Error() != "not found" || v != nil {
				t.Fatalf("candidate after a new vote term: %q, %v; want nothing, \"not found\"", v, err)
			}
			if term, err := s.GetUint64(keyLastVoteTerm); err != nil || term != 5 {
				t.Fatalf("vote term %d (%v), want 5", term, err)
			}
			if err := s.Set(keyLastVoteCand, []byte("b")); err != nil {
				t.Fatal(err)
			}
			if v, err := s.Get(keyLastVoteCand); err != nil || string(v) != "b" {
				t.Fatalf("candidate after the vote: %q, %v; want b", v, err)
			}
		})
	}
}
