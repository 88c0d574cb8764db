package systemtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// TestUpgradeUnderLoad upgrades one node of three (SIGHUP: the binary
// starts again, takes the listening sockets over and rejoins Raft) while
// clients load that node's listener, once for a follower and once for the
// leader: no request fails, membership and VIP assignments stay as they
// were, and the new process follows later writes.
func TestUpgradeUnderLoad(t *testing.T) {
	for _, which := range []string{"follower", "leader"} {
		t.Run(which, func(t *testing.T) {
			c := StartCluster(t, bin, 3)
			port, _ := upgradeScenario(t, c)
			leader := c.Leader(30 * time.Second)
			target := leader
			if which == "follower" {
				target = c.Agents[(slices.Index(c.Agents, leader)+1)%len(c.Agents)]
			}
			before := clusterView(t, c, leader)

			load := testutil.StartLoad(testutil.LoadConfig{URL: proxyURL(target, port, "/"), Workers: 6,
				MaxRequests: 500_000, MaxDuration: 2 * time.Minute})
			defer load.Stop()
			testutil.WaitFor(t, 20*time.Second, "the load to get going", func() bool { return load.Done() >= 300 })

			// Twice: the process an upgrade started upgrades in turn.
			pids := []int{target.process().Pid()}
			for range 2 {
				pids = append(pids, upgrade(t, target, pids[len(pids)-1]))
				// The load goes on until the new process has taken over,
				// the cluster is whole again, and the new process has
				// served for a while on its own.
				waitWhole(t, c, target)
				mark := load.Done()
				testutil.WaitFor(t, 20*time.Second, "more load on the new process alone", func() bool { return load.Done() >= mark+300 })
			}
			res := load.Stop()
			t.Logf("two upgrades of the %s %s (pids %v) under load: %s", which, target.ID, pids, res)
			logUpgradeLines(t, target.Log)
			if res.Errors != 0 || res.Non2xx != 0 || res.OK == 0 {
				t.Fatalf("requests failed across the upgrade: %s; first failures: %q", res, res.FirstFailures)
			}

			after := clusterView(t, c, c.Leader(10*time.Second))
			if !slices.Equal(before.Members, after.Members) {
				t.Errorf("membership changed: before %q, after %q", before.Members, after.Members)
			}
			if !slices.Equal(before.VIPs, after.VIPs) {
				t.Errorf("VIP assignments changed: before %q, after %q", before.VIPs, after.VIPs)
			}
			// A write after the upgrade reaches the new process's data plane.
			c.putJSON(t, c.Leader(10*time.Second), "routes", "main", routeSpec("/", "main", 1, leg{"app", 100}))
			waitServes(t, newProxyClient(nil), target, port, "/", func(b string) bool { return strings.HasSuffix(b, "rev=1 route=main") }, "the write after the upgrade")
		})
	}
}

// upgradeScenario sets up listener web on a free port, pool app with one
// backend, route main and one VIP (provider none) homed on each node, and
// waits until every node serves and every VIP is assigned home. It
// returns the listener's port and the backend.
func upgradeScenario(t *testing.T, c *Cluster) (int, *testBackend) {
	t.Helper()
	port := dataPort(t, c.Agents)
	b := startBackend(t, "app")
	leader := c.Leader(30 * time.Second)
	c.putJSON(t, leader, "listeners", "web", map[string]any{"port": port})
	c.putJSON(t, leader, "pools", "app", poolOf(b.Addr()))
	c.putJSON(t, leader, "routes", "main", routeSpec("/", "main", 0, leg{"app", 100}))
	for _, a := range c.Agents {
		c.putJSON(t, leader, "vips", "vip-"+a.ID, map[string]any{"provider": "none", "home_node": a.ID})
	}
	client := newProxyClient(nil)
	for _, a := range c.Agents {
		waitServes(t, client, a, port, "/", func(b string) bool { return strings.HasSuffix(b, "rev=0 route=main") }, "route main")
	}
	testutil.Eventually(t, 30*time.Second, "every VIP assigned to its home node", func() error {
		v := clusterView(t, c, c.Leader(10*time.Second))
		for _, a := range c.Agents {
			if !slices.ContainsFunc(v.VIPs, func(s string) bool { return strings.HasPrefix(s, "vip-"+a.ID+"="+a.ID+"@") }) {
				return fmt.Errorf("assignments %q", v.VIPs)
			}
		}
		return nil
	})
	return port, b
}

func clusterView(t *testing.T, c *Cluster, a *Agent) testutil.ClusterView {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var bodies [2][]byte
	for i, path := range []string{"/v1/status", "/v1/vips"} {
		resp, err := c.Do(ctx, a, "GET", path, nil)
		if err != nil || resp.Status != 200 {
			t.Fatalf("%s of %s: %v %v", path, a.ID, err, resp)
		}
		bodies[i] = resp.Body
	}
	v, err := testutil.ParseClusterView(bodies[0], bodies[1])
	if err != nil {
		t.Fatalf("view of %s: %v", a.ID, err)
	}
	return v
}

// upgrade sends SIGHUP to agent a's process pid and waits until a new
// process serves in its place and pid has exited; it returns the new PID.
// The new process is not the harness's child: it is killed when the test
// ends.
func upgrade(t *testing.T, a *Agent, pid int) int {
	t.Helper()
	pidFile := filepath.Join(a.DataDir, "rafter.pid")
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var newPID int
	testutil.Eventually(t, 60*time.Second, a.ID+"'s new process to serve", func() error {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return err
		}
		p, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || p == pid {
			return fmt.Errorf("pid file says %q", b)
		}
		newPID = p
		return nil
	})
	t.Cleanup(func() { killPID(newPID) })
	testutil.WaitFor(t, 60*time.Second, fmt.Sprintf("the old process %d of %s to exit", pid, a.ID), func() bool { return !alive(pid) })
	if !alive(newPID) {
		t.Fatalf("the new process %d of %s is gone", newPID, a.ID)
	}
	return newPID
}

