package clustertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/fsm"
)

// peerInfo is what m tells the cluster about itself; proxies take the
// zones after the voters'.
func (c *Cluster) peerInfo(m *member) cluster.PeerInfo {
	i := slices.Index(c.order, m.id)
	p := cluster.PeerInfo{
		ID: m.id, Zone: fmt.Sprintf("zone-%d", i+1), RaftAddr: string(m.addr),
		AdminAddr: fmt.Sprintf("%s.inmem:8400", m.id),
	}
	if m.proxy {
		p.Role = fsm.RoleProxy
	}
	return p
}

// AddProxy starts a new node id with role proxy and has the leader add it
// as a non-voter, retrying while leadership moves. Kill and Restart work
// on it as on any node.
func (c *Cluster) AddProxy(t testing.TB, id string) *cluster.Node {
	t.Helper()
	c.mu.Lock()
	if _, dup := c.byID[id]; dup {
		c.mu.Unlock()
		t.Fatalf("clustertest: node %q exists", id)
	}
	m := &member{
		id:     id,
		addr:   raft.ServerAddress(fmt.Sprintf("%s.inmem:7000", id)),
		logs:   raft.NewInmemStore(),
		stable: raft.NewInmemStore(),
		snaps:  raft.NewInmemSnapshotStore(),
		proxy:  true,
	}
	c.order = append(c.order, id)
	c.byID[id] = m
	c.start(m)
	info := c.peerInfo(m)
	n := m.node
	c.mu.Unlock()

	deadline := time.Now().Add(WaitTimeout)
	for {
		leader := c.Leader(t)
		ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
		err := leader.AddMember(ctx, info)
		cancel()
		if err == nil {
			return n
		}
		if !errors.Is(err, cluster.ErrNotLeader) && !errors.Is(err, cluster.ErrNoLeader) || time.Now().After(deadline) {
			t.Fatalf("clustertest: add proxy %s: %v", id, err)
		}
	}
}
