package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rafterlb/rafter/fsm"
)

// AddVoter adds a server to the Raft configuration (a no-op when it is
// already a voter at that address) and records its fsm Node (zone, admin
// address). Leader only.
func (n *Node) AddVoter(ctx context.Context, info PeerInfo) error {
	if info.ID == "" || info.RaftAddr == "" {
		return fmt.Errorf("%w: peer id and raft_addr are required", fsm.ErrInvalid)
	}
	if !n.IsLeader() {
		return n.notLeader(nil)
	}
	servers, err := n.servers(ctx)
	if err != nil {
		return err
	}
	present := false
	for _, s := range servers {
		if string(s.ID) == info.ID && string(s.Address) == info.RaftAddr && s.Suffrage == raft.Voter {
			present = true
		}
	}
	if !present {
		f := n.raft.AddVoter(raft.ServerID(info.ID), raft.ServerAddress(info.RaftAddr), 0, enqueueTimeout(ctx))
		if err := n.await(ctx, f); err != nil {
			return fmt.Errorf("cluster: add voter %s: %w", info.ID, err)
		}
		n.log.Info("added voter", "node", info.ID, "raft_addr", info.RaftAddr)
	}
	n.rememberPeer(info)
	return n.upsertNode(ctx, nodeFromPeer(info))
}

// RemoveServer removes a server from the Raft configuration and its fsm
// Node record. Leader only; removing the leader itself makes it step down
// once the change commits.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if !n.IsLeader() {
		return n.notLeader(nil)
	}
	servers, err := n.servers(ctx)
	if err != nil {
		return err
	}
	inRaft := false
	for _, s := range servers {
		if string(s.ID) == id {
			inRaft = true
		}
	}
	_, inFSM := n.fsm.Config().Nodes[id]
	if !inRaft && !inFSM {
		return fmt.Errorf("cluster: server %q: %w", id, fsm.ErrNotFound)
	}
	removeRecord := func() error {
		if _, ok := n.fsm.Config().Nodes[id]; !ok {
			return nil
		}
		_, err := n.Apply(ctx, fsm.NewCommand(&fsm.NodeRemove{NodeID: id}))
		if err != nil {
			return fmt.Errorf("cluster: remove node record %s: %w", id, err)
		}
		return nil
	}
	// A leader removing itself loses the right to write once the change
	// commits, so its record goes first.
	if id == n.cfg.NodeID {
		if err := removeRecord(); err != nil {
			return err
		}
	}
	if inRaft {
		f := n.raft.RemoveServer(raft.ServerID(id), 0, enqueueTimeout(ctx))
		if err := n.await(ctx, f); err != nil {
			return fmt.Errorf("cluster: remove server %s: %w", id, err)
		}
		n.log.Info("removed server", "node", id)
	}
	n.peersMu.Lock()
	delete(n.peers, id)
	n.peersMu.Unlock()
	if id == n.cfg.NodeID {
		return nil
	}
	return removeRecord()
}

func (n *Node) servers(ctx context.Context) ([]raft.Server, error) {
	f := n.raft.GetConfiguration()
	if err := n.await(ctx, f); err != nil {
		return nil, err
	}
	return f.Configuration().Servers, nil
}

func (n *Node) rememberPeer(p PeerInfo) {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	n.peers[p.ID] = p
}

func nodeFromPeer(p PeerInfo) *fsm.Node {
	return &fsm.Node{ID: p.ID, Zone: p.Zone, RaftAddr: p.RaftAddr, AdminAddr: p.AdminAddr, DataAddr: p.DataAddr,
		InstanceID: p.InstanceID, ENI: p.ENI, PrivateIP: p.PrivateIP}
}

// sameNode compares everything but the modify index.
func sameNode(a, b *fsm.Node) bool {
	x, y := *a, *b
	x.ModifyIndex, y.ModifyIndex = 0, 0
	return x == y
}

// upsertNode records want unless the fsm already holds the same.
func (n *Node) upsertNode(ctx context.Context, want *fsm.Node) error {
	if have, ok := n.fsm.Config().Nodes[want.ID]; ok && sameNode(have, want) {
		return nil
	}
	_, err := n.Apply(ctx, fsm.NewCommand(&fsm.NodeUpsert{Node: want}))
	if err != nil {
		return fmt.Errorf("cluster: record node %s: %w", want.ID, err)
	}
	return nil
}

// reconcileNodes gives every Raft server an fsm Node record: this leader's
// own (kept current: its addresses may change across restarts) and any
// other server's that is missing, from what forming learned about it.
func (n *Node) reconcileNodes(ctx context.Context) {
	var servers []raft.Server
	err := n.awaitRetry(ctx, func() raft.Future {
		f := n.raft.GetConfiguration()
		if f.Error() == nil {
			servers = f.Configuration().Servers
		}
		return f
	})
	if err != nil {
		return
	}
	self := nodeFromPeer(n.PeerInfo())
	cur := n.fsm.Config()
	for _, s := range servers {
		id := string(s.ID)
		want := self
		if id != n.cfg.NodeID {
			if _, ok := cur.Nodes[id]; ok {
				continue
			}
			n.peersMu.Lock()
			p, ok := n.peers[id]
			n.peersMu.Unlock()
			if !ok || p.RaftAddr != string(s.Address) {
				p = PeerInfo{ID: id, RaftAddr: string(s.Address)}
			}
			want = nodeFromPeer(p)
		}
		for attempt := 0; ; attempt++ {
			err := n.upsertNode(ctx, want)
			if err == nil || ctx.Err() != nil || errors.Is(err, fsm.ErrInvalid) || attempt == 4 {
				if err != nil && ctx.Err() == nil {
					n.log.Warn("recording node failed", "node", id, "err", err)
				}
				break
			}
			t := time.NewTimer(100 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}
