package cluster

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rafterlb/rafter/internal/testutil"
)

// fullLogStore fails every append with ENOSPC while full is set, as the
// bolt store does on a full disk.
type fullLogStore struct {
	raft.LogStore
	full  atomic.Bool
	fails atomic.Int64
}

func (s *fullLogStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s *fullLogStore) StoreLogs(logs []*raft.Log) error {
	if s.full.Load() {
		s.fails.Add(1)
		return fmt.Errorf("write raft.db: %w", syscall.ENOSPC)
	}
	return s.LogStore.StoreLogs(logs)
}

// TestFollowerCatchesUpAfterFailedAppends: a follower whose log store
// refuses appends for a moment (a full disk) under a steady stream of
// writes gets every entry once its store works again, without a change of
// leader. The nodes talk over raft's NetworkTransport on loopback, whose
// pipelined replication wedged the leader's replication to that follower
// after its first failed append (hashicorp/raft issue 612).
func TestFollowerCatchesUpAfterFailedAppends(t *testing.T) {
	const n = 3
	var (
		trans  []*raft.NetworkTransport
		stores []*fullLogStore
		peers  []PeerInfo
	)
	for i := 0; i < n; i++ {
		tr, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, time.Second, io.Discard)
		if err != nil {
			t.Fatalf("transport: %v", err)
		}
		trans = append(trans, tr)
		stores = append(stores, &fullLogStore{LogStore: raft.NewInmemStore()})
		peers = append(peers, PeerInfo{
			ID: fmt.Sprintf("node%d", i+1), Zone: fmt.Sprintf("zone-%d", i+1),
			RaftAddr: string(tr.LocalAddr()), AdminAddr: fmt.Sprintf("127.0.0.1:%d", 1+i),
		})
	}
	nodes := make([]*Node, n)
	for i := 0; i < n; i++ {
		cfg := DefaultConfig()
		cfg.NodeID, cfg.Zone, cfg.AdminAddr = peers[i].ID, peers[i].Zone, peers[i].AdminAddr
		cfg.Peers = peers
		cfg.Transport = trans[i]
		cfg.LogStore = stores[i]
		nodes[i] = openNode(t, cfg)
	}
	var leader *Node
	waitFor(t, "a leader with its node record", func() bool {
		for _, nd := range nodes {
			if _, ok := nd.Config().Nodes[nd.cfg.NodeID]; ok && nd.IsLeader() {
				leader = nd
				return true
			}
		}
		return false
	})
	term := leader.Status().Term
	var follower *Node
	var store *fullLogStore
	for i, nd := range nodes {
		if nd != leader {
			follower, store = nd, stores[i]
			break
		}
	}

	// A steady stream of writes, so that the leader pipelines appends to
	// the follower while its store fails.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, _ = leader.Apply(ctx, listenerCmd(fmt.Sprintf("w%d-%d", w, i%20), 2000+w*100+i%20))
				cancel()
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	start := leader.Status().CommitIndex
	waitFor(t, "the follower applying writes", func() bool { return follower.Status().AppliedIndex > start+50 })
	// Each round fails at least one append that the leader pipelined; the
	// wedge needed only one.
	for round := 0; round < 10; round++ {
		fails := store.fails.Load()
		store.full.Store(true)
		waitFor(t, "an append failing on the follower", func() bool { return store.fails.Load() > fails })
		before := leader.Status().CommitIndex
		testutil.WaitFor(t, waitTimeout, "writes committing without the follower", func() bool { return leader.Status().CommitIndex > before+20 })
		store.full.Store(false)
		target := leader.Status().CommitIndex
		err := testutil.Poll(waitTimeout, func() error {
			if got := follower.Status().AppliedIndex; got < target {
				return fmt.Errorf("round %d: the follower applied %d, not %d (leader in state %s, term %d)",
					round, got, target, leader.Status().State, leader.Status().Term)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := leader.Status(); got.State != raft.Leader.String() || got.Term != term {
		t.Fatalf("leadership changed during the test (term %d, now %s in term %d): the follower must catch up under the same leader", term, got.State, got.Term)
	}
}
