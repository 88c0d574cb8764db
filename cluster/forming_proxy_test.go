package cluster

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/rafterlb/rafter/fsm"
)

// TestFormingWithProxy: a proxy listed among the voters' join addresses
// and started before them is not counted by bootstrap_expect 3; the
// lowest voter bootstraps the three voters once, and the proxy, which
// never bootstraps, joins the running cluster as a non-voter.
func TestFormingWithProxy(t *testing.T) {
	const token = "s3cret"
	logs := newCountingHandler()
	admin := newFakeAdmin(t, token)

	proxyAddr, proxySlot := admin.server(t)
	var join []string
	var cfgs []Config
	var slots []func(*Node)
	for i := 1; i <= 3; i++ {
		addr, slot := admin.server(t)
		join = append(join, addr)
		cfg := diskConfig(fmt.Sprintf("vote%d", i), t.TempDir(), "127.0.0.1:0")
		cfg.AdminAddr = addr
		cfgs = append(cfgs, cfg)
		slots = append(slots, func(n *Node) { slot.Store(n) })
	}
	pcfg := diskConfig("proxy1", t.TempDir(), "127.0.0.1:0")
	pcfg.Role = fsm.RoleProxy
	pcfg.BootstrapExpect = 0
	pcfg.AdminAddr = proxyAddr
	pcfg.Join = join
	pcfg.Token = token
	pcfg.Logger = slog.New(logs)
	proxy := openNode(t, pcfg)
	proxySlot.Store(proxy)

	var voters []*Node
	for i, cfg := range cfgs {
		cfg.BootstrapExpect = 3
		cfg.Join = append([]string{proxyAddr}, join...)
		cfg.Token = token
		cfg.Logger = slog.New(logs)
		n := openNode(t, cfg)
		slots[i](n)
		voters = append(voters, n)
	}
	waitFor(t, "3 voters and 1 proxy in every node's status and records", func() bool {
		for _, n := range append(voters, proxy) {
			st := n.Status()
			if len(st.Members) != 4 || len(n.Config().Nodes) != 4 {
				return false
			}
			for _, m := range st.Members {
				want := "Voter"
				if m.ID == "proxy1" {
					want = "Nonvoter"
				}
				if m.Suffrage != want {
					return false
				}
			}
			if r := n.Config().Nodes["proxy1"]; r == nil || r.Role != fsm.RoleProxy {
				return false
			}
		}
		return true
	})
	if got := logs.count("bootstrapped cluster"); got != 1 {
		t.Fatalf("bootstrapped %d times, want once", got)
	}
	if proxy.IsLeader() {
		t.Fatal("the proxy leads")
	}
	leader := admin.leader()
	idx := apply(t, leader, listenerCmd("web", 8080))
	if _, err := proxy.WaitForIndex(testCtx(t), idx); err != nil {
		t.Fatalf("proxy did not receive the write: %v", err)
	}
}

func TestProxyConfig(t *testing.T) {
	cfg := diskConfig("p", t.TempDir(), "127.0.0.1:0")
	cfg.Role = fsm.RoleProxy
	cfg.BootstrapExpect = 3
	cfg.Join = []string{"127.0.0.1:7700"}
	if err := cfg.Validate(); err == nil {
		t.Fatal("a proxy with bootstrap_expect was accepted")
	}
	cfg.BootstrapExpect = 0
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a proxy joining: %v", err)
	}
	cfg.Role = "observer"
	if err := cfg.Validate(); err == nil {
		t.Fatal("role observer was accepted")
	}
}
