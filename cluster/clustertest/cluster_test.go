package clustertest

import (
	"context"
	"errors"
	"testing"

	"github.com/hashicorp/raft"
)

func TestFaultTransportBlocksEveryRPC(t *testing.T) {
	_, a := raft.NewInmemTransport("a.inmem:7000")
	_, b := raft.NewInmemTransport("b.inmem:7000")
	ft := NewFaultTransport(a)
	ft.Connect(b.LocalAddr(), b)
	ft.Block(b.LocalAddr())
	target := b.LocalAddr()
	tests := []struct {
		name string
		rpc  func() error
	}{
		{"append entries", func() error {
			return ft.AppendEntries("b", target, &raft.AppendEntriesRequest{}, &raft.AppendEntriesResponse{})
		}},
		{"pipeline", func() error { _, err := ft.AppendEntriesPipeline("b", target); return err }},
		{"request vote", func() error {
			return ft.RequestVote("b", target, &raft.RequestVoteRequest{}, &raft.RequestVoteResponse{})
		}},
		{"request pre-vote", func() error {
			return ft.RequestPreVote("b", target, &raft.RequestPreVoteRequest{}, &raft.RequestPreVoteResponse{})
		}},
		{"install snapshot", func() error {
			return ft.InstallSnapshot("b", target, &raft.InstallSnapshotRequest{}, &raft.InstallSnapshotResponse{}, nil)
		}},
		{"timeout now", func() error {
			return ft.TimeoutNow("b", target, &raft.TimeoutNowRequest{}, &raft.TimeoutNowResponse{})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.rpc(); !errors.Is(err, ErrPartitioned) {
				t.Fatalf("blocked RPC: %v, want ErrPartitioned", err)
			}
		})
	}
	// Unblocked, a pre-vote reaches the peer's consumer.
	ft.Unblock(target)
	done := make(chan error, 1)
	go func() {
		done <- ft.RequestPreVote("b", target, &raft.RequestPreVoteRequest{}, &raft.RequestPreVoteResponse{})
	}()
	rpc := <-b.Consumer()
	if _, ok := rpc.Command.(*raft.RequestPreVoteRequest); !ok {
		t.Fatalf("peer got %T, want a pre-vote request", rpc.Command)
	}
	rpc.Respond(&raft.RequestPreVoteResponse{Granted: true}, nil)
	if err := <-done; err != nil {
		t.Fatalf("pre-vote: %v", err)
	}
}

// TestRestartKeepsStores: a killed node comes back from its own stores
// with everything it had, and more from the leader.
func TestRestartKeepsStores(t *testing.T) {
	c := NewCluster(t, 3)
	leader := c.Leader(t)
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	idx, err := leader.Apply(ctx, ListenerCommand("web", 8080))
	if err != nil {
		t.Fatal(err)
	}
	c.WaitForIndex(t, idx)
	victim := c.ID(c.Followers(leader)[0])
	c.Kill(victim)
	if c.Node(victim) != nil {
		t.Fatal("killed node still listed")
	}
	idx2, err := leader.Apply(ctx, ListenerCommand("api", 8081))
	if err != nil {
		t.Fatal(err)
	}
	n := c.Restart(victim)
	if _, err := n.WaitForIndex(ctx, idx2); err != nil {
		t.Fatal(err)
	}
	if n.Config().Listeners["web"] == nil || n.Config().Listeners["api"] == nil {
		t.Fatal("restarted node lacks writes")
	}
}
