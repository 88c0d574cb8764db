package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rafterlb/rafter/fsm"
)

// maxVoters is the largest voter set rafter runs (3, 5 or 7 voters).
const maxVoters = 7

// AddVoter adds info as a voter whatever role it names; see AddMember.
func (n *Node) AddVoter(ctx context.Context, info PeerInfo) error {
	info.Role = fsm.RoleVoter
	return n.AddMember(ctx, info)
}

// AddMember adds a server to the Raft configuration as a voter, or as a
// non-voter when info.Role is proxy (a no-op when it is already a member
// at that address with that role), and records its fsm Node (zone, admin
// address, role). Leader only.
//
// Everything is checked before anything changes. Then the record is
// written first and the server added after: a record without a server is
// harmless (nothing counts it toward quorum), while a server whose record
// was refused would be a member nobody can see or reach by its admin
// address, and a wrong voter can cost the cluster its quorum. When adding
// the server fails for certain, the record is put back as it was.
func (n *Node) AddMember(ctx context.Context, info PeerInfo) error {
	if info.Role == "" {
		info.Role = fsm.RoleVoter
	}
	servers, err := n.leaderServers(ctx)
	if err != nil {
		return err
	}
	present, err := n.checkJoin(info, servers)
	if err != nil {
		return err
	}
	want := nodeFromPeer(info)
	if present {
		n.rememberPeer(info)
		return n.upsertNode(ctx, want)
	}
	prev := n.fsm.Config().Nodes[info.ID]
	if err := n.upsertNode(ctx, want); err != nil {
		return err
	}
	id, addr := raft.ServerID(info.ID), raft.ServerAddress(info.RaftAddr)
	var f raft.IndexFuture
	if info.Role == fsm.RoleProxy {
		f = n.raft.AddNonvoter(id, addr, 0, enqueueTimeout(ctx))
	} else {
		f = n.raft.AddVoter(id, addr, 0, enqueueTimeout(ctx))
	}
	if err := n.await(ctx, f); err != nil {
		err = fmt.Errorf("cluster: add %s %s: %w", info.Role, info.ID, err)
		if errors.Is(err, ErrTimeout) {
			// The change may still commit: keep the record that describes it.
			return err
		}
		return errors.Join(err, n.undoRecord(context.WithoutCancel(ctx), info.ID, prev))
	}
	n.log.Info("added member", "node", info.ID, "raft_addr", info.RaftAddr, "role", info.Role)
	n.rememberPeer(info)
	return nil
}

// checkJoin reports why info cannot join, before anything is changed:
// its record must pass the fsm's validation, its id and Raft address must
// not belong to another server, and the voters must stay within
// maxVoters. present is true when info is already a member at that
// address with the role it asks for.
func (n *Node) checkJoin(info PeerInfo, servers []raft.Server) (present bool, err error) {
	if info.ID == "" {
		return false, &fsm.FieldError{Field: "id", Message: "required", Err: fsm.ErrInvalid}
	}
	if info.RaftAddr == "" {
		return false, &fsm.FieldError{Field: "raft_addr", Message: "required", Err: fsm.ErrInvalid}
	}
	if info.AdminAddr != "" {
		if _, _, err := net.SplitHostPort(info.AdminAddr); err != nil {
			return false, &fsm.FieldError{Field: "admin_addr", Message: fmt.Sprintf("%q is not host:port", info.AdminAddr), Err: fsm.ErrInvalid}
		}
	}
	cur := n.fsm.Config()
	cmd := fsm.NewCommand(&fsm.NodeUpsert{Node: nodeFromPeer(info)})
	if _, err := fsm.Next(cur, cur.Index+1, cmd); err != nil {
		return false, err
	}
	wantSuffrage := raft.Voter
	if info.Role == fsm.RoleProxy {
		wantSuffrage = raft.Nonvoter
	}
	voters := 0
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
		id, addr := string(s.ID), string(s.Address)
		switch {
		case id == info.ID && addr == info.RaftAddr && s.Suffrage == wantSuffrage:
			present = true
		case id == info.ID && addr == info.RaftAddr:
			verb := "promote"
			if wantSuffrage == raft.Nonvoter {
				verb = "demote"
			}
			return false, &fsm.FieldError{Field: "role", Err: fsm.ErrConflict, Message: fmt.Sprintf(
				"node %s is already a member as %s; change its vote with `rafter node %s %s`", id, roleOf(s.Suffrage), verb, id)}
		case id == info.ID:
			return false, &fsm.FieldError{Field: "id", Err: fsm.ErrConflict, Message: fmt.Sprintf(
				"node %s is already a member at %s; remove it first (rafter node remove %s), then join it again", id, addr, id)}
		case addr == info.RaftAddr:
			return false, &fsm.FieldError{Field: "raft_addr", Err: fsm.ErrConflict, Message: fmt.Sprintf(
				"%s is the Raft address of member %s; remove that node first (rafter node remove %s)", addr, id, id)}
		}
	}
	if !present && wantSuffrage == raft.Voter && voters >= maxVoters {
		return false, &fsm.FieldError{Field: "id", Err: fsm.ErrInvalid, Message: fmt.Sprintf(
			"the cluster already has %d voters, the most rafter runs; remove one first, or join it as a proxy (role proxy)", voters)}
	}
	return present, nil
}

