package systemtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// TestQuietBootstrapAndRestart: forming a 3-node cluster, restarting a
// follower and then the leader logs no WARN or ERROR line on any node.
// Raft's messages that belong to forming, catching up and elections are
// expected, and an operator who sees a WARN must have something to do.
func TestQuietBootstrapAndRestart(t *testing.T) {
	c := StartCluster(t, bin, 3)
	leader := c.Leader(30 * time.Second)
	c.allHealthy(leader, 30*time.Second)

	var follower *Agent
	for _, a := range c.Agents {
		if a != leader {
			follower = a
			break
		}
	}
	c.Stop(follower)
	c.Start(follower)
	c.allHealthy(c.Leader(30*time.Second), 30*time.Second)

	c.Stop(leader)
	c.Start(leader)
	c.allHealthy(c.Leader(30*time.Second), 30*time.Second)

	for _, a := range c.Agents {
		for _, line := range loudLines(t, a.Log) {
			t.Errorf("%s logged: %s", a.ID, line)
		}
	}
}

// allHealthy waits until the leader (as leader said, or any new one)
// reports every agent healthy and each agent has applied the leader's
// commit index, so a restarted node has really caught up.
func (c *Cluster) allHealthy(leader *Agent, within time.Duration) {
	c.t.Helper()
	testutil.Eventually(c.t, within, "every member healthy and caught up", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := c.admin.Status(ctx, leader.URL())
		if err != nil {
			return err
		}
		if st.State != "Leader" {
			leader = c.Leader(10 * time.Second)
			return fmt.Errorf("%s is %s", st.NodeID, st.State)
		}
		if len(st.Members) != len(c.Agents) {
			return fmt.Errorf("%d members, want %d", len(st.Members), len(c.Agents))
		}
		for _, m := range st.Members {
			if !m.Healthy {
				return fmt.Errorf("leader %s sees %s unhealthy", st.NodeID, m.ID)
			}
		}
		for _, a := range c.Agents {
			r, err := c.Do(ctx, a, "GET", "/v1/status", nil)
			if err != nil {
				return err
			}
			var own struct {
				AppliedIndex uint64 `json:"applied_index"`
				Leader       string `json:"leader"`
			}
			if err := json.Unmarshal(r.Body, &own); err != nil {
				return err
			}
			if own.AppliedIndex < st.CommitIndex || own.Leader != st.NodeID {
				return fmt.Errorf("%s applied %d of %d, leader %q", a.ID, own.AppliedIndex, st.CommitIndex, own.Leader)
			}
		}
		return nil
	})
}

// loudLines returns the WARN and ERROR lines of an agent's JSON log.
func loudLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec struct {
			Level string `json:"level"`
		}
		line := sc.Text()
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue // the harness's own lines
		}
		if rec.Level == "WARN" || rec.Level == "ERROR" || strings.HasPrefix(rec.Level, "ERROR+") {
			out = append(out, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
