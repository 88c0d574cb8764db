package dataplane

import (
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func vipConfig(port int, vips map[string]fsm.VIPSpec) *fsm.Config {
	cfg := config{
		listeners: map[string]fsm.ListenerSpec{"web": {Port: port}},
		routes: map[string]fsm.RouteSpec{"ok": {Listener: "web",
			Action: fsm.RouteAction{Respond: &fsm.Respond{Status: 200, Body: "ok"}}}},
	}.build()
	cfg.VIPs = map[string]*fsm.VIP{}
	for n, s := range vips {
		cfg.VIPs[n] = &fsm.VIP{Name: n, Spec: s}
	}
	return cfg
}

func (d *Dataplane) boundOn(ip string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.listeners["web@"+ip]
	return ok
}

// Every listener also serves on the linux VIPs this node may hold, and
// stops when the VIP goes; VIPs of other nodes and other providers are
// not bound.
func TestListenersServeLinuxVIPs(t *testing.T) {
	port := freePort(t)
	linux := func(addr string, candidates ...string) fsm.VIPSpec {
		return fsm.VIPSpec{Provider: fsm.ProviderLinux, Address: addr, HomeNode: candidates[0], Candidates: candidates}
	}
	src := newFakeSource(vipConfig(port, map[string]fsm.VIPSpec{
		"mine":  linux("127.77.0.1/32", "n1", "n2"),
		"other": linux("127.77.0.2/32", "n2", "n3"),
		"eip":   {Provider: fsm.ProviderAWSEIP, AllocationID: "eipalloc-1", HomeNode: "n1"},
		// Not on this host at all: only IP_FREEBIND lets it bind.
		"absent": linux("10.255.77.1/24", "n1"),
	}))
	d := startDataplane(t, src, func(o *Options) { o.NodeID = "n1" })
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(ip string) (string, error) {
		resp, err := client.Get("http://" + net.JoinHostPort(ip, strconv.Itoa(port)) + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if body, err := get("127.77.0.1"); err != nil || body != "ok" {
		t.Fatalf("GET through the vip address: %q, %v", body, err)
	}
	if body, err := get("127.0.0.1"); err != nil || body != "ok" {
		t.Fatalf("GET through the bind address: %q, %v", body, err)
	}
	if _, err := get("127.77.0.2"); err == nil {
		t.Fatal("a vip this node may not hold is served")
	}
	if !d.boundOn("10.255.77.1") {
		t.Fatal("no listener on the vip address that is not on this host yet (IP_FREEBIND)")
	}

	src.Set(vipConfig(port, map[string]fsm.VIPSpec{"other": linux("127.77.0.2/32", "n2", "n3")}))
	waitFor(t, "the deleted vip's listener to close", func() bool {
		_, err := get("127.77.0.1")
		return err != nil && !d.boundOn("10.255.77.1")
	})
	if body, err := get("127.0.0.1"); err != nil || body != "ok" {
		t.Fatalf("the bind address stopped serving with the vip: %q, %v", body, err)
	}
}

func TestNoVIPListenersOnAWildcardBind(t *testing.T) {
	d := &Dataplane{opts: Options{BindIP: "0.0.0.0", NodeID: "n1"}}
	cfg := vipConfig(80, map[string]fsm.VIPSpec{"v": {Provider: fsm.ProviderLinux, Address: "10.0.0.9/24", HomeNode: "n1"}})
	if got := d.vipIPs(cfg); len(got) != 0 {
		t.Fatalf("vipIPs on a wildcard bind = %v, want none", got)
	}
	d.opts.BindIP = "10.0.0.1"
	if got := d.vipIPs(cfg); len(got) != 1 || got[0] != "10.0.0.9" {
		t.Fatalf("vipIPs = %v, want [10.0.0.9]", got)
	}
}

func TestVIPListenersOnAWSPrivateAddresses(t *testing.T) {
	d := &Dataplane{opts: Options{BindIP: "10.0.0.1", NodeID: "n1"}}
	cfg := vipConfig(80, map[string]fsm.VIPSpec{
		"private":  {Provider: fsm.ProviderAWSPrivateIP, PrivateIP: "10.0.0.100", HomeNode: "n1"},
		"host":     {Provider: fsm.ProviderAWSRoute, RouteTableIDs: []string{"rtb-1"}, CIDR: "10.200.0.10/32", HomeNode: "n1"},
		"net":      {Provider: fsm.ProviderAWSRoute, RouteTableIDs: []string{"rtb-1"}, CIDR: "10.201.0.0/24", HomeNode: "n1"},
		"elastic":  {Provider: fsm.ProviderAWSEIP, AllocationID: "eipalloc-1", HomeNode: "n1"},
		"not-ours": {Provider: fsm.ProviderAWSPrivateIP, PrivateIP: "10.0.0.101", HomeNode: "n2", Candidates: []string{"n2"}},
	})
	want := []string{"10.0.0.100", "10.200.0.10"}
	if got := d.vipIPs(cfg); !slices.Equal(got, want) {
		t.Fatalf("vipIPs = %v, want %v (a private IP, a one-address route; not a network, an Elastic IP or another node's)", got, want)
	}
}
