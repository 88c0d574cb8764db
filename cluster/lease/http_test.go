package lease_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cluster/clustertest"
	"github.com/rafterlb/rafter/cluster/httpapi"
	"github.com/rafterlb/rafter/cluster/lease"
	"github.com/rafterlb/rafter/fsm"
)

// apiCluster is an in-memory Raft cluster whose nodes serve the real admin
// API, with a lease Manager each, on 127.0.0.1 ports: what three agents
// run, minus the data plane.
type apiCluster struct {
	c        *clustertest.Cluster
	addrs    map[string]string // node id -> admin address
	servers  map[string]*http.Server
	regs     map[string]*prometheus.Registry
	blockMu  sync.Mutex
	blocked  map[uint64]bool // leases whose owners' lease requests are cut off
	stopMu   sync.Mutex
	stoppers map[string]func()
}

func newAPICluster(t *testing.T) *apiCluster {
	t.Helper()
	ac := &apiCluster{
		addrs: map[string]string{}, servers: map[string]*http.Server{},
		regs: map[string]*prometheus.Registry{}, blocked: map[uint64]bool{},
		stoppers: map[string]func(){},
	}
	lns := map[string]net.Listener{}
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("node%d", i)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[id] = ln
		ac.addrs[id] = ln.Addr().String()
	}
	ac.c = clustertest.NewCluster(t, 3, clustertest.WithConfig(func(cfg *cluster.Config) {
		cfg.AdminAddr = ac.addrs[cfg.NodeID]
		for i := range cfg.Peers {
			cfg.Peers[i].AdminAddr = ac.addrs[cfg.Peers[i].ID]
		}
	}))
	for _, n := range ac.c.Nodes() {
		id := ac.c.ID(n)
		reg := prometheus.NewRegistry()
		ac.regs[id] = reg
		lcfg := lease.DefaultConfig()
		lcfg.Store = n
		lcfg.Registerer = reg
		lcfg.CheckInterval = clusterInterval
		m, err := lease.New(lcfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			m.Run(ctx)
		}()
		acfg := httpapi.DefaultConfig()
		acfg.Store = n
		acfg.NodeID = id
		acfg.Leases = m
		acfg.Logger = slog.New(slog.DiscardHandler)
		api, err := httpapi.New(acfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: ac.cut(api), ReadHeaderTimeout: 5 * time.Second}
		ac.servers[id] = srv
		served := make(chan struct{})
		go func() {
			defer close(served)
			_ = srv.Serve(lns[id])
		}()
		var once sync.Once
		stop := func() {
			once.Do(func() {
				_ = srv.Close()
				<-served
				cancel()
				<-done
			})
		}
		ac.stoppers[id] = stop
		t.Cleanup(stop)
	}
	ac.c.Leader(t)
	spec := []byte(`{}`)
	ac.c.Apply(t, fsm.PutCommand(fsm.Object{Kind: fsm.KindPool, Name: "app", Spec: spec}, nil))
	return ac
}

