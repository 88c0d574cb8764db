//go:build linux

package netns

import (
	"context"
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

// TestRollingUpgradeUnderLoad upgrades the three nodes one after the
// other (followers first, then the leader; SIGHUP each) while a client
// loads each node's linux VIP: no request fails, every VIP stays on its
// home node in every sample of the addresses, and the assignments and the
// membership are what they were.
func TestRollingUpgradeUnderLoad(t *testing.T) {
	r := newVIPCluster(t, "n1", "n2", "n3")
	leader := r.Leader(30 * time.Second)
	before := rigView(t, r, leader)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var samplers sync.WaitGroup
	samples := make([][]Sample, 3)
	for i := range samples {
		samplers.Go(func() { samples[i] = r.SampleAddresses(ctx, sampleEvery, vipIP(i)) })
	}
	loads := make([]*testutil.Load, 3)
	for i := range loads {
		loads[i] = testutil.StartLoad(testutil.LoadConfig{
			URL:         "http://" + net.JoinHostPort(vipIP(i), strconv.Itoa(vipPort)) + "/",
			Workers:     4,
			Dial:        r.DialContext,
			MaxRequests: 500_000,
			MaxDuration: 3 * time.Minute,
		})
		defer loads[i].Stop()
	}
	done := func() int64 {
		var n int64
		for _, l := range loads {
			n += l.Done()
		}
		return n
	}
	testutil.WaitFor(t, 30*time.Second, "the load to get going", func() bool { return done() >= 300 })

	order := slices.DeleteFunc(slices.Clone(r.Nodes), func(n *Node) bool { return n == leader })
	order = append(order, leader)
	for _, n := range order {
		oldPID, newPID := upgradeNode(t, r, n)
		t.Logf("%s upgraded: pid %d -> %d", n.Name, oldPID, newPID)
		// As the operations guide says: the next node only once the
		// cluster is whole again.
		waitWhole(t, r, n)
		mark := done()
		testutil.WaitFor(t, 30*time.Second, "more load after upgrading "+n.Name, func() bool { return done() >= mark+300 })
	}

	// The new processes keep the addresses beyond their kernel lifetime
	// (1s): they renew them themselves.
	last := time.Now()
	testutil.WaitFor(t, 30*time.Second, "load for 3s after the last upgrade", func() bool {
		return time.Since(last) > 3*time.Second
	})
	var failed bool
	for i, l := range loads {
		res := l.Stop()
		t.Logf("%s (vip%d, home n%d) across the rolling upgrade: %s", vipIP(i), i, i+1, res)
		if res.Errors != 0 || res.Non2xx != 0 || res.OK == 0 {
			failed = true
			t.Errorf("%s: requests failed: %s; first failures %q", vipIP(i), res, res.FirstFailures)
		}
	}
	cancel()
	samplers.Wait()
	for i, ss := range samples {
		home := fmt.Sprintf("n%d", i+1)
		bad := 0
		for _, s := range ss {
			if s.Err == nil && !slices.Equal(s.Holders, []string{home}) {
				if bad < 5 {
					t.Errorf("%s at %s held by %v, want %s alone", vipIP(i), s.At.Format("15:04:05.000"), s.Holders, home)
				}
				bad++
			}
		}
		t.Logf("%s: %d address samples, %d not on %s alone", vipIP(i), len(ss), bad, home)
	}
	after := rigView(t, r, r.Leader(30*time.Second))
	if !slices.Equal(before.Members, after.Members) {
		t.Errorf("membership changed: before %q, after %q", before.Members, after.Members)
	}
	if !slices.Equal(before.VIPs, after.VIPs) {
		t.Errorf("VIP assignments changed: before %q, after %q", before.VIPs, after.VIPs)
	}
	if failed {
		t.FailNow()
	}
}

// upgradeNode sends SIGHUP to n's agent and waits until a new process
// serves in its place and the old one has exited. The new process runs in
// n's namespace, which the rig's cleanup empties.
func upgradeNode(t *testing.T, r *Rig, n *Node) (oldPID, newPID int) {
	t.Helper()
	old := n.running()
	oldPID = old.Pid()
	if err := old.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(n.DataDir, "rafter.pid")
	testutil.Eventually(t, 60*time.Second, n.Name+"'s new process to serve", func() error {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return err
		}
		p, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || p == oldPID {
			return fmt.Errorf("pid file says %q", b)
		}
		newPID = p
		return nil
	})
	select {
	case <-old.Done():
	case <-time.After(60 * time.Second):
		t.Fatalf("the old process %d of %s did not exit after the upgrade", oldPID, n.Name)
	}
	if err := syscall.Kill(newPID, 0); err != nil {
		t.Fatalf("the new process %d of %s: %v", newPID, n.Name, err)
	}
	return oldPID, newPID
}

func rigView(t *testing.T, r *Rig, n *Node) testutil.ClusterView {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var bodies [2][]byte
	for i, path := range []string{"/v1/status", "/v1/vips"} {
		resp, err := r.API(ctx, n, "GET", path, nil)
		if err != nil || resp.Status != 200 {
			t.Fatalf("%s of %s: %v %v", path, n.Name, err, resp)
		}
		bodies[i] = resp.Body
	}
	v, err := testutil.ParseClusterView(bodies[0], bodies[1])
	if err != nil {
		t.Fatalf("view of %s: %v", n.Name, err)
	}
	return v
}

// waitWhole waits until upgraded has taken over (its upgrade-state file is
// gone) and every node knows the leader, which sees every member healthy,
// at the leader's commit index.
func waitWhole(t *testing.T, r *Rig, upgraded *Node) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, "the cluster whole again after upgrading "+upgraded.Name, func() error {
		if _, err := os.Stat(filepath.Join(upgraded.DataDir, "upgrade-state")); err == nil {
			return fmt.Errorf("%s has not taken over yet", upgraded.Name)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		sts := map[string]testutil.Status{}
		for _, n := range r.Nodes {
			st, err := r.Status(ctx, n)
			if err != nil {
				return err
			}
			sts[n.Name] = st
		}
		lead, ok := sts[sts[upgraded.Name].Leader]
		if !ok {
			return fmt.Errorf("%s knows no leader", upgraded.Name)
		}
		for _, m := range lead.Members {
			if !m.Healthy {
				return fmt.Errorf("leader %s sees %s unhealthy", lead.NodeID, m.ID)
			}
		}
		for name, st := range sts {
			if st.Leader != lead.NodeID || st.CommitIndex != lead.CommitIndex {
				return fmt.Errorf("%s: leader %q at %d, leader %s at %d", name, st.Leader, st.CommitIndex, lead.NodeID, lead.CommitIndex)
			}
		}
		return nil
	})
}