// killPID kills pid and waits (bounded) until it is gone.
func killPID(pid int) {
	_ = syscall.Kill(pid, syscall.SIGKILL)
	_ = testutil.Poll(10*time.Second, func() error {
		if alive(pid) {
			return fmt.Errorf("pid %d still there", pid)
		}
		return nil
	})
}

// alive: a thread of pid runs. A zombie, which nobody here may reap, does
// not; but a thread group leader that has exited stays a zombie while its
// other threads finish exiting, holding the process's files (the pipe on
// which the process it started waits for it to exit), so every thread
// counts.
func alive(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			continue
		}
		// tid (comm) STATE ...: comm may hold spaces, so read after the last ')'.
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X' {
			return true
		}
	}
	return false
}

// logUpgradeLines shows the hand-over as the agent's log tells it.
func logUpgradeLines(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Logf("reading %s: %v", path, err)
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "upgrade") || strings.Contains(line, "leadership") {
			t.Log(line)
		}
	}
}

// TestUpgradeToBrokenBinaryKeepsServing: when the binary an upgrade starts
// fails, the running process keeps serving (no request fails) and a later
// SIGHUP, with a working binary in place, upgrades.
func TestUpgradeToBrokenBinaryKeepsServing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rafter")
	install := func(from string, mode os.FileMode) {
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		tmp := path + ".new"
		if err := os.WriteFile(tmp, b, mode); err != nil {
			t.Fatal(err)
		}
		// Renamed over, as a package manager does: the running binary
		// stays as it is.
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	install(bin, 0o755)
	broken := filepath.Join(dir, "broken.sh")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho 'broken build' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	c := StartCluster(t, path, 3)
	port, _ := upgradeScenario(t, c)
	leader := c.Leader(30 * time.Second)
	target := c.Agents[(slices.Index(c.Agents, leader)+1)%len(c.Agents)]
	before := clusterView(t, c, leader)
	load := testutil.StartLoad(testutil.LoadConfig{URL: proxyURL(target, port, "/"), Workers: 4,
		MaxRequests: 500_000, MaxDuration: 2 * time.Minute})
	defer load.Stop()
	testutil.WaitFor(t, 20*time.Second, "the load to get going", func() bool { return load.Done() >= 300 })

	install(broken, 0o755)
	old := target.process().Pid()
	if err := syscall.Kill(old, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "the failed upgrade in the log", func() bool {
		b, _ := os.ReadFile(target.Log)
		return strings.Contains(string(b), "upgrade failed; this process keeps serving")
	})
	if !alive(old) {
		t.Fatalf("the running process %d exited after the failed upgrade", old)
	}
	if b, err := os.ReadFile(filepath.Join(target.DataDir, "rafter.pid")); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(old) {
		t.Fatalf("PID file after the failed upgrade: %q %v, want %d", b, err, old)
	}
	mark := load.Done()
	testutil.WaitFor(t, 20*time.Second, "the old process to go on serving", func() bool { return load.Done() >= mark+300 })

	install(bin, 0o755)
	newPID := upgrade(t, target, old)
	waitWhole(t, c, target)
	mark = load.Done()
	testutil.WaitFor(t, 20*time.Second, "the new process to serve", func() bool { return load.Done() >= mark+300 })
	res := load.Stop()
	t.Logf("failed upgrade, then upgrade of %s (pid %d -> %d) under load: %s", target.ID, old, newPID, res)
	if res.Errors != 0 || res.Non2xx != 0 || res.OK == 0 {
		t.Fatalf("requests failed: %s; first failures: %q", res, res.FirstFailures)
	}
	if after := clusterView(t, c, c.Leader(10*time.Second)); !slices.Equal(before.Members, after.Members) || !slices.Equal(before.VIPs, after.VIPs) {
		t.Fatalf("cluster changed: before %q, after %q", before, after)
	}
}

// waitWhole waits until upgraded has taken over (its upgrade-state file is
// gone) and every node knows the leader, which sees every member healthy,
// at the leader's commit index.
func waitWhole(t *testing.T, c *Cluster, upgraded *Agent) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, "the cluster whole again after upgrading "+upgraded.ID, func() error {
		if _, err := os.Stat(filepath.Join(upgraded.DataDir, "upgrade-state")); err == nil {
			return fmt.Errorf("%s has not taken over yet", upgraded.ID)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		sts := map[string]testutil.Status{}
		for _, a := range c.Agents {
			st, err := c.admin.Status(ctx, a.URL())
			if err != nil {
				return err
			}
			sts[a.ID] = st
		}
		lead, ok := sts[sts[upgraded.ID].Leader]
		if !ok {
			return fmt.Errorf("%s knows no leader", upgraded.ID)
		}
		for _, m := range lead.Members {
			if !m.Healthy {
				return fmt.Errorf("leader %s sees %s unhealthy", lead.NodeID, m.ID)
			}
		}
		for id, st := range sts {
			if st.Leader != lead.NodeID || st.CommitIndex != lead.CommitIndex {
				return fmt.Errorf("%s: leader %q at %d, leader %s at %d", id, st.Leader, st.CommitIndex, lead.NodeID, lead.CommitIndex)
			}
		}
		return nil
	})
}
