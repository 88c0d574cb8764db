package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

// diskLog is a log store whose appends fail while full is set; refused
// counts the appends it refused.
type diskLog struct {
	raft.LogStore
	full    atomic.Bool
	refused atomic.Int64
}

func (s *diskLog) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s *diskLog) StoreLogs(logs []*raft.Log) error {
	if s.full.Load() {
		s.refused.Add(1)
		return errDiskFull
	}
	return s.LogStore.StoreLogs(logs)
}

var discardLog = slog.New(slog.NewTextHandler(io.Discard, nil))

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
	stop := make(chan struct{})
	logs, err := raft.NewLogCache(512, guardLog(disk, stop, discardLog))
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
	t.Cleanup(func() { close(stop) }) // first: a retrying append gives up
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
// conflicting entries for a new leader's and cannot write the new ones (a
// full disk) must take them once the disk has room. Raft deletes the old
// entries first and, when the append fails, keeps counting them as its
// log: every later try failed on "failed to get log entry", and the
// follower stayed behind until it restarted. Now the append waits for the
// disk, and meanwhile the disk holds a prefix of the old log, never newer
// entries followed by older ones.
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
	done := make(chan *raft.AppendEntriesResponse, 1)
	go func() {
		var resp raft.AppendEntriesResponse
		req := &raft.AppendEntriesRequest{
			RPCHeader: handHeader("b"), Term: 3, PrevLogEntry: 5, PrevLogTerm: 2,
			Entries: entries(6, 7, 3), LeaderCommitIndex: 4,
		}
		if err := h.peers["b"].AppendEntries(handNode, handNode, req, &resp); err != nil {
			t.Errorf("append entries from b: %v", err)
		}
		done <- &resp
	}()
	waitFor(t, "f trying twice to write b's entries on the full disk", func() bool { return disk.refused.Load() >= 2 })
	select {
	case resp := <-done:
		t.Fatalf("f answered b (success %v) while its disk refused the entries that replace its dropped ones", resp.Success)
	default:
	}
	// What a crash now would leave: a prefix of the old log.
	if last, err := disk.LastIndex(); err != nil || last != 5 {
		t.Fatalf("while the disk is full, the log on it ends at %d (%v), want 5: the dropped suffix and nothing else", last, err)
	}
	for i := uint64(1); i <= 5; i++ {
		var l raft.Log
		if err := disk.GetLog(i, &l); err != nil {
			t.Fatalf("entry %d of the common prefix: %v", i, err)
		}
	}

	disk.full.Store(false)
	var resp *raft.AppendEntriesResponse
	select {
	case resp = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("f never answered b after its disk had room")
	}
	if !resp.Success {
		t.Fatalf("f refused b's entries 6-7 after its disk had room (f's last log %d)", resp.LastLog)
	}
	// b commits 6-7; f takes them.
	if resp := h.appendFrom("b", 3, 7, 3, nil, 7); !resp.Success {
		t.Fatalf("term 3: f refused b's heartbeat after 7 (f's last log %d)", resp.LastLog)
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
// prefix of a log Raft knows, and an append that replaces a dropped suffix
// lands once the disk has room.
func TestTruncatingLog(t *testing.T) {
	// A log of 1-8 in term 2.
	newStore := func(t *testing.T) (*diskLog, *failDeletes, raft.LogStore, chan struct{}) {
		t.Helper()
		disk := &diskLog{LogStore: raft.NewInmemStore()}
		dels := &failDeletes{LogStore: disk}
		stop := make(chan struct{})
		g := guardLog(dels, stop, discardLog)
		if err := g.StoreLogs(entries(1, 8, 2)); err != nil {
			t.Fatal(err)
		}
		return disk, dels, g, stop
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
	// storeAsync appends in the background; the result arrives on the
	// channel.
	storeAsync := func(g raft.LogStore, logs []*raft.Log) chan error {
		ch := make(chan error, 1)
		go func() { ch <- g.StoreLogs(logs) }()
		return ch
	}
	waitErr := func(t *testing.T, ch chan error) error {
		t.Helper()
		select {
		case err := <-ch:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("the append never returned")
			return nil
		}
	}

	t.Run("conflict resolved", func(t *testing.T) {
		_, _, g, _ := newStore(t)
		if err := g.DeleteRange(6, 8); err != nil {
			t.Fatal(err)
		}
		if err := g.StoreLogs(entries(6, 7, 3)); err != nil {
			t.Fatal(err)
		}
		want(t, g, 1, 7, newFrom6)
	})
	t.Run("append after a truncation waits for room", func(t *testing.T) {
		disk, _, g, _ := newStore(t)
		if err := g.DeleteRange(6, 8); err != nil {
			t.Fatal(err)
		}
		disk.full.Store(true)
		ch := storeAsync(g, entries(6, 7, 3))
		waitFor(t, "a second try of the append", func() bool { return disk.refused.Load() >= 2 })
		select {
		case err := <-ch:
			t.Fatalf("the append returned (%v) while the disk was full", err)
		default:
		}
		want(t, g, 1, 5, term2) // what a crash now leaves: a prefix
		disk.full.Store(false)
		if err := waitErr(t, ch); err != nil {
			t.Fatal(err)
		}
		want(t, g, 1, 7, newFrom6)
	})
	t.Run("append after a truncation gives up when the node closes", func(t *testing.T) {
		disk, _, g, stop := newStore(t)
		if err := g.DeleteRange(6, 8); err != nil {
			t.Fatal(err)
		}
		disk.full.Store(true)
		ch := storeAsync(g, entries(6, 7, 3))
		waitFor(t, "a first try of the append", func() bool { return disk.refused.Load() >= 1 })
		close(stop)
		if err := waitErr(t, ch); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("append after close: %v, want the disk's error", err)
		}
		want(t, g, 1, 5, term2)
	})
	t.Run("a failed truncation deletes nothing", func(t *testing.T) {
		disk, dels, g, _ := newStore(t)
		dels.full.Store(true)
		if err := g.DeleteRange(6, 8); err == nil {
			t.Fatal("a delete on a full disk succeeded")
		}
		dels.full.Store(false)
		want(t, g, 1, 8, term2)
		// Nothing was dropped, so a failing append is Raft's to handle.
		disk.full.Store(true)
		if err := g.StoreLogs(entries(9, 9, 2)); err == nil {
			t.Fatal("append on a full disk succeeded")
		}
	})
	t.Run("an append on a full disk without a truncation fails at once", func(t *testing.T) {
		disk, _, g, _ := newStore(t)
		disk.full.Store(true)
		if err := g.StoreLogs(entries(9, 9, 2)); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("append on a full disk: %v, want the disk's error at once (a leader steps down on it)", err)
		}
		want(t, g, 1, 8, term2)
	})
	t.Run("compaction is no truncation", func(t *testing.T) {
		disk, _, g, _ := newStore(t)
		if err := g.DeleteRange(1, 5); err != nil {
			t.Fatal(err)
		}
		want(t, g, 6, 8, term2)
		disk.full.Store(true)
		if err := g.StoreLogs(entries(9, 9, 2)); err == nil {
			t.Fatal("append on a full disk succeeded")
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

// recordDeletes records every DeleteRange that reaches the store.
type recordDeletes struct {
	raft.LogStore
	mu   sync.Mutex
	dels [][2]uint64
}

func (s *recordDeletes) DeleteRange(min, max uint64) error {
	s.mu.Lock()
	s.dels = append(s.dels, [2]uint64{min, max})
	s.mu.Unlock()
	return s.LogStore.DeleteRange(min, max)
}

// Compaction (a strict prefix) reaches the store in ascending chunks of
// at most compactChunk entries, so appends are not held up for the whole
// of it; a suffix or the whole log is deleted in one call, as Raft asked.
func TestCompactionDeletesInChunks(t *testing.T) {
	const n = 3*compactChunk + 100
	tests := []struct {
		name     string
		min, max uint64
		want     [][2]uint64
	}{
		{"prefix", 1, 3*compactChunk + 10, [][2]uint64{
			{1, compactChunk}, {compactChunk + 1, 2 * compactChunk}, {2*compactChunk + 1, 3 * compactChunk}, {3*compactChunk + 1, 3*compactChunk + 10}}},
		{"prefix of one chunk", 1, compactChunk, [][2]uint64{{1, compactChunk}}},
		{"suffix", 100, n, [][2]uint64{{100, n}}},
		{"whole log", 1, n, [][2]uint64{{1, n}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recordDeletes{LogStore: raft.NewInmemStore()}
			g := guardLog(rec, make(chan struct{}), discardLog)
			if err := g.StoreLogs(entries(1, n, 2)); err != nil {
				t.Fatal(err)
			}
			if err := g.DeleteRange(tt.min, tt.max); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(rec.dels) != fmt.Sprint(tt.want) {
				t.Fatalf("deletes %v, want %v", rec.dels, tt.want)
			}
			first, _ := g.FirstIndex()
			last, _ := g.LastIndex()
			wantFirst, wantLast := tt.max+1, uint64(n)
			if tt.min > 1 {
				wantFirst, wantLast = 1, tt.min-1
			}
			if tt.max == n && tt.min == 1 {
				wantFirst, wantLast = 0, 0
			}
			if first != wantFirst || last != wantLast {
				t.Fatalf("log spans %d-%d after the delete, want %d-%d", first, last, wantFirst, wantLast)
			}
		})
	}
}

// A chunk that fails stops the compaction with the log still contiguous:
// the chunks before it are gone, everything after it is there.
func TestCompactionFailingHalfwayKeepsTheLogContiguous(t *testing.T) {
	const n = 3 * compactChunk
	disk := &diskLog{LogStore: raft.NewInmemStore()}
	dels := &failAfterDeletes{LogStore: disk, ok: 1}
	g := guardLog(dels, make(chan struct{}), discardLog)
	if err := g.StoreLogs(entries(1, n, 2)); err != nil {
		t.Fatal(err)
	}
	if err := g.DeleteRange(1, n-10); !errors.Is(err, errDiskFull) {
		t.Fatalf("DeleteRange = %v, want the store's error", err)
	}
	first, _ := g.FirstIndex()
	last, _ := g.LastIndex()
	if first != compactChunk+1 || last != n {
		t.Fatalf("log spans %d-%d, want %d-%d", first, last, compactChunk+1, n)
	}
	for i := first; i <= last; i++ {
		var e raft.Log
		if err := g.GetLog(i, &e); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
}

// failAfterDeletes lets ok deletes through, then fails every one.
type failAfterDeletes struct {
	raft.LogStore
	ok int
}

func (s *failAfterDeletes) DeleteRange(min, max uint64) error {
	if s.ok == 0 {
		return errDiskFull
	}
	s.ok--
	return s.LogStore.DeleteRange(min, max)
}
