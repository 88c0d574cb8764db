package cluster

import (
	"sync"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// closingStore is the bolt store as Raft sees it. Raft can still write the
// current term from a transport goroutine after Shutdown has returned (a
// heartbeat that passed its shutdown check just before; hashicorp/raft
// issue 717), and it panics when that write fails. Once the node has closed
// the store, such a straggler waits here for good instead: it never answers
// the leader, so nothing is acknowledged that was not persisted, and the
// process does not crash on its way out.
type closingStore struct {
	bolt *raftboltdb.BoltStore

	mu     sync.RWMutex
	closed bool
}

var (
	_ raft.LogStore    = (*closingStore)(nil)
	_ raft.StableStore = (*closingStore)(nil)
)

// enter admits one operation; the caller must call s.mu.RUnlock after it.
func (s *closingStore) enter() {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		select {} // see the type's comment
	}
}

// Close waits for the operations in progress, then closes the store.
func (s *closingStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.bolt.Close()
}

func (s *closingStore) FirstIndex() (uint64, error) {
	s.enter()
	defer s.mu.RUnlock()
	return s.bolt.FirstIndex()
}

func (s *closingStore) LastIndex() (uint64, error) {
	s.enter()
	defer s.mu.RUnlock()
	return s.bolt.LastIndex()
}

func (s *closingStore) GetLog(index uint64, log *raft.Log) error {
	s.enter()
	defer s.mu.RUnlock()
	return s.bolt.GetLog(index, log)
}

func (s *closingStore) StoreLog(log *raft.Log) error {
	s.enter()
	defer s.mu.RUnlock()
	return s.bolt.StoreLog(log)
}

func (s *closingStore) StoreLogs(logs []*raft.Log) error {
	s.enter()
	defer s.mu.RUnlock()
	return s.bolt.StoreLogs(logs)
}

func (s *closingStore) DeleteRange(min, max uint64) error {
	s.enter()
	defer s.mu.RUnlock()
	return s.bolt.DeleteRange(min, max)
}

func (s *closingStore) Set(k, v []byte) error {
	s.enter()
	defer s.mu.RUnlock()
	return s.bolt.Set(k, v)
}

func (s *closingStore) Get(k []byte) ([]byte, error) {
	s.enter()
	defer s.mu.RUnlock()
	return s.bolt.Get(k)
}

func (s *closingStore) SetUint64(k []byte, v uint64) error {
	s.enter()
	defer s.mu.RUnlock()
	return s.bolt.SetUint64(k, v)
}

func (s *closingStore) GetUint64(k []byte) (uint64, error) {
	s.enter()
	defer s.mu.RUnlock()
	return s.bolt.GetUint64(k)
}
