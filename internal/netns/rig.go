//go:build linux

package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/rafterlb/rafter/internal/nsthread"
)

// Names of the rig's own namespaces besides the nodes.
const (
	Bridge = "bridge"
	Client = "client"
)

// namePrefix starts every namespace a rig creates: rft-<pid>-<id>-<role>.
// The pid lets a later run tell a crashed run's namespaces (pid gone) from a
// parallel live run's (pid alive), which it must leave alone.
const namePrefix = "rft-"

// Options configure a rig.
type Options struct {
	// Nodes is the number of node namespaces (n1..nN).
	Nodes int
	// Bin is the rafter binary the agents run.
	Bin string
	// Token is the agents' read-write admin token.
	Token string
	// AdminPort and RaftPort are the same on every node, as on real hosts.
	AdminPort, RaftPort int
	// ExtraArgs are appended to every agent's command line.
	ExtraArgs []string
}

// DefaultOptions is a 3-node rig.
func DefaultOptions() Options {
	return Options{Nodes: 3, Token: "netns-test-token", AdminPort: 7700, RaftPort: 7701}
}

// Validate names the first invalid field.
func (o Options) Validate() error {
	switch {
	case o.Nodes < 1 || o.Nodes > 26:
		return fmt.Errorf("nodes: %d, want 1..26", o.Nodes)
	case o.Bin == "":
		return errors.New("bin: path of the rafter binary is required")
	case o.Token == "":
		return errors.New("token: required")
	case o.AdminPort <= 0 || o.AdminPort > 65535:
		return fmt.Errorf("admin_port: %d out of range", o.AdminPort)
	case o.RaftPort <= 0 || o.RaftPort > 65535 || o.RaftPort == o.AdminPort:
		return fmt.Errorf("raft_port: %d out of range or equal to admin_port", o.RaftPort)
	}
	return nil
}

// Rig is one test's set of namespaces and the agents running in them.
type Rig struct {
	t    testing.TB
	opts Options
	id   string
	dir  string
	// Nodes are n1..nN in order.
	Nodes []*Node
	// ClientIP is the client namespace's address.
	ClientIP string

	mu         sync.Mutex
	nsNames    map[string]string // role -> namespace name
	handles    map[string]netns.NsHandle
	partition  bool
	httpClient *http.Client
}

