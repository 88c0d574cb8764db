//go:build linux

package netns

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// Node is one node namespace and the rafter agent that runs in it.
type Node struct {
	rig     *Rig
	Name    string // n1...
	Zone    string // a, b, c...
	IP      string
	DataDir string
	LogPath string

	mu   sync.Mutex
	proc *testutil.Process // the latest run; nil before the first start
}

// AdminAddr is the node's admin API address inside the rig.
func (n *Node) AdminAddr() string {
	return net.JoinHostPort(n.IP, strconv.Itoa(n.rig.opts.AdminPort))
}

// URL is the base URL of the node's admin API.
func (n *Node) URL() string { return "http://" + n.AdminAddr() }

// NS is the node's namespace name.
func (n *Node) NS() string { return n.rig.NS(n.Name) }

func (n *Node) args() []string {
	var join []string
	for _, o := range n.rig.Nodes {
		if o != n {
			join = append(join, o.AdminAddr())
		}
	}
	args := []string{
		"netns", "exec", n.NS(), n.rig.opts.Bin, "agent",
		"--node-id", n.Name, "--zone", n.Zone, "--data-dir", n.DataDir,
		"--bind", n.IP,
		"--admin-port", strconv.Itoa(n.rig.opts.AdminPort),
		"--raft-port", strconv.Itoa(n.rig.opts.RaftPort),
		"--bootstrap-expect", strconv.Itoa(len(n.rig.Nodes)),
		"--join", strings.Join(join, ","),
		// The rig's addresses are not loopback and the test has no CA.
		"--insecure-transport",
		"--token", n.rig.opts.Token, "--access-log", "off",
	}
	return append(args, n.rig.opts.ExtraArgs...)
}

// Start starts the agent, or starts it again with the same data dir after
// it stopped. Output is appended to LogPath.
func (n *Node) Start() {
	t := n.rig.t
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && n.proc.Running() {
		t.Fatalf("netns rig: agent %s is already running", n.Name)
	}
	// `ip netns exec` execs the binary, so the pid is the agent's own.
	p, err := testutil.StartProcess(testutil.ProcessSpec{Name: n.Name, Path: "ip", Args: n.args(), Log: n.LogPath})
	if err != nil {
		t.Fatalf("netns rig: %v", err)
	}
	n.proc = p
}

func (n *Node) current() *testutil.Process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// Running reports whether the agent process is alive.
func (n *Node) Running() bool {
	p := n.current()
	return p != nil && p.Running()
}

// Kill sends SIGKILL and waits for the process to be gone.
func (n *Node) Kill() *os.ProcessState {
	t := n.rig.t
	t.Helper()
	st, err := n.running().Kill()
	if err != nil {
		t.Fatalf("netns rig: %v", err)
	}
	return st
}

// stopGrace is how long a stopping agent may take before it is killed.
const stopGrace = 60 * time.Second

// Stop sends SIGTERM and waits for the agent's graceful exit; an agent
// that needs longer than stopGrace is killed and fails the test.
func (n *Node) Stop() *os.ProcessState {
	t := n.rig.t
	t.Helper()
	st, err := n.running().Stop(stopGrace)
	if err != nil {
		t.Fatalf("netns rig: %v", err)
	}
	return st
}

func (n *Node) running() *testutil.Process {
	n.rig.t.Helper()
	p := n.current()
	if p == nil || !p.Running() {
		n.rig.t.Fatalf("netns rig: agent %s is not running", n.Name)
	}
	return p
}

func (n *Node) stopForCleanup() {
	if p := n.current(); p != nil {
		if _, err := p.Kill(); err != nil {
			n.rig.t.Errorf("netns rig cleanup: %v", err)
		}
	}
}

// LogTail is the last bytes of the agent's log, for a failing test.
func (n *Node) LogTail() string {
	return fmt.Sprintf("---- log of agent %s (tail) ----\n%s", n.Name, testutil.LogTail(n.LogPath, 8000))
}

// admin speaks to the nodes' admin APIs from the client namespace.
func (r *Rig) admin() testutil.Admin {
	return testutil.Admin{Client: r.HTTPClient(), Token: r.opts.Token}
}

// API sends one admin API request to node n from the client namespace.
func (r *Rig) API(ctx context.Context, n *Node, method, path string, body []byte) (*testutil.Response, error) {
	return r.admin().Do(ctx, n.URL(), method, path, body)
}

// Status reads node n's own view of itself and the cluster.
func (r *Rig) Status(ctx context.Context, n *Node) (testutil.Status, error) {
	return r.admin().Status(ctx, n.URL())
}

// Leader polls the given nodes (all when none) until one of them reports
// itself leader.
func (r *Rig) Leader(within time.Duration, among ...*Node) *Node {
	r.t.Helper()
	if len(among) == 0 {
		among = r.Nodes
	}
	urls := make([]string, len(among))
	for i, n := range among {
		urls[i] = n.URL()
	}
	u, err := r.admin().Leader(within, urls...)
	if err != nil {
		r.t.Fatalf("netns rig: %v", err)
	}
	return among[slices.Index(urls, u)]
}

// StartAgents starts the agent on every node.
func (r *Rig) StartAgents() {
	r.t.Helper()
	for _, n := range r.Nodes {
		n.Start()
	}
}
