package lease_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cluster/clustertest"
	"github.com/rafterlb/rafter/cluster/lease"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

const (
	// clusterTTL leaves a keepalive (sent every TTL/3) more than three
	// seconds of slack: 500 owners under -race on a busy 2-core machine
	// sometimes need it, and a late keepalive is a lease expiry.
	clusterTTL      = 5 * time.Second
	clusterInterval = 250 * time.Millisecond
	waitLong        = 30 * time.Second
)

// leaseCluster is an in-memory three-node cluster with a lease Manager on
// every node, as the agent runs them.
type leaseCluster struct {
	c        *clustertest.Cluster
	managers map[string]*lease.Manager
	regs     map[string]*prometheus.Registry
}

func newLeaseCluster(t *testing.T, opts ...clustertest.Option) *leaseCluster {
	t.Helper()
	c := clustertest.NewCluster(t, 3, opts...)
	lc := &leaseCluster{c: c, managers: map[string]*lease.Manager{}, regs: map[string]*prometheus.Registry{}}
	for _, n := range c.Nodes() {
		cfg := lease.DefaultConfig()
		cfg.Store = n
		reg := prometheus.NewRegistry()
		lc.regs[c.ID(n)] = reg
		cfg.Registerer = reg
		cfg.CheckInterval = clusterInterval
		m, err := lease.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			m.Run(ctx)
		}()
		t.Cleanup(func() { cancel(); <-done })
		lc.managers[c.ID(n)] = m
	}
	c.Leader(t)
	spec, _ := json.Marshal(fsm.PoolSpec{})
	c.Apply(t, fsm.PutCommand(fsm.Object{Kind: fsm.KindPool, Name: "app", Spec: spec}, nil))
	return lc
}

// leaderManager is the Manager of the node that leads now, or nil.
func (lc *leaseCluster) leaderManager() *lease.Manager {
	for _, n := range lc.c.Nodes() {
		if n.IsLeader() {
			return lc.managers[lc.c.ID(n)]
		}
	}
	return nil
}

// owner is one self-registered backend and its keepalive loop.
type owner struct {
	addr   string
	id     uint64
	stop   chan struct{}
	done   chan struct{}
	halt   sync.Once
	lost   atomic.Bool // a keepalive was answered "not found"
	paused atomic.Bool // keepalives are skipped while set
	sends  atomic.Int64
}

// call runs op against node via its Manager, forwarding to the leader's
// Manager when that node is not the leader, as the admin API does.
func (lc *leaseCluster) call(node string, op func(*lease.Manager) error) error {
	err := op(lc.managers[node])
	if !errors.Is(err, cluster.ErrNotLeader) {
		return err
	}
	m := lc.leaderManager()
	if m == nil {
		return cluster.ErrNoLeader
	}
	return op(m)
}

// stopKeepAlives ends o's keepalive loop and waits for it.
func (o *owner) stopKeepAlives() {
	o.halt.Do(func() { close(o.stop) })
	<-o.done
}

// startOwners registers n owners concurrently through all nodes, each
// starting its keepalives as soon as it is registered; the test's cleanup
// stops them.
func (lc *leaseCluster) startOwners(t *testing.T, n int) []*owner {
	t.Helper()
	all := make([]*owner, n)
	var mu sync.Mutex
	var started []*owner
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, o := range started {
			o.stopKeepAlives()
		}
	})
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			o := lc.register(t, i)
			if o == nil {
				return
			}
			mu.Lock()
			started = append(started, o)
			mu.Unlock()
			go lc.keepAlive(i, o)
			all[i] = o
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return all
}

