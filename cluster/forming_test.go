package cluster

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeAdmin stands in for the admin API on the two routes forming uses:
// GET /v1/internal/peer and POST /v1/nodes (forwarded to the leader).
type fakeAdmin struct {
	token string
	mu    sync.Mutex
	nodes map[string]*atomic.Pointer[Node] // by admin address
	srv   []*httptest.Server
}

func newFakeAdmin(t *testing.T, token string) *fakeAdmin {
	return &fakeAdmin{token: token, nodes: map[string]*atomic.Pointer[Node]{}}
}

// server starts one node's admin endpoint on 127.0.0.1 and returns its
// address and the slot the node goes in once open.
func (f *fakeAdmin) server(t *testing.T) (string, *atomic.Pointer[Node]) {
	slot := new(atomic.Pointer[Node])
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+f.token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		n := slot.Load()
		if n == nil {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/v1/internal/peer":
			_ = json.NewEncoder(w).Encode(n.PeerInfo())
		case r.Method == http.MethodPost && r.URL.Path == "/v1/nodes":
			var info PeerInfo
			if err := json.NewDecoder(r.Body).Decode(&info); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			leader := f.leader()
			if leader == nil {
				http.Error(w, "no leader", http.StatusServiceUnavailable)
				return
			}
			if err := leader.AddMember(r.Context(), info); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	f.mu.Lock()
	f.nodes[addr] = slot
	f.mu.Unlock()
	return addr, slot
}

func (f *fakeAdmin) leader() *Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.nodes {
		if n := s.Load(); n != nil && n.IsLeader() {
			return n
		}
	}
	return nil
}

// TestFormingBootstrapExpect: three nodes that only know each other's
// admin addresses form one cluster, bootstrapped exactly once; restarted,
// they do not bootstrap again; a fourth node joins through a follower.
func TestFormingBootstrapExpect(t *testing.T) {
	const token = "s3cret"
	logs := newCountingHandler()
	admin := newFakeAdmin(t, token)

	type slotNode struct {
		cfg  Config
		slot *atomic.Pointer[Node]
	}
	var members []*slotNode
	var join []string
	for i := 1; i <= 3; i++ {
		addr, slot := admin.server(t)
		join = append(join, addr)
		cfg := diskConfig(fmt.Sprintf("form%d", i), t.TempDir(), "127.0.0.1:0")
		cfg.AdminAddr = addr
		cfg.Zone = fmt.Sprintf("zone-%d", i)
		cfg.InstanceID, cfg.ENI, cfg.PrivateIP = fmt.Sprintf("i-%d", i), fmt.Sprintf("eni-%d", i), fmt.Sprintf("10.0.0.%d", i)
		members = append(members, &slotNode{cfg: cfg, slot: slot})
	}
	start := func() []*Node {
		var nodes []*Node
		// Highest id first, so the bootstrapper is not simply the first up.
		for i := len(members) - 1; i >= 0; i-- {
			m := members[i]
			m.cfg.BootstrapExpect = 3
			m.cfg.Join = join
			m.cfg.Token = token
			m.cfg.Logger = slog.New(logs)
			n := openNode(t, m.cfg)
			m.slot.Store(n)
			m.cfg.RaftBind = n.PeerInfo().RaftAddr
			nodes = append(nodes, n)
		}
		return nodes
	}
	formed := func(nodes []*Node) *Node {
		t.Helper()
		var leader *Node
		waitFor(t, "one leader and every node record", func() bool {
			leader = admin.leader()
			if leader == nil {
				return false
			}
			for _, n := range nodes {
				if len(n.Config().Nodes) != len(nodes) || len(n.Status().Members) != len(nodes) {
					return false
				}
			}
			return true
		})
		return leader
	}

	nodes := start()
	leader := formed(nodes)
	if got := logs.count("bootstrapped cluster"); got != 1 {
		t.Fatalf("bootstrapped %d times, want once", got)
	}
	if leader.Config().Nodes["form2"].AdminAddr != join[1] || leader.Config().Nodes["form2"].Zone != "zone-2" {
		t.Fatalf("node record form2 = %+v", leader.Config().Nodes["form2"])
	}
	// The AWS identity each node was started with reaches every node's
	// copy of every record.
	identity := func(nodes []*Node, ids ...int) {
		t.Helper()
		waitFor(t, "the nodes' AWS identity in every record", func() bool {
			for _, n := range nodes {
				for _, i := range ids {
					r := n.Config().Nodes[fmt.Sprintf("form%d", i)]
					if r == nil || r.InstanceID != fmt.Sprintf("i-%d", i) || r.ENI != fmt.Sprintf("eni-%d", i) || r.PrivateIP != fmt.Sprintf("10.0.0.%d", i) {
						return false
					}
				}
			}
			return true
		})
	}
	identity(nodes, 1, 2, 3)
	idx := apply(t, leader, listenerCmd("web", 8080))

	for _, n := range nodes {
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
	nodes = start()
	leader = formed(nodes)
	if got := logs.count("bootstrapped cluster"); got != 1 {
		t.Fatalf("bootstrapped %d times after restart, want once", got)
	}
	if got := logs.count("raft state found, not forming"); got != 3 {
		t.Fatalf("%d nodes skipped forming on restart, want 3", got)
	}
	if _, err := leader.WaitForIndex(testCtx(t), idx); err != nil || leader.Config().Listeners["web"] == nil {
		t.Fatalf("state lost across restart: %v", err)
	}

	// A node started without bootstrap_expect asks the running cluster
	// (through any member) to add it.
	addr, slot := admin.server(t)
	cfg := diskConfig("form4", t.TempDir(), "127.0.0.1:0")
	cfg.BootstrapExpect = 0
	cfg.InstanceID, cfg.ENI, cfg.PrivateIP = "i-4", "eni-4", "10.0.0.4"
	cfg.AdminAddr = addr
	cfg.Join = []string{join[2]}
	cfg.Token = token
	cfg.Logger = slog.New(logs)
	n4 := openNode(t, cfg)
	slot.Store(n4)
	formed(append(nodes, n4))
	if got := logs.count("bootstrapped cluster"); got != 1 {
		t.Fatalf("bootstrapped %d times after a join, want once", got)
	}
	if _, err := n4.WaitForIndex(testCtx(t), idx); err != nil {
		t.Fatalf("joined node did not catch up: %v", err)
	}
	identity(append(nodes, n4), 1, 2, 3, 4)
}
