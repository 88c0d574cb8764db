package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// The guards below sit between hashicorp/raft and its stores. Raft updates
// its own memory only after a write succeeds, but some of its steps take
// two writes; when the first succeeds and the second fails (a full disk),
// what is on disk is a state Raft never meant, and Raft goes on from what
// it believes instead. Each guard orders or defers the writes of one such
// step so that a failure at any point leaves the stores in a state Raft
// either had before the step or reaches after it.

// guardLog and guardStable wrap the stores Raft is given (under its log
// cache, whose contents follow the store's answers).
func guardLog(s raft.LogStore) raft.LogStore          { return &truncatingLog{LogStore: s} }
func guardStable(s raft.StableStore) raft.StableStore { return voteStore{s} }

// Raft's keys in the stable store (hashicorp/raft raft.go).
var (
	keyLastVoteTerm = []byte("LastVoteTerm")
	keyLastVoteCand = []byte("LastVoteCand")
)

// errVoteNotFound is how a missing key reads to Raft: it compares the
// error's text with raft-boltdb's ErrKeyNotFound.
var errVoteNotFound = errors.New("not found")

// voteStore keeps a vote's term and candidate from being paired wrongly.
// Raft persists a vote as two writes, LastVoteTerm then LastVoteCand. If
// the second fails, the disk pairs the new term with the candidate of an
// older vote, and Raft, seeing "already voted for this candidate in this
// term", grants that candidate its vote again without checking that its
// log is up to date: a node missing committed entries can then be elected
// and overwrite them on the others, which have already applied them (a
// silent divergence). voteStore clears the candidate before the term
// changes, so a failure at any point leaves no recorded candidate: in the
// new term Raft decides afresh, checking the log, and the older term is
// over (Raft saves the current term before it records any vote).
type voteStore struct{ raft.StableStore }

func (s voteStore) SetUint64(k []byte, v uint64) error {
	if bytes.Equal(k, keyLastVoteTerm) {
		if err := s.StableStore.Set(keyLastVoteCand, []byte{}); err != nil {
			return fmt.Errorf("cluster: clearing the last vote before a new one: %w", err)
		}
	}
	return s.StableStore.SetUint64(k, v)
}

// Get reads a cleared candidate as no candidate at all, whatever the
// store underneath returns for an empty value.
func (s voteStore) Get(k []byte) ([]byte, error) {
	v, err := s.StableStore.Get(k)
	if err == nil && len(v) == 0 && bytes.Equal(k, keyLastVoteCand) {
		return nil, errVoteNotFound
	}
	return v, err
}

// truncatingLog makes a follower's "drop my conflicting suffix, append the
// leader's entries" one step. Raft deletes the suffix, then appends, and
// records the new last entry only if the append succeeds; when it fails
// (a full disk), Raft still counts the deleted entries as its log. It then
// refuses every later append of the same entries ("failed to get log
// entry"), so the follower stays behind until it restarts, and it answers
// votes and previous-entry checks with entries it no longer has.
//
// truncatingLog defers deleting a suffix until the append that follows it:
// it writes the new entries over the old ones first and deletes only what
// lies beyond them afterwards. A failed append leaves the old suffix in
// place, the log Raft still believes it has; a failed delete afterwards
// leaves the old entries beyond the new ones, which Raft also still counts
// as its log (the append reports the failure), and the next append
// truncates them again.
//
// One thing Raft forgets at the delete, not at the append: a membership
// change among the dropped entries. When the append fails and those
// entries later win after all (their leader is elected again), Raft runs
// with the older membership until it restarts. Membership changes are
// rare and operator-driven; a follower stuck on entries it no longer has
// was not.
type truncatingLog struct {
	raft.LogStore

	mu      sync.Mutex
	pending *logSpan // a suffix to delete, not yet deleted
}

type logSpan struct{ min, max uint64 }

// flush deletes a deferred suffix; the caller holds s.mu.
func (s *truncatingLog) flush() error {
	p := s.pending
	if p == nil {
		return nil
	}
	s.pending = nil
	return s.LogStore.DeleteRange(p.min, p.max)
}

func (s *truncatingLog) DeleteRange(min, max uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.flush(); err != nil {
		return err
	}
	first, err := s.LogStore.FirstIndex()
	if err != nil {
		return err
	}
	last, err := s.LogStore.LastIndex()
	if err != nil {
		return err
	}
	// A suffix (what a follower drops on a conflict) is deferred; a prefix
	// (compaction after a snapshot) or the whole log is deleted now.
	if min > first && min <= last && max >= last {
		s.pending = &logSpan{min: min, max: max}
		return nil
	}
	return s.LogStore.DeleteRange(min, max)
}

func (s *truncatingLog) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s *truncatingLog) StoreLogs(logs []*raft.Log) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending
	if p == nil || len(logs) == 0 || logs[0].Index != p.min {
		if err := s.flush(); err != nil {
			return err
		}
		return s.LogStore.StoreLogs(logs)
	}
	s.pending = nil
	if err := s.LogStore.StoreLogs(logs); err != nil {
		return err // the old suffix is still there, as Raft believes
	}
	if last := logs[len(logs)-1].Index; last < p.max {
		if err := s.LogStore.DeleteRange(last+1, p.max); err != nil {
			return fmt.Errorf("cluster: dropping the conflicting log entries %d-%d after the new ones: %w", last+1, p.max, err)
		}
	}
	return nil
}

// settle deletes a deferred suffix before any other use of the store.
func (s *truncatingLog) settle() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flush()
}

func (s *truncatingLog) GetLog(index uint64, l *raft.Log) error {
	if err := s.settle(); err != nil {
		return err
	}
	return s.LogStore.GetLog(index, l)
}

func (s *truncatingLog) FirstIndex() (uint64, error) {
	if err := s.settle(); err != nil {
		return 0, err
	}
	return s.LogStore.FirstIndex()
}

func (s *truncatingLog) LastIndex() (uint64, error) {
	if err := s.settle(); err != nil {
		return 0, err
	}
	return s.LogStore.LastIndex()
}
