package cluster

import (
	"path/filepath"
	"testing"
	"time"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// A write that reaches the store after the node closed it (Raft's late
// heartbeat) must neither panic Raft (it would on an error) nor succeed:
// it waits.
func TestClosingStoreHoldsWritesAfterClose(t *testing.T) {
	db, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(t.TempDir(), "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	s := &closingStore{bolt: db}
	if err := s.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatal(err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 3 {
		t.Fatalf("GetUint64 = %d, %v", v, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.SetUint64([]byte("CurrentTerm"), 4) }()
	select {
	case err := <-done:
		t.Fatalf("a write after Close returned (%v); it must wait", err)
	case <-time.After(200 * time.Millisecond):
	}
}
