//go:build linux

package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	proc *process
}

// process is one run of the agent; done closes once Wait returned.
type process struct {
	cmd   *exec.Cmd
	done  chan struct{}
	state *os.ProcessState
	err   error
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
	if n.proc != nil {
		select {
		case <-n.proc.done:
		default:
			t.Fatalf("netns rig: agent %s is already running", n.Name)
		}
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("netns rig: agent log: %v", err)
	}
	fmt.Fprintf(logf, "==== %s start %s\n", time.Now().Format(time.RFC3339Nano), n.Name)
	// `ip netns exec` execs the binary, so the pid is the agent's own.
	cmd := exec.Command("ip", n.args()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("netns rig: starting agent %s: %v", n.Name, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	n.proc = p
	go func() {
		p.err = cmd.Wait()
		p.state = cmd.ProcessState
		logf.Close()
		close(p.done)
	}()
}

func (n *Node) current() *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// Running reports whether the agent process is alive.
func (n *Node) Running() bool {
	p := n.current()
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Pid is the agent's process id, 0 when it never started.
func (n *Node) Pid() int {
	if p := n.current(); p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

// Signal sends sig to the agent's process group.
func (n *Node) Signal(sig syscall.Signal) error {
	p := n.current()
	if p == nil {
		return errors.New("agent never started")
	}
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// Wait blocks until the agent exits and returns how it exited.
func (n *Node) Wait(ctx context.Context) (*os.ProcessState, error) {
	p := n.current()
	if p == nil {
		return nil, errors.New("agent never started")
	}
	select {
	case <-p.done:
		return p.state, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for agent %s to exit: %w", n.Name, ctx.Err())
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (n *Node) Kill() *os.ProcessState {
	n.rig.t.Helper()
	return n.signalAndWait(syscall.SIGKILL, 20*time.Second)
}

// Stop sends SIGTERM and waits for the agent's graceful exit.
func (n *Node) Stop() *os.ProcessState {
	n.rig.t.Helper()
	return n.signalAndWait(syscall.SIGTERM, 60*time.Second)
}

func (n *Node) signalAndWait(sig syscall.Signal, within time.Duration) *os.ProcessState {
	t := n.rig.t
	t.Helper()
	if !n.Running() {
		t.Fatalf("netns rig: agent %s is not running", n.Name)
	}
	if err := n.Signal(sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("netns rig: signalling agent %s: %v", n.Name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	st, err := n.Wait(ctx)
	if err != nil {
		t.Fatalf("netns rig: %v", err)
	}
	return st
}

func (n *Node) stopForCleanup() {
	p := n.current()
	if p == nil {
		return
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		n.rig.t.Errorf("netns rig cleanup: agent %s did not exit after SIGKILL", n.Name)
	}
}

func (n *Node) dumpLog(t testing.TB) {
	b, err := os.ReadFile(n.LogPath)
	if err != nil {
		return
	}
	const max = 8000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	t.Logf("---- log of agent %s (tail) ----\n%s", n.Name, b)
}

// Response is one admin API answer.
type Response struct {
	Status int
	Index  uint64 // X-Rafter-Index
	Leader string // X-Rafter-Leader
	Body   []byte
}

// API sends one admin API request to node n from the client namespace.
func (r *Rig) API(ctx context.Context, n *Node, method, path string, body []byte) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, n.URL()+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+r.opts.Token)
	resp, err := r.HTTPClient().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	idx, _ := strconv.ParseUint(resp.Header.Get("X-Rafter-Index"), 10, 64)
	return &Response{Status: resp.StatusCode, Index: idx, Leader: resp.Header.Get("X-Rafter-Leader"), Body: b}, nil
}

// Status is the part of GET /v1/status the rig reads.
type Status struct {
	NodeID string `json:"node_id"`
	State  string `json:"state"`
}

// Status reads node n's own view of itself.
func (r *Rig) Status(ctx context.Context, n *Node) (Status, error) {
	resp, err := r.API(ctx, n, http.MethodGet, "/v1/status", nil)
	if err != nil {
		return Status{}, err
	}
	if resp.Status != http.StatusOK {
		return Status{}, fmt.Errorf("GET /v1/status on %s: %d %s", n.Name, resp.Status, resp.Body)
	}
	var st Status
	if err := json.Unmarshal(resp.Body, &st); err != nil {
		return Status{}, fmt.Errorf("decoding status of %s: %w", n.Name, err)
	}
	return st, nil
}

// Leader polls the given nodes (all when none) until one of them reports
// itself leader.
func (r *Rig) Leader(within time.Duration, among ...*Node) *Node {
	r.t.Helper()
	if len(among) == 0 {
		among = r.Nodes
	}
	var leader *Node
	Eventually(r.t, within, "a leader", func() error {
		for _, n := range among {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := r.Status(ctx, n)
			cancel()
			if err == nil && st.State == "Leader" {
				leader = n
				return nil
			}
		}
		return errors.New("no node reports itself leader")
	})
	return leader
}

// StartAgents starts the agent on every node.
func (r *Rig) StartAgents() {
	r.t.Helper()
	for _, n := range r.Nodes {
		n.Start()
	}
}

// Eventually polls f until it returns nil or within passes, then fails the
// test with f's last error.
func Eventually(t testing.TB, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %s for %s: %v", within, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