// New builds the namespaces, bridge and veth pairs; it fails the test with
// the reason when they cannot be set up.
func New(t testing.TB, o Options) *Rig {
	t.Helper()
	if err := o.Validate(); err != nil {
		t.Fatalf("netns rig options: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("netns rig needs root (network namespaces, veth, bridge, nftables); run as root as CI does")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("netns rig needs iproute2 (`ip`): %v", err)
	}
	removeStale(t)
	r := &Rig{
		t: t, opts: o, id: randomID(), dir: t.TempDir(),
		ClientIP: "10.99.0.100",
		nsNames:  map[string]string{}, handles: map[string]netns.NsHandle{},
	}
	roles := []string{Bridge, Client}
	for i := 1; i <= o.Nodes; i++ {
		n := &Node{
			rig: r, Name: fmt.Sprintf("n%d", i), Zone: string(rune('a' + i - 1)),
			IP:      fmt.Sprintf("10.99.0.%d", 10+i),
			DataDir: fmt.Sprintf("%s/n%d", r.dir, i),
			LogPath: fmt.Sprintf("%s/n%d.log", r.dir, i),
		}
		r.Nodes = append(r.Nodes, n)
		roles = append(roles, n.Name)
	}
	for _, role := range roles {
		r.nsNames[role] = fmt.Sprintf("%s%d-%s-%s", namePrefix, os.Getpid(), r.id, role)
	}
	// Registered before anything is created so a half-built rig is removed too.
	t.Cleanup(r.cleanup)
	if err := r.build(); err != nil {
		t.Fatalf("netns rig setup: %v", err)
	}
	return r
}

func randomID() string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

// NS is the namespace name of a role (Bridge, Client or a node name), as
// `ip netns exec` takes it.
func (r *Rig) NS(role string) string {
	name, ok := r.nsNames[role]
	if !ok {
		r.t.Fatalf("netns rig: no namespace %q", role)
	}
	return name
}

// Node returns node name (n1...).
func (r *Rig) Node(name string) *Node {
	for _, n := range r.Nodes {
		if n.Name == name {
			return n
		}
	}
	r.t.Fatalf("netns rig: no node %q", name)
	return nil
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func (r *Rig) build() error {
	br := r.nsNames[Bridge]
	for role, name := range r.nsNames {
		if err := ipCmd("netns", "add", name); err != nil {
			return err
		}
		r.mu.Lock()
		r.handles[role] = netns.None()
		r.mu.Unlock()
		h, err := netns.GetFromName(name)
		if err != nil {
			return fmt.Errorf("opening namespace %s: %w", name, err)
		}
		r.mu.Lock()
		r.handles[role] = h
		r.mu.Unlock()
		if err := ipCmd("-n", name, "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	if err := ipCmd("-n", br, "link", "add", "br0", "type", "bridge"); err != nil {
		return fmt.Errorf("creating the bridge (kernel bridge support needed): %w", err)
	}
	if err := ipCmd("-n", br, "link", "set", "br0", "up"); err != nil {
		return err
	}
	hosts := map[string]string{Client: r.ClientIP}
	for _, n := range r.Nodes {
		hosts[n.Name] = n.IP
	}
	for role, ip := range hosts {
		ns := r.nsNames[role]
		// The bridge-side port is named after the role so partition rules
		// read naturally; the namespace side is eth0 everywhere.
		port := role
		if err := ipCmd("-n", br, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns); err != nil {
			return fmt.Errorf("creating veth pair for %s: %w", role, err)
		}
		for _, args := range [][]string{
			{"-n", br, "link", "set", port, "master", "br0"},
			{"-n", br, "link", "set", port, "up"},
			{"-n", ns, "addr", "add", ip + "/24", "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
		} {
			if err := ipCmd(args...); err != nil {
				return err
			}
		}
	}
	return nil
}

// cleanup stops every agent, then deletes the namespaces (which takes their
// veths and the bridge with them), and dumps agent logs when the test failed.
func (r *Rig) cleanup() {
	for _, n := range r.Nodes {
		n.stopForCleanup()
	}
	if r.t.Failed() {
		for _, n := range r.Nodes {
			r.t.Log(n.LogTail())
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for role, h := range r.handles {
		if h.IsOpen() {
			h.Close()
		}
		name := r.nsNames[role]
		killNSPids(name)
		if err := ipCmd("netns", "del", name); err != nil {
			r.t.Errorf("netns rig cleanup: %v", err)
		}
	}
	r.handles = map[string]netns.NsHandle{}
}

// killNSPids kills whatever still runs in namespace name, so deleting it
// really frees it.
func killNSPids(name string) {
	out, err := exec.Command("ip", "netns", "pids", name).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// removeStale deletes namespaces of the rig's naming scheme whose creating
// process no longer exists: the leftovers of a run that crashed or was
// killed before its cleanup ran.
func removeStale(t testing.TB) {
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("netns rig: listing namespaces: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(fields[0], namePrefix) {
			continue
		}
		name := fields[0]
		parts := strings.SplitN(strings.TrimPrefix(name, namePrefix), "-", 3)
		if len(parts) != 3 {
			continue
		}
		pid, err := strconv.Atoi(parts[0])
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		killNSPids(name)
		if err := ipCmd("netns", "del", name); err != nil {
			t.Logf("netns rig: removing stale namespace: %v", err)
		} else {
			t.Logf("netns rig: removed stale namespace %s of a previous run", name)
		}
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Do runs fn on an OS thread switched into namespace role and switches the
// thread back before handing it to the runtime again. Sockets fn opens stay
// in that namespace for their whole life.
func (r *Rig) Do(role string, fn func() error) error {
	r.mu.Lock()
	h, ok := r.handles[role]
	r.mu.Unlock()
	if !ok || !h.IsOpen() {
		return fmt.Errorf("netns rig: namespace %q is not open", role)
	}
	return nsthread.Run(h, fn)
}

// Command is name with args run inside namespace role by `ip netns exec`.
func (r *Rig) Command(ctx context.Context, role, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", r.NS(role), name}, args...)...)
}

// DialContext dials from the client namespace: the socket is created on a
// thread inside it, so the connection lives there even though the caller
// does not. (A net.Dialer Control hook runs after the socket exists, too
// late to choose its namespace.)
func (r *Rig) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return r.DialFrom(ctx, Client, network, addr)
}

// DialFrom dials from namespace role.
func (r *Rig) DialFrom(ctx context.Context, role, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := r.Do(role, func() error {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		conn = c
		return err
	})
	return conn, err
}

// HTTPClient sends requests from the client namespace. Keep-alives are off
// so every request dials afresh and a partition shows on the next request
// instead of hiding behind a pooled connection.
func (r *Rig) HTTPClient() *http.Client {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.httpClient == nil {
		r.httpClient = &http.Client{
			Transport: &http.Transport{
				DialContext:       r.DialContext,
				DisableKeepAlives: true,
				Proxy:             nil,
			},
			Timeout: 30 * time.Second,
		}
	}
	return r.httpClient
}