// roleOf names the fsm role of a Raft suffrage.
func roleOf(s raft.ServerSuffrage) string {
	if s == raft.Voter {
		return fsm.RoleVoter
	}
	return fsm.RoleProxy
}

// undoRecord puts node id's record back to prev (nil: no record) after
// adding it as a voter failed.
func (n *Node) undoRecord(ctx context.Context, id string, prev *fsm.Node) error {
	var err error
	if prev != nil {
		err = n.upsertNode(ctx, prev)
	} else if _, ok := n.fsm.Config().Nodes[id]; ok {
		_, err = n.Apply(ctx, fsm.NewCommand(&fsm.NodeRemove{NodeID: id}))
	}
	if err != nil {
		return fmt.Errorf("cluster: undoing the record of %s: %w (remove it with `rafter node remove %s`)", id, err, id)
	}
	return nil
}

// RemoveServer removes a server from the Raft configuration and its fsm
// Node record. Leader only; removing the leader itself makes it step down
// once the change commits.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	servers, err := n.leaderServers(ctx)
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

// leaderServers returns the servers of the Raft configuration when this
// node leads, for the changes only the leader may make.
func (n *Node) leaderServers(ctx context.Context) ([]raft.Server, error) {
	if !n.IsLeader() {
		return nil, n.notLeader(nil)
	}
	return n.servers(ctx)
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
	role := p.Role
	if role == "" {
		role = fsm.RoleVoter
	}
	return &fsm.Node{ID: p.ID, Zone: p.Zone, RaftAddr: p.RaftAddr, AdminAddr: p.AdminAddr, DataAddr: p.DataAddr,
		InstanceID: p.InstanceID, ENI: p.ENI, PrivateIP: p.PrivateIP, Role: role}
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
	cur := n.fsm.Config()
	for _, s := range servers {
		id := string(s.ID)
		// The role a record carries is the member's Raft suffrage, whatever
		// the node was started with: promotion and demotion change it.
		role := roleOf(s.Suffrage)
		var want *fsm.Node
		switch have, ok := cur.Nodes[id]; {
		case id == n.cfg.NodeID:
			want = nodeFromPeer(n.PeerInfo())
			want.Role = role
		case ok && have.Role == role:
			continue
		case ok:
			w := *have
			w.Role = role
			want = &w
		default:
			n.peersMu.Lock()
			p, ok := n.peers[id]
			n.peersMu.Unlock()
			if !ok || p.RaftAddr != string(s.Address) {
				p = PeerInfo{ID: id, RaftAddr: string(s.Address)}
			}
			p.Role = role
			want = nodeFromPeer(p)
		}
		for attempt := 0; ; attempt++ {
			err := n.upsertNode(ctx, want)
			if err == nil || ctx.Err() != nil || errors.Is(err, fsm.ErrInvalid) || attempt == 4 {
				if err != nil && ctx.Err() == nil {
					n.log.Warn("recording node failed", "node", id, "err", err, "action", "retried on the next membership change; check `rafter status` for a leader")
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
