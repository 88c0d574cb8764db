package clustertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/fsm"
)

// WaitTimeout bounds every wait in the harness: generous, because a
// loaded CI machine under -race elects slowly.
const WaitTimeout = 15 * time.Second

// Cluster is n rafter nodes connected by in-memory transports, with
// in-memory stores that survive Kill/Restart.
type Cluster struct {
	t      testing.TB
	opts   options
	mu     sync.Mutex
	order  []string
	byID   map[string]*member
	island map[string]bool // the side of the current partition, nil when healed
}

type member struct {
	id     string
	addr   raft.ServerAddress
	trans  *FaultTransport
	logs   *raft.InmemStore
	stable *raft.InmemStore
	snaps  *raft.InmemSnapshotStore
	node   *cluster.Node // nil while killed
	proxy  bool          // a non-voter added with AddProxy
}

type options struct {
	logger    *slog.Logger
	configure func(*cluster.Config)
}

// Option changes how NewCluster builds nodes.
type Option func(*options)

// WithLogger sends every node's log to l (default: discarded).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithConfig lets a test adjust each node's Config before it opens.
func WithConfig(f func(*cluster.Config)) Option { return func(o *options) { o.configure = f } }

// NewCluster starts n nodes ("node1".."nodeN", zones "zone-1".."zone-N"),
// bootstraps them as one cluster and closes them at the end of the test.
// It does not wait for a leader; call Leader for that.
func NewCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	o := options{logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	c := &Cluster{t: t, opts: o, byID: make(map[string]*member)}
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("node%d", i)
		c.order = append(c.order, id)
		c.byID[id] = &member{
			id:     id,
			addr:   raft.ServerAddress(fmt.Sprintf("%s.inmem:7000", id)),
			logs:   raft.NewInmemStore(),
			stable: raft.NewInmemStore(),
			snaps:  raft.NewInmemSnapshotStore(),
		}
	}
	t.Cleanup(c.Close)
	for _, id := range c.order {
		c.start(c.byID[id])
	}
	return c
}

func (c *Cluster) peers() []cluster.PeerInfo {
	var ps []cluster.PeerInfo
	for i, id := range c.order {
		m := c.byID[id]
		if m.proxy {
			continue
		}
		ps = append(ps, cluster.PeerInfo{
			ID: id, Zone: fmt.Sprintf("zone-%d", i+1), RaftAddr: string(m.addr),
			AdminAddr: fmt.Sprintf("%s.inmem:8400", id),
		})
	}
	return ps
}

// start opens m's node on a fresh transport (Raft closes the old one on
// shutdown) over m's stores, and wires it to every live node.
func (c *Cluster) start(m *member) {
	c.t.Helper()
	_, inmem := raft.NewInmemTransportWithTimeout(m.addr, time.Second)
	m.trans = NewFaultTransport(inmem)
	for _, id := range c.order {
		o := c.byID[id]
		if o == m || o.node == nil {
			continue
		}
		m.trans.Connect(o.addr, o.trans)
		o.trans.Connect(m.addr, m.trans)
		if c.island != nil && c.island[id] != c.island[m.id] {
			m.trans.Block(o.addr)
			o.trans.Block(m.addr)
		}
	}
	self := c.peerInfo(m)
	cfg := cluster.DefaultConfig()
	cfg.NodeID = m.id
	cfg.Zone = self.Zone
	cfg.AdminAddr = self.AdminAddr
	if m.proxy {
		cfg.Role = fsm.RoleProxy // it waits to be added; it never bootstraps
	} else {
		cfg.Peers = c.peers()
	}
	cfg.Logger = c.opts.logger.With("node", m.id)
	cfg.Transport = m.trans
	cfg.LogStore, cfg.StableStore, cfg.SnapshotStore = m.logs, m.stable, m.snaps
	if c.opts.configure != nil {
		c.opts.configure(&cfg)
	}
	n, err := cluster.Open(context.Background(), cfg)
	if err != nil {
		c.t.Fatalf("clustertest: open %s: %v", m.id, err)
	}
	m.node = n
}

// IDs lists the node ids in order.
func (c *Cluster) IDs() []string { return append([]string(nil), c.order...) }

// Node returns the running node with this id, or nil while it is killed.
func (c *Cluster) Node(id string) *cluster.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.byID[id]
	if !ok {
		c.t.Fatalf("clustertest: no node %q", id)
	}
	return m.node
}

// Nodes returns the running nodes in id order.
func (c *Cluster) Nodes() []*cluster.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*cluster.Node
	for _, id := range c.order {
		if n := c.byID[id].node; n != nil {
			out = append(out, n)
		}
	}
	return out
}

