package cluster

import (
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rafterlb/rafter/fsm"
)

// Status is this node's view of the cluster. On the leader every member's
// health is known; a follower only vouches for itself and the leader.
func (n *Node) Status() Status {
	now := time.Now()
	state := n.raft.State()
	leaderID, leaderAddr := n.Leader()
	st := Status{
		NodeID:       n.cfg.NodeID,
		Zone:         n.cfg.Zone,
		State:        state.String(),
		Leader:       leaderID,
		LeaderAddr:   leaderAddr,
		Term:         n.raft.CurrentTerm(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.raft.AppliedIndex(),
		Members:      []Member{},
	}
	if c := n.adapter.corruption(); c != nil {
		st.Error = c.Error()
		// Raft counts the entries it handed over as applied; the state is
		// that of the last good one.
		st.AppliedIndex = c.LastGood
	}
	followerContact := n.raft.LastContact()
	if state != raft.Leader {
		st.LastContact = followerContact
	}

	var servers []raft.Server
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		servers = f.Configuration().Servers
	}
	nodes := n.fsm.Config().Nodes
	for _, s := range servers {
		id := string(s.ID)
		m := Member{
			ID:       id,
			RaftAddr: string(s.Address),
			Suffrage: s.Suffrage.String(),
			Leader:   id == leaderID,
		}
		if node, ok := nodes[id]; ok {
			m.Zone, m.AdminAddr = node.Zone, node.AdminAddr
		} else {
			n.peersMu.Lock()
			p := n.peers[id]
			n.peersMu.Unlock()
			m.Zone, m.AdminAddr = p.Zone, p.AdminAddr
		}
		if id == n.cfg.NodeID && m.AdminAddr == "" {
			m.Zone, m.AdminAddr = n.cfg.Zone, n.cfg.AdminAddr
		}
		switch {
		case id == n.cfg.NodeID:
			m.Healthy = state != raft.Shutdown
			m.LastContact = now
		case state == raft.Leader:
			m.LastContact = n.health.lastContact(id, now)
			m.Healthy = now.Sub(m.LastContact) < healthyWithin
		case id == leaderID && !followerContact.IsZero():
			m.LastContact = followerContact
			m.Healthy = now.Sub(followerContact) < healthyWithin
		}
		switch {
		case m.Healthy:
			m.Health = "healthy"
		case id == n.cfg.NodeID || state == raft.Leader || id == leaderID:
			m.Health = "unhealthy"
		default:
			m.Health = "unknown"
		}
		st.Members = append(st.Members, m)
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].ID < st.Members[j].ID })
	return st
}

// PeerInfo is what this node tells peers forming a cluster with it.
func (n *Node) PeerInfo() PeerInfo {
	id, addr := n.Leader()
	return PeerInfo{
		ID:           n.cfg.NodeID,
		Zone:         n.cfg.Zone,
		RaftAddr:     string(n.trans.LocalAddr()),
		AdminAddr:    n.cfg.AdminAddr,
		DataAddr:     n.cfg.DataAddr,
		InstanceID:   n.cfg.InstanceID,
		ENI:          n.cfg.ENI,
		PrivateIP:    n.cfg.PrivateIP,
		Role:         n.role(),
		Bootstrapped: n.hasState(),
		Leader:       id,
		LeaderAddr:   addr,
	}
}

// role is the role this node was started with; once it is a member, the
// Raft configuration (promote, demote) decides.
func (n *Node) role() string {
	if n.cfg.Role == fsm.RoleProxy {
		return fsm.RoleProxy
	}
	return fsm.RoleVoter
}

// hasState: the node holds Raft state (it bootstrapped, or a leader has
// replicated to it).
func (n *Node) hasState() bool { return n.raft.LastIndex() > 0 }
