package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

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
}

var (
	_ raft.BatchingFSM = (*raftFSM)(nil)
	_ raft.FSMSnapshot = (*fsmSnapshot)(nil)
)

// Apply returns the fsm's error (or nil) as the ApplyFuture's response so
// the proposer learns whether its command took effect.
func (a *raftFSM) Apply(l *raft.Log) any {
	var resp any
	if l.Type == raft.LogCommand {
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
	return &fsmSnapshot{c: a.f.Config()}, nil
}

// Restore replaces the state only when the whole snapshot decodes and
// verifies: a corrupt snapshot is refused, never half-applied.
func (a *raftFSM) Restore(rc io.ReadCloser) error {
	defer func() { _ = rc.Close() }()
	c, err := fsm.ReadSnapshot(rc)
	if err != nil {
		return fmt.Errorf("cluster: restore snapshot: %w", err)
	}
	a.f.Restore(c)
	a.applied.Store(c.Index)
	return nil
}

type fsmSnapshot struct{ c *fsm.Config }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
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
