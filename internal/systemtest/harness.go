package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// Agent is one rafter agent process.
type Agent struct {
	ID, Zone, IP string
	AdminPort    int
	RaftPort     int
	DataDir      string
	Log          string

	mu   sync.Mutex
	proc *testutil.Process // the latest run; nil before the first start
}

// AdminAddr is the agent's admin API host:port.
func (a *Agent) AdminAddr() string { return net.JoinHostPort(a.IP, strconv.Itoa(a.AdminPort)) }

// URL is the base URL of the agent's admin API.
func (a *Agent) URL() string { return "http://" + a.AdminAddr() }

func (a *Agent) process() *testutil.Process {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.proc
}

// Cluster is a set of agents started from one binary.
type Cluster struct {
	t      testing.TB
	Bin    string
	Token  string
	Agents []*Agent
	// Args are added to every agent's command line.
	Args  []string
	admin testutil.Admin
}

// StartCluster starts n agents (n1..nN in zones a, b, c...) on 127.0.0.1..n.
// Every agent is killed when the test ends, and the tail of each log is
// shown when it failed.
func StartCluster(t testing.TB, bin string, n int) *Cluster {
	t.Helper()
	return StartClusterWith(t, bin, n)
}

// StartClusterWith is StartCluster with args added to every agent's
// command line.
func StartClusterWith(t testing.TB, bin string, n int, args ...string) *Cluster {
	t.Helper()
	ips := make([]string, n)
	for i := range ips {
		ips[i] = fmt.Sprintf("127.0.0.%d", i+1)
	}
	ports, err := testutil.FreePorts(ips, 2)
	if err != nil {
		t.Fatalf("cluster setup: %v", err)
	}
	const token = "system-test-token"
	c := &Cluster{t: t, Bin: bin, Token: token, Args: args, admin: testutil.Admin{Token: token}}
	dir := t.TempDir()
	for i := 0; i < n; i++ {
		c.Agents = append(c.Agents, &Agent{
			ID: fmt.Sprintf("n%d", i+1), Zone: string(rune('a' + i)), IP: ips[i],
			AdminPort: ports[0], RaftPort: ports[1],
			DataDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			Log:     filepath.Join(dir, fmt.Sprintf("n%d.log", i+1)),
		})
	}
	t.Cleanup(func() {
		for _, a := range c.Agents {
			if p := a.process(); p != nil {
				if _, err := p.Kill(); err != nil {
					t.Errorf("cleanup: %v", err)
				}
			}
		}
		if t.Failed() {
			for _, a := range c.Agents {
				t.Logf("---- log of %s (tail) ----\n%s", a.ID, testutil.LogTail(a.Log, 6000))
			}
		}
	})
	for _, a := range c.Agents {
		c.Start(a)
	}
	return c
}

func (c *Cluster) joinList() string {
	var s []string
	for _, a := range c.Agents {
		s = append(s, a.AdminAddr())
	}
	return strings.Join(s, ",")
}

// Start starts (or restarts) agent a with its data dir.
func (c *Cluster) Start(a *Agent) {
	c.t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.proc != nil && a.proc.Running() {
		c.t.Fatalf("agent %s is already running", a.ID)
	}
	p, err := testutil.StartProcess(testutil.ProcessSpec{
		Name: a.ID, Path: c.Bin, Log: a.Log,
		Args: append([]string{"agent",
			"--node-id", a.ID, "--zone", a.Zone, "--data-dir", a.DataDir,
			"--bind", a.IP, "--admin-port", strconv.Itoa(a.AdminPort), "--raft-port", strconv.Itoa(a.RaftPort),
			"--bootstrap-expect", strconv.Itoa(len(c.Agents)), "--join", c.joinList(),
			"--token", c.Token, "--access-log", "off"}, c.Args...),
	})
	if err != nil {
		c.t.Fatal(err)
	}
	a.proc = p
}

// Kill sends SIGKILL to agent a and waits until it has exited.
func (c *Cluster) Kill(a *Agent) {
	c.t.Helper()
	if _, err := c.running(a).Kill(); err != nil {
		c.t.Fatal(err)
	}
}

// stopGrace is how long a stopping agent may take before it is killed.
const stopGrace = 30 * time.Second

// Stop sends SIGTERM to agent a and waits until it has exited; an agent
// that needs longer than stopGrace is killed and fails the test.
func (c *Cluster) Stop(a *Agent) {
	c.t.Helper()
	if _, err := c.running(a).Stop(stopGrace); err != nil {
		c.t.Fatal(err)
	}
}

// Terminate sends SIGTERM to agent a's process (not its group: the agent
// itself must stop what it started) and returns at once.
func (c *Cluster) Terminate(a *Agent) {
	c.t.Helper()
	if err := c.running(a).Signal(syscall.SIGTERM); err != nil {
		c.t.Fatal(err)
	}
}

// WaitExit waits for agent a to exit and returns how it exited.
func (c *Cluster) WaitExit(a *Agent, within time.Duration) *os.ProcessState {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	st, err := a.process().Wait(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	return st
}

func (c *Cluster) running(a *Agent) *testutil.Process {
	c.t.Helper()
	p := a.process()
	if p == nil || !p.Running() {
		c.t.Fatalf("agent %s is not running", a.ID)
	}
	return p
}

// Do sends one admin API request to agent a.
func (c *Cluster) Do(ctx context.Context, a *Agent, method, path string, body []byte) (*testutil.Response, error) {
	return c.admin.Do(ctx, a.URL(), method, path, body)
}

// Leader polls until one of the running agents reports itself leader.
func (c *Cluster) Leader(within time.Duration) *Agent {
	c.t.Helper()
	urls := make([]string, len(c.Agents))
	for i, a := range c.Agents {
		urls[i] = a.URL()
	}
	u, err := c.admin.Leader(within, urls...)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.Agents[slices.Index(urls, u)]
}

// Config reads the whole local document of agent a.
func (c *Cluster) Config(a *Agent) (map[string]json.RawMessage, uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := c.Do(ctx, a, "GET", "/v1/config?format=json", nil)
	if err != nil {
		return nil, 0, err
	}
	if r.Status != 200 {
		return nil, 0, fmt.Errorf("GET /v1/config on %s: %d %s", a.ID, r.Status, r.Body)
	}
	var objs []struct {
		Kind string          `json:"kind"`
		Name string          `json:"name"`
		Spec json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(r.Body, &objs); err != nil {
		return nil, 0, fmt.Errorf("decoding config of %s: %w", a.ID, err)
	}
	m := map[string]json.RawMessage{}
	for _, o := range objs {
		m[o.Kind+"/"+o.Name] = o.Spec
	}
	return m, r.Index, nil
}
