package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rafterlb/rafter/fsm"
)

// raftFSM adapts fsm.FSM, which knows nothing of Raft, to raft.BatchingFSM.
type raftFSM struct {
	f *fsm.FSM
	// applied is the index of the last log entry this adapter has been
	// handed (commands and configuration changes; Raft keeps no-ops and
	// barriers to itself). ConsistentConfig compares it to the commit index.
	applied atomic.Uint64

	// nodeID and logPath name this node and its log in the message that
	// tells the operator how to recover from a corrupt entry.
	nodeID, logPath string
	// metrics times snapshot capture, persist and restore (nil in tests
	// that build an adapter alone).
	metrics *nodeMetrics
	// corrupt is set at the first entry that fails its checksum; from then
	// on nothing is applied or snapshotted. corruptCh (capacity 1) tells
	// the node to leave Raft.
	corrupt   atomic.Pointer[CorruptEntryError]
	corruptCh chan struct{}
}

func newRaftFSM(f *fsm.FSM, nodeID, logPath string) *raftFSM {
	return &raftFSM{f: f, nodeID: nodeID, logPath: logPath, corruptCh: make(chan struct{}, 1)}
}

// CorruptEntryError reports a Raft log entry that failed its checksum.
// The node applies nothing from that entry on and leaves Raft; its data
// plane keeps serving the state of the last good entry.
type CorruptEntryError struct {
	NodeID   string
	Index    uint64 // the corrupt entry
	LastGood uint64 // the last entry applied
	Path     string // the log file ("" for an in-memory log)
	Err      error  // wraps fsm.ErrCorruptEntry
}

func (e *CorruptEntryError) Error() string {
	file, dir := "the in-memory log", "its data directory"
	if e.Path != "" {
		file, dir = e.Path, filepath.Dir(e.Path)
	}
	return fmt.Sprintf("raft log entry %d in %s is corrupt (%v): this node applied nothing after index %d "+
		"and has left Raft; its data plane keeps serving the configuration of index %d. "+
		"To recover: run `rafter node remove %s` against another member, stop this node, "+
		"delete %s, then start it again with --join so that the leader sends it a fresh copy",
		e.Index, file, e.Err, e.LastGood, e.LastGood, e.NodeID, dir)
}

func (e *CorruptEntryError) Unwrap() error { return e.Err }

// corruption returns the first corrupt entry seen, or nil.
func (a *raftFSM) corruption() *CorruptEntryError { return a.corrupt.Load() }

var (
	_ raft.BatchingFSM = (*raftFSM)(nil)
	_ raft.FSMSnapshot = (*fsmSnapshot)(nil)
)

// Apply returns the fsm's error (or nil) as the ApplyFuture's response so
// the proposer learns whether its command took effect.
func (a *raftFSM) Apply(l *raft.Log) any {
	if c := a.corrupt.Load(); c != nil {
		return c
	}
	var resp any
	if l.Type == raft.LogCommand {
		// Verified here, not only inside fsm.Apply: a damaged entry must
		// stop this node, not be consumed as a command that failed.
		if err := fsm.VerifyCommand(l.Data); err != nil {
			c := &CorruptEntryError{NodeID: a.nodeID, Index: l.Index, LastGood: a.applied.Load(), Path: a.logPath, Err: err}
			a.corrupt.Store(c)
			select {
			case a.corruptCh <- struct{}{}:
			default:
			}
			return c
		}
		if err := a.f.Apply(l.Index, l.Data); err != nil {
			resp = err
		}
	}
	a.applied.Store(l.Index)
	return resp
}

// ApplyBatch is what Raft calls (the adapter is a BatchingFSM): one call per
// batch of committed entries saves a channel round trip per entry under load.
func (a *raftFSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	for i, l := range logs {
		out[i] = a.Apply(l)
	}
	return out
}

// Snapshot only captures the immutable Config pointer; Persist does the
// I/O while Apply carries on.
func (a *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	// Raft would label the state of the last good entry with an index
	// past the corrupt one.
	if c := a.corrupt.Load(); c != nil {
		return nil, fmt.Errorf("cluster: no snapshot: %w", c)
	}
	defer a.metrics.observeSnapshot("capture", time.Now())
	return &fsmSnapshot{c: a.f.Config(), metrics: a.metrics}, nil
}

// Restore replaces the state only when the whole snapshot decodes and
// verifies: a corrupt snapshot is refused, never half-applied.
func (a *raftFSM) Restore(rc io.ReadCloser) error {
	defer func() { _ = rc.Close() }()
	defer a.metrics.observeSnapshot("restore", time.Now())
	c, err := fsm.ReadSnapshot(rc)
	if err != nil {
		return fmt.Errorf("cluster: restore snapshot: %w", err)
	}
	a.f.Restore(c)
	a.applied.Store(c.Index)
	return nil
}

type fsmSnapshot struct {
	c       *fsm.Config
	metrics *nodeMetrics
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	defer s.metrics.observeSnapshot("persist", time.Now())
	// Buffered so a failed encode cancels the sink instead of leaving a
	// truncated file for the store to finalise.
	var buf bytes.Buffer
	if err := fsm.WriteSnapshot(&buf, s.c); err != nil {
		return errors.Join(fmt.Errorf("cluster: persist snapshot: %w", err), sink.Cancel())
	}
	if _, err := sink.Write(buf.Bytes()); err != nil {
		return errors.Join(fmt.Errorf("cluster: persist snapshot: %w", err), sink.Cancel())
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