// cut drops lease requests (keepalive, revoke) of blocked leases, as if
// their owners were cut off from the cluster.
func (ac *apiCluster) cut(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.Path, "/v1/leases/"); ok {
			idText, _, _ := strings.Cut(rest, "/")
			id, _ := strconv.ParseUint(idText, 10, 64)
			ac.blockMu.Lock()
			b := ac.blocked[id]
			ac.blockMu.Unlock()
			if b {
				http.Error(w, "cut off", http.StatusServiceUnavailable)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func (ac *apiCluster) block(id uint64) {
	ac.blockMu.Lock()
	defer ac.blockMu.Unlock()
	ac.blocked[id] = true
}

// kill stops a node: its admin API and lease Manager, then Raft.
func (ac *apiCluster) kill(id string) {
	ac.stoppers[id]()
	ac.c.Kill(id)
}

// clients returns clients of every node, starting with node first.
func (ac *apiCluster) clients(first int) []*client.Client {
	ids := ac.c.IDs()
	var out []*client.Client
	for i := range ids {
		out = append(out, client.New(ac.addrs[ids[(first+i)%len(ids)]], "", nil))
	}
	return out
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
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

// TestAPIRegistration is the acceptance run through the admin API:
// `rafter register` loops (client.Registrar) register concurrently
// through all three nodes; keepalives write no Raft entries; owners cut
// off from the cluster leave while the rest stay; killing the leader
// loses no lease whose owner kept sending keepalives.
func TestAPIRegistration(t *testing.T) {
	// 150 owners through HTTP (TestClusterLeases runs 500 against the
	// Managers): three in-memory Raft nodes, their APIs and every owner
	// share one test process, and more starve Raft's heartbeats under -race.
	const owners, cutOff = 150, 30
	ac := newAPICluster(t)
	regs := make([]*client.Registrar, owners)
	cancels := make([]context.CancelFunc, owners)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		for _, c := range cancels {
			c()
		}
		wg.Wait()
	})
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	for i := range owners {
		r, err := client.NewRegistrar(client.RegistrarConfig{
			Logger:  logger,
			Clients: ac.clients(i % 3),
			Pool:    "app",
			Addr:    fmt.Sprintf("10.2.%d.%d:8080", i/250, i%250+1),
			Zone:    fmt.Sprintf("zone-%d", i%3+1),
			TTL:     clusterTTL,
		})
		if err != nil {
			t.Fatal(err)
		}
		regs[i] = r
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i] = cancel
		wg.Go(func() {
			if err := r.Run(ctx); err != nil {
				t.Errorf("registrar %d: %v", i, err)
			}
		})
		// Registrations run 50 at a time: a herd of 500 grants at once
		// only measures the test machine.
		if i%50 == 49 {
			for _, r := range regs[i-49 : i+1] {
				waitUntil(t, "a batch of registrations", func() bool { return r.Lease() != 0 })
			}
		}
	}
	backends := func() map[string]uint64 { return backendsOf(ac.c.Leader(t).Config()) }
	waitUntil(t, "every registration", func() bool { return len(backends()) == owners })
	ids := make([]uint64, owners)
	for i, r := range regs {
		waitUntil(t, "registrar's lease", func() bool { return r.Lease() != 0 })
		ids[i] = r.Lease()
	}

	// Keepalives for 1.5 TTL: not one Raft entry.
	leader := ac.c.Leader(t)
	lreg := ac.regs[ac.c.ID(leader)]
	before := leader.Status().CommitIndex
	kaBefore := counter(t, lreg, "rafter_lease_keepalives_total")
	waitUntil(t, "1.5 TTL of keepalives", func() bool {
		return counter(t, lreg, "rafter_lease_keepalives_total") >= kaBefore+owners*4.5
	})
	if after := leader.Status().CommitIndex; after != before {
		t.Fatalf("commit index moved from %d to %d during keepalives only", before, after)
	}

	// 100 owners are cut off: their backends leave, the others stay.
	for i := range cutOff {
		ac.block(ids[i])
	}
	waitUntil(t, "cut-off owners' backends removed", func() bool { return len(backends()) == owners-cutOff })
	bes := backends()
	for i, r := range regs {
		addr := fmt.Sprintf("10.2.%d.%d:8080", i/250, i%250+1)
		if lid, ok := bes[addr]; ok == (i < cutOff) || ok && lid != ids[i] {
			t.Fatalf("owner %d (%s, lease %d, now %d): present=%v", i, addr, ids[i], r.Lease(), ok)
		}
	}

	// Kill the leader, API and all: the registrars move to other nodes and
	// lose nothing.
	old := ac.c.ID(leader)
	ac.kill(old)
	newLeader := ac.c.Leader(t)
	nreg := ac.regs[ac.c.ID(newLeader)]
	waitUntil(t, "two TTLs of keepalives on the new leader", func() bool {
		return counter(t, nreg, "rafter_lease_keepalives_total") >= (owners-cutOff)*6
	})
	cfg := ac.c.Leader(t).Config()
	bes = backendsOf(cfg)
	if len(bes) != owners-cutOff {
		t.Fatalf("%d backends after the leader change, want %d", len(bes), owners-cutOff)
	}
	for i := cutOff; i < owners; i++ {
		if got := regs[i].Lease(); got != ids[i] {
			t.Fatalf("owner %d re-registered (lease %d, was %d): its lease was lost", i, got, ids[i])
		}
	}
	if got := counter(t, nreg, "rafter_lease_expired_total"); got != 0 {
		t.Fatalf("the new leader expired %v leases", got)
	}

	// A registrar stopped gracefully revokes: its backend drains, then leaves.
	last := owners - 1
	cancels[last]()
	addr := fmt.Sprintf("10.2.%d.%d:8080", last/250, last%250+1)
	waitUntil(t, "revoked backend removed", func() bool {
		_, ok := backends()[addr]
		return !ok
	})
}

