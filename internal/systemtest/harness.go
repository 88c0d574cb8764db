package systemtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binary builds ./cmd/rafter into dir and returns its path.
func Binary(dir string) (string, error) {
	out := filepath.Join(dir, "rafter")
	cmd := exec.Command("go", "build", "-o", out, "github.com/rafterlb/rafter/cmd/rafter")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building rafter: %v\n%s", err, b)
	}
	return out, nil
}

// Agent is one rafter agent process.
type Agent struct {
	ID, Zone, IP string
	AdminPort    int
	RaftPort     int
	DataDir      string
	Log          string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// AdminAddr is the agent's admin API host:port.
func (a *Agent) AdminAddr() string { return net.JoinHostPort(a.IP, strconv.Itoa(a.AdminPort)) }

// URL is the base URL of the agent's admin API.
func (a *Agent) URL() string { return "http://" + a.AdminAddr() }

// Cluster is a set of agents started from one binary.
type Cluster struct {
	t      testing.TB
	Bin    string
	Token  string
	Agents []*Agent
}

// freePorts finds two ports free on every one of ips. They are drawn from
// below the kernel's ephemeral range (32768 and up on Linux): a port taken
// from there ("listen on :0", then close) may be handed to another test's
// listener or to an outgoing connection before the agent binds it, which is
// a real race when packages' tests run in parallel.
func freePorts(ips []string) (admin, raft int, err error) {
	var got []int
	for tries := 0; tries < 200 && len(got) < 2; tries++ {
		port := 20000 + rand.IntN(12000)
		if len(got) == 1 && got[0] == port {
			continue
		}
		var held []net.Listener
		ok := true
		for _, ip := range ips {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			held = append(held, l)
		}
		for _, h := range held {
			h.Close()
		}
		if ok {
			got = append(got, port)
		}
	}
	if len(got) < 2 {
		return 0, 0, errors.New("no port free on every loopback address")
	}
	return got[0], got[1], nil
}

// StartCluster starts n agents (n1..nN in zones a, b, c...) on 127.0.0.1..n.
func StartCluster(t testing.TB, bin string, n int) *Cluster {
	t.Helper()
	ips := make([]string, n)
	for i := range ips {
		ips[i] = fmt.Sprintf("127.0.0.%d", i+1)
	}
	adminPort, raftPort, err := freePorts(ips)
	if err != nil {
		t.Fatalf("cluster setup: %v", err)
	}
	c := &Cluster{t: t, Bin: bin, Token: "system-test-token"}
	dir := t.TempDir()
	for i := 0; i < n; i++ {
		a := &Agent{
			ID: fmt.Sprintf("n%d", i+1), Zone: string(rune('a' + i)), IP: ips[i],
			AdminPort: adminPort, RaftPort: raftPort,
			DataDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			Log:     filepath.Join(dir, fmt.Sprintf("n%d.log", i+1)),
		}
		c.Agents = append(c.Agents, a)
	}
	t.Cleanup(func() {
		for _, a := range c.Agents {
			a.kill()
		}
		if t.Failed() {
			for _, a := range c.Agents {
				b, _ := os.ReadFile(a.Log)
				if len(b) > 6000 {
					b = b[len(b)-6000:]
				}
				t.Logf("---- log of %s (tail) ----\n%s", a.ID, b)
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
	logf, err := os.OpenFile(a.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(c.Bin, "agent",
		"--node-id", a.ID, "--zone", a.Zone, "--data-dir", a.DataDir,
		"--bind", a.IP, "--admin-port", strconv.Itoa(a.AdminPort), "--raft-port", strconv.Itoa(a.RaftPort),
		"--bootstrap-expect", strconv.Itoa(len(c.Agents)), "--join", c.joinList(),
		"--token", c.Token, "--access-log", "off")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("starting %s: %v", a.ID, err)
	}
	a.mu.Lock()
	a.cmd = cmd
	a.mu.Unlock()
	go func() { cmd.Wait(); logf.Close() }()
}

// Kill sends SIGKILL to agent a and waits until its admin port is closed.
func (c *Cluster) Kill(a *Agent) {
	c.t.Helper()
	a.kill()
	c.waitDown(a)
}

// Stop sends SIGTERM to agent a and waits until its admin port is closed.
func (c *Cluster) Stop(a *Agent) {
	c.t.Helper()
	a.mu.Lock()
	cmd := a.cmd
	a.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		cmd.Process.Signal(syscall.SIGTERM)
	}
	c.waitDown(a)
}

func (a *Agent) kill() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd != nil && a.cmd.Process != nil {
		syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
	}
}

func (c *Cluster) waitDown(a *Agent) {
	c.t.Helper()
	Eventually(c.t, 20*time.Second, "agent "+a.ID+" to stop", func() error {
		conn, err := net.DialTimeout("tcp", a.AdminAddr(), 200*time.Millisecond)
		if err != nil {
			return nil
		}
		conn.Close()
		return errors.New("admin port still open")
	})
}

// Eventually polls f until it returns nil or the deadline passes.
func Eventually(t testing.TB, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %s for %s: %v", within, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Response is a decoded admin API answer.
type Response struct {
	Status int
	Index  uint64 // X-Rafter-Index
	Leader string // X-Rafter-Leader
	Body   []byte
}

// Do sends one admin API request to agent a.
func (c *Cluster) Do(ctx context.Context, a *Agent, method, path string, body []byte) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.URL()+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := http.DefaultClient.Do(req)
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

// Leader polls until the agents agree on a leader among the running ones.
func (c *Cluster) Leader(within time.Duration) *Agent {
	c.t.Helper()
	var leader *Agent
	Eventually(c.t, within, "a leader", func() error {
		for _, a := range c.Agents {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			r, err := c.Do(ctx, a, "GET", "/v1/status", nil)
			cancel()
			if err != nil || r.Status != 200 {
				continue
			}
			var st struct {
				NodeID string `json:"node_id"`
				State  string `json:"state"`
			}
			if json.Unmarshal(r.Body, &st) == nil && st.State == "Leader" {
				leader = a
				return nil
			}
		}
		return errors.New("no node reports itself leader")
	})
	return leader
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
