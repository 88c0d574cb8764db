package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The guards below sit between hashicorp/raft and its stores. Raft updates
// its own memory only after a write succeeds, but some of its steps take
// two writes; when the first succeeds and the second fails (a full disk),
// what is on disk is a state Raft never meant, and Raft goes on from what
// it believes instead. Each guard orders the writes of one such step, or
// sees it through, so that the stores never hold a state Raft does not
// know of that it could act on.

// guardLog and guardStable wrap the stores Raft is given (under its log
// cache, whose contents follow the store's answers).
func guardLog(s raft.LogStore, stop <-chan struct{}, log *slog.Logger) raft.LogStore {
	return &truncatingLog{LogStore: s, stop: stop, log: log}
}
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

// truncatingLog keeps a follower's "drop my conflicting suffix, append the
// leader's entries" from ending halfway. Raft deletes the suffix, then
// appends, and records the new last entry only when the append succeeds;
// when the append fails (a full disk), Raft goes on counting the deleted
// entries as its log. It then refuses every later append of the same
// entries ("failed to get log entry"), so the follower stays behind until
// it restarts.
//
// Doing the two writes in the other order (new entries first, then the
// rest of the old suffix) would be worse: a failed delete or a crash in
// between leaves newer entries followed by older ones of a lower term, and
// a leader holding those older ones would then find its previous entry
// matched on this node while the entries before it differ — a silent
// divergence. Raft's own order leaves, at any instant, a prefix of the log
// Raft believes it has, which is always safe to crash on.
//
// So the order stays, and the append that follows a truncation does not
// give up: truncatingLog retries it, backing off up to a second, until
// the disk has room (the follower stops taking the log meanwhile, as a
// node with a full disk must) or the node closes. Raft's view and the
// disk then agree again the moment the append lands.
type truncatingLog struct {
	raft.LogStore
	stop <-chan struct{} // closed when the node closes: give up retrying
	log  *slog.Logger

	mu        sync.Mutex
	truncated bool // a suffix was deleted and no append has landed since
}

// Backing off between the tries of an append that follows a truncation.
const (
	truncRetryFirst = 10 * time.Millisecond
	truncRetryMax   = time.Second
)

// compactChunk bounds the entries one transaction deletes when Raft drops
// the log's prefix after a snapshot. That prefix can be tens of thousands
// of entries, and bolt holds its only write lock for the whole
// transaction: every append, so every write's commit, waits behind it
// (20-70 ms for 20,000 entries, measured on a shared VM's disk). Deleted
// in chunks, appends run in between, and the log on disk is contiguous
// after every chunk, as it is after the whole.
const compactChunk = 1024

func (s *truncatingLog) DeleteRange(min, max uint64) error {
	first, err := s.LogStore.FirstIndex()
	if err != nil {
		return err
	}
	last, err := s.LogStore.LastIndex()
	if err != nil {
		return err
	}
	if min <= first && max < last {
		// A strict prefix (compaction): a crash or an error between
		// chunks leaves a shorter prefix deleted, which the next
		// compaction finishes.
		for lo := min; lo <= max; {
			hi := max
			if max-lo >= compactChunk {
				hi = lo + compactChunk - 1
			}
			if err := s.LogStore.DeleteRange(lo, hi); err != nil {
				return err
			}
			if hi == max {
				break
			}
			lo = hi + 1
		}
		return nil
	}
	// A suffix or the whole log goes in one transaction: a failure
	// halfway through ascending chunks would leave the log with a hole
	// or with only the end of what Raft asked to delete.
	if err := s.LogStore.DeleteRange(min, max); err != nil {
		return err // one bolt transaction: nothing was deleted
	}
	// A suffix (what a follower drops on a conflict) rather than the
	// whole log.
	if min > first {
		s.mu.Lock()
		s.truncated = true
		s.mu.Unlock()
	}
	return nil
}

func (s *truncatingLog) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s *truncatingLog) StoreLogs(logs []*raft.Log) error {
	err := s.LogStore.StoreLogs(logs)
	s.mu.Lock()
	truncated := s.truncated
	if err == nil {
		s.truncated = false
	}
	s.mu.Unlock()
	if err == nil || !truncated {
		return err
	}
	s.log.Warn("cannot write the log entries that replace a dropped conflicting suffix; this node takes no more of the log until it can",
		"first", logs[0].Index, "last", logs[len(logs)-1].Index, "err", err,
		"action", "free space on the filesystem holding --data-dir")
	wait := truncRetryFirst
	for {
		t := time.NewTimer(wait)
		select {
		case <-s.stop:
			t.Stop()
			return err
		case <-t.C:
		}
		if err = s.LogStore.StoreLogs(logs); err == nil {
			s.mu.Lock()
			s.truncated = false
			s.mu.Unlock()
			s.log.Info("wrote the log entries that replace a dropped conflicting suffix",
				"first", logs[0].Index, "last", logs[len(logs)-1].Index)
			return nil
		}
		wait = min(2*wait, truncRetryMax)
	}
}