// TestAPIBadInput: unknown pool, unknown lease, bad address and TTL out of
// range each answer a 4xx naming the field, and store nothing.
func TestAPIBadInput(t *testing.T) {
	ac := newAPICluster(t)
	ctx := context.Background()
	cl := client.New(ac.addrs["node2"], "", nil)
	l, err := cl.GrantLease(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	one := 1
	big := 5000
	tests := []struct {
		name   string
		call   func() error
		status int
		field  string
	}{
		{"ttl too short", func() error { _, err := cl.GrantLease(ctx, time.Second); return err }, 400, "ttl"},
		{"ttl too long", func() error { _, err := cl.GrantLease(ctx, 25*time.Hour); return err }, 400, "ttl"},
		{"unknown pool", func() error {
			_, err := cl.RegisterBackend(ctx, "nope", "10.0.0.1:80", client.BackendRegistration{Lease: l.ID, Weight: &one})
			return err
		}, 404, "pool"},
		{"unknown lease", func() error {
			_, err := cl.RegisterBackend(ctx, "app", "10.0.0.1:80", client.BackendRegistration{Lease: 99999})
			return err
		}, 404, "lease"},
		{"missing lease", func() error {
			_, err := cl.RegisterBackend(ctx, "app", "10.0.0.1:80", client.BackendRegistration{})
			return err
		}, 400, "lease"},
		{"bad address", func() error {
			_, err := cl.RegisterBackend(ctx, "app", "10.0.0.1", client.BackendRegistration{Lease: l.ID})
			return err
		}, 400, "addr"},
		{"bad port", func() error {
			_, err := cl.RegisterBackend(ctx, "app", "10.0.0.1:99999", client.BackendRegistration{Lease: l.ID})
			return err
		}, 400, "addr"},
		{"bad weight", func() error {
			_, err := cl.RegisterBackend(ctx, "app", "10.0.0.1:80", client.BackendRegistration{Lease: l.ID, Weight: &big})
			return err
		}, 400, "weight"},
		{"keepalive unknown lease", func() error { _, err := cl.KeepAliveLease(ctx, 99999); return err }, 404, "id"},
		{"revoke unknown lease", func() error { _, err := cl.RevokeLease(ctx, 99999); return err }, 404, "id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := ac.c.Leader(t).Config().Index
			err := tt.call()
			var ae *client.APIError
			if !errors.As(err, &ae) || ae.Status != tt.status || ae.Field != tt.field {
				t.Fatalf("err = %v (%+v), want %d naming %q", err, ae, tt.status, tt.field)
			}
			if after := ac.c.Leader(t).Config().Index; after != before {
				t.Fatalf("a refused request moved the index from %d to %d", before, after)
			}
		})
	}
}