func (lc *leaseCluster) register(t *testing.T, i int) *owner {
	o := &owner{addr: fmt.Sprintf("10.1.%d.%d:8080", i/250, i%250+1), stop: make(chan struct{}), done: make(chan struct{})}
	node := lc.c.IDs()[i%3]
	deadline := time.Now().Add(waitLong)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := lc.call(node, func(m *lease.Manager) error {
			l, err := m.Grant(ctx, clusterTTL)
			o.id = l.ID
			return err
		})
		if err == nil {
			err = lc.apply(ctx, node, fsm.BackendRegisterCommand("app", fsm.Backend{Addr: o.addr, Lease: o.id, Weight: 1}))
		}
		cancel()
		if err == nil {
			return o
		}
		if time.Now().After(deadline) {
			t.Errorf("register %s: %v", o.addr, err)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// apply writes cmd through node, or through the leader when node is not it.
func (lc *leaseCluster) apply(ctx context.Context, node string, cmd *fsm.Command) error {
	_, err := lc.c.Node(node).Apply(ctx, cmd)
	if errors.Is(err, cluster.ErrNotLeader) {
		if n := lc.leaderNode(); n != nil {
			_, err = n.Apply(ctx, cmd)
		}
	}
	return err
}

func (lc *leaseCluster) leaderNode() *cluster.Node {
	for _, n := range lc.c.Nodes() {
		if n.IsLeader() {
			return n
		}
	}
	return nil
}

// keepAlive sends a keepalive every TTL/3 through node i%3 until o.stop.
func (lc *leaseCluster) keepAlive(i int, o *owner) {
	defer close(o.done)
	tick := time.NewTicker(clusterTTL / 3)
	defer tick.Stop()
	for {
		select {
		case <-o.stop:
			return
		case <-tick.C:
		}
		if o.paused.Load() {
			continue
		}
		ids := lc.c.IDs()
		node := ids[i%3]
		if lc.c.Node(node) == nil {
			node = ids[(i+1)%3]
		}
		o.sends.Add(1)
		err := lc.call(node, func(m *lease.Manager) error {
			_, err := m.KeepAlive(context.Background(), o.id)
			return err
		})
		if errors.Is(err, fsm.ErrNotFound) {
			o.lost.Store(true)
		}
	}
}

func backendsOf(c *fsm.Config) map[string]uint64 {
	out := map[string]uint64{}
	for _, be := range c.Pools["app"].Spec.Backends {
		out[be.Addr] = be.Lease
	}
	return out
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, waitLong, what, cond)
}

// TestClusterLeases is the acceptance run on an in-memory cluster: 500
// backends registered concurrently through all three nodes; keepalives
// write no Raft entries; owners that stop leave while the rest stay;
// killing the leader loses no lease whose owner kept sending keepalives.
func TestClusterLeases(t *testing.T) {
	const owners, quitters = 500, 100
	lc := newLeaseCluster(t, clustertest.WithLogger(slog.New(slog.DiscardHandler)))

	all := lc.startOwners(t, owners)

	leader := lc.c.Leader(t)
	if got := len(backendsOf(leader.Config())); got != owners {
		t.Fatalf("%d backends registered, want %d", got, owners)
	}

	// Keepalives for more than a TTL: not one Raft entry.
	before := leader.Status().CommitIndex
	var sendsBefore int64
	for _, o := range all {
		sendsBefore += o.sends.Load()
	}
	waitUntil(t, "1.5 TTL of keepalives", func() bool {
		var n int64
		for _, o := range all {
			n += o.sends.Load()
		}
		return n >= sendsBefore+int64(owners)*5
	})
	if after := leader.Status().CommitIndex; after != before {
		t.Fatalf("commit index moved from %d to %d during keepalives only (%d leases left)", before, after, len(leader.Config().Leases))
	}

	// 100 owners (20%) stop: their backends leave, the others stay.
	stoppedAt := time.Now()
	for _, o := range all[:quitters] {
		o.stopKeepAlives()
	}
	waitUntil(t, "quitters' backends removed", func() bool {
		return len(backendsOf(lc.c.Leader(t).Config())) == owners-quitters
	})
	t.Logf("%d stopped owners left after %v (TTL %v, check interval %v)", quitters, time.Since(stoppedAt), clusterTTL, clusterInterval)
	bes := backendsOf(lc.c.Leader(t).Config())
	for i, o := range all {
		if _, ok := bes[o.addr]; ok == (i < quitters) {
			t.Fatalf("owner %d (%s, lease %d): present=%v", i, o.addr, o.id, ok)
		}
	}

	// Kill the leader; the keepalives follow the new one and lose nothing.
	old := lc.c.ID(lc.c.Leader(t))
	lc.c.Kill(old)
	newLeader := lc.c.Leader(t)
	if lc.c.ID(newLeader) == old {
		t.Fatal("the killed node still leads")
	}
	var sendsNow int64
	for _, o := range all[quitters:] {
		sendsNow += o.sends.Load()
	}
	waitUntil(t, "two TTLs of keepalives after the leader change", func() bool {
		var n int64
		for _, o := range all[quitters:] {
			n += o.sends.Load()
		}
		return n >= sendsNow+int64(owners-quitters)*6
	})
	cfg := lc.c.Leader(t).Config()
	if got := len(backendsOf(cfg)); got != owners-quitters {
		t.Fatalf("%d backends after the leader change, want %d", got, owners-quitters)
	}
	for _, o := range all[quitters:] {
		if o.lost.Load() {
			t.Fatalf("owner %s lost lease %d though it kept sending keepalives", o.addr, o.id)
		}
		if _, ok := cfg.Leases[o.id]; !ok {
			t.Fatalf("lease %d of %s gone", o.id, o.addr)
		}
	}
}

// metric reads a metric of node id's lease Manager.
func (lc *leaseCluster) metric(t *testing.T, id, name string) float64 {
	t.Helper()
	mfs, err := lc.regs[id].Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// TestClusterSelfPreservation: 80% of the owners stop sending keepalives
// at once; the leader holds expiry and its gauge says so for as long as
// they are away (two TTLs here); when they come back nothing was lost.
func TestClusterSelfPreservation(t *testing.T) {
	const owners, paused = 50, 40
	lc := newLeaseCluster(t)
	all := lc.startOwners(t, owners)
	leaderID := lc.c.ID(lc.c.Leader(t))
	waitUntil(t, "a keepalive from every owner", func() bool {
		for _, o := range all {
			if o.sends.Load() == 0 {
				return false
			}
		}
		return true
	})
	for _, o := range all[:paused] {
		o.paused.Store(true)
	}
	pausedAt := time.Now()
	waitUntil(t, "expiry held", func() bool { return lc.metric(t, leaderID, "rafter_lease_expiry_held") == 1 })
	waitUntil(t, "two TTLs of silence", func() bool {
		if n := len(lc.c.Leader(t).Config().Leases); n != owners {
			t.Fatalf("%d leases left while 80%% of owners were silent, want %d", n, owners)
		}
		return time.Since(pausedAt) > 2*clusterTTL
	})
	if !lc.managers[leaderID].Held() {
		t.Fatal("expiry no longer held while the owners are still silent")
	}
	for _, o := range all[:paused] {
		o.paused.Store(false)
	}
	waitUntil(t, "expiry resumed", func() bool { return lc.metric(t, leaderID, "rafter_lease_expiry_held") == 0 })
	resumedAt := time.Now()
	waitUntil(t, "two TTLs after resuming", func() bool { return time.Since(resumedAt) > 2*clusterTTL })
	cfg := lc.c.Leader(t).Config()
	if len(cfg.Leases) != owners || len(backendsOf(cfg)) != owners {
		t.Fatalf("%d leases, %d backends after keepalives resumed, want %d", len(cfg.Leases), len(backendsOf(cfg)), owners)
	}
	for _, o := range all {
		if o.lost.Load() {
			t.Fatalf("owner %s lost lease %d", o.addr, o.id)
		}
	}
	if got := lc.metric(t, leaderID, "rafter_lease_expired_total"); got != 0 {
		t.Fatalf("expired_total = %v", got)
	}
}