// Leader polls until a running node leads and has finished taking office
// (its own fsm Node record is written), and returns it. When a partitioned
// former leader still believes it leads, the one with the highest term wins.
func (c *Cluster) Leader(t testing.TB) *cluster.Node {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for {
		var best *cluster.Node
		var bestTerm uint64
		for _, n := range c.Nodes() {
			if !n.IsLeader() {
				continue
			}
			st := n.Status()
			if _, ok := n.Config().Nodes[st.NodeID]; !ok {
				continue
			}
			if best == nil || st.Term > bestTerm {
				best, bestTerm = n, st.Term
			}
		}
		if best != nil {
			return best
		}
		if time.Now().After(deadline) {
			t.Fatalf("clustertest: no leader within %s", WaitTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Followers returns the running nodes other than leader.
func (c *Cluster) Followers(leader *cluster.Node) []*cluster.Node {
	var out []*cluster.Node
	for _, n := range c.Nodes() {
		if n != leader {
			out = append(out, n)
		}
	}
	return out
}

// ID returns the id of a node of this cluster.
func (c *Cluster) ID(n *cluster.Node) string { return n.PeerInfo().ID }

// Partition cuts the given nodes off from the others, in both directions,
// until Heal. Nodes restarted meanwhile stay on their side.
func (c *Cluster) Partition(ids ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.island = make(map[string]bool)
	for _, id := range ids {
		if _, ok := c.byID[id]; !ok {
			c.t.Fatalf("clustertest: no node %q", id)
		}
		c.island[id] = true
	}
	for _, a := range c.byID {
		a.trans.UnblockAll()
		for _, b := range c.byID {
			if a != b && c.island[a.id] != c.island[b.id] {
				a.trans.Block(b.addr)
			}
		}
	}
}

// Connected reports whether the current partition lets a and b talk (it
// says nothing of whether they run).
func (c *Cluster) Connected(a, b string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.island == nil || c.island[a] == c.island[b]
}

// Heal ends the partition.
func (c *Cluster) Heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.island = nil
	for _, m := range c.byID {
		m.trans.UnblockAll()
	}
}

// Kill stops a node as a crash would, keeping its stores; peers' RPCs to
// it fail at once, as with a refused connection.
func (c *Cluster) Kill(id string) {
	c.t.Helper()
	c.mu.Lock()
	m := c.byID[id]
	n := m.node
	m.node = nil
	for _, o := range c.byID {
		if o != m && o.trans != nil {
			o.trans.Disconnect(m.addr)
		}
	}
	c.mu.Unlock()
	if n == nil {
		c.t.Fatalf("clustertest: %s is not running", id)
	}
	if err := n.Close(); err != nil {
		c.t.Errorf("clustertest: close %s: %v", id, err)
	}
}

// Restart starts a killed node again over the same stores.
func (c *Cluster) Restart(id string) *cluster.Node {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.byID[id]
	if m.node != nil {
		c.t.Fatalf("clustertest: %s is running", id)
	}
	c.start(m)
	return m.node
}

// WaitForIndex waits until every running node has applied index.
func (c *Cluster) WaitForIndex(t testing.TB, index uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	for _, n := range c.Nodes() {
		if _, err := n.WaitForIndex(ctx, index); err != nil {
			t.Fatalf("clustertest: %s at index %d, want %d: %v", c.ID(n), n.Config().Index, index, err)
		}
	}
}

// Close stops every node; NewCluster registers it with t.Cleanup.
func (c *Cluster) Close() {
	c.mu.Lock()
	var nodes []*cluster.Node
	for _, m := range c.byID {
		if m.node != nil {
			nodes = append(nodes, m.node)
			m.node = nil
		}
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.Close(); err != nil {
				c.t.Errorf("clustertest: close: %v", err)
			}
		}()
	}
	wg.Wait()
}

// ListenerCommand is a valid command for tests: put listener name on port.
func ListenerCommand(name string, port int) *fsm.Command {
	spec, _ := json.Marshal(fsm.ListenerSpec{Port: port})
	return fsm.PutCommand(fsm.Object{Kind: fsm.KindListener, Name: name, Spec: spec}, nil)
}

// Apply writes cmd through whichever node leads, retrying when leadership
// moves (a write cut off by a leader change may already have applied, so
// use it for idempotent commands such as puts without CAS). It returns the
// index at which the command applied.
func (c *Cluster) Apply(t testing.TB, cmd *fsm.Command) uint64 {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for {
		n := c.Leader(t)
		ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
		idx, err := n.Apply(ctx, cmd)
		cancel()
		if err == nil {
			return idx
		}
		if !errors.Is(err, cluster.ErrNotLeader) && !errors.Is(err, cluster.ErrNoLeader) || time.Now().After(deadline) {
			t.Fatalf("clustertest: apply: %v", err)
		}
	}
}
