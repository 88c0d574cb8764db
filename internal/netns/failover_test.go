//go:build linux

package netns

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// blindBudget is the longest a client may go without the VIP when its
// holder is lost, whichever node held it and however it was lost.
const blindBudget = 2 * time.Second

// failoverCases are the four ways a holder is lost: killed (kill -9) or
// cut off from the other nodes and the client alike, while it leads or
// while it follows. (TestVIPIsolateHolder cuts it off from the nodes only;
// the client then keeps being served until the address expires.)
var failoverCases = []struct {
	name   string
	leader bool
	cut    bool
}{
	{"follower_killed", false, false},
	{"follower_cut_off", false, true},
	{"leader_killed", true, false},
	{"leader_cut_off", true, true},
}

// TestVIPFailoverWithinBudget loses the holder of a linux VIP in each of
// the four ways and requires the client's blind window to stay within
// blindBudget, with never two holders in any sample.
func TestVIPFailoverWithinBudget(t *testing.T) {
	for _, c := range failoverCases {
		t.Run(c.name, func(t *testing.T) {
			failover(t, c.leader, c.cut, false)
		})
	}
}

// TestVIPFailoverWithinBudgetBusyCPU is TestVIPFailoverWithinBudget with
// both cores kept busy by stress-ng throughout.
func TestVIPFailoverWithinBudgetBusyCPU(t *testing.T) {
	for _, c := range failoverCases {
		t.Run(c.name, func(t *testing.T) {
			failover(t, c.leader, c.cut, true)
		})
	}
}

func failover(t *testing.T, leads, cut, busy bool) {
	r := newVIPCluster(t, "n2")
	holder := r.Node("n2")
	if (r.Leader(60*time.Second) == holder) != leads {
		moveLeadership(t, r, holder, leads)
	}
	waitHolder(t, r, vipIP(0), holder.Name, 60*time.Second)
	if busy {
		stressCPU(t, 2)
	}
	w := startWatch(r, vipIP(0))
	w.waitServed(t, 10, "before the fault")
	if got := r.Leader(60*time.Second) == holder; got != leads {
		t.Fatalf("leadership moved before the fault: holder leads %v, want %v", got, leads)
	}
	at := time.Now()
	if cut {
		rest := []string{Client}
		for _, n := range others(r, holder) {
			rest = append(rest, n.Name)
		}
		r.Partition([]string{holder.Name}, rest)
	} else {
		holder.Kill()
	}
	to := failedOver(t, r, w, vipIP(0), holder.Name)
	w.stop()
	if cut {
		r.Heal()
	}
	noTwoHolders(t, r, vipIP(0), w.samples)
	handover(t, w.samples, holder.Name)
	gap, lost := outageOf(w, at)
	role := "follower"
	if leads {
		role = "leader"
	}
	how := "killed"
	if cut {
		how = "cut off"
	}
	t.Logf("vip blind window: %s holder %s (busy cpu %v): %s, %d requests lost, now on %s",
		role, how, busy, gap.Round(time.Millisecond), lost, to)
	if gap < 0 || gap > blindBudget {
		for _, n := range r.Nodes {
			t.Log(n.LogTail())
		}
		t.Fatalf("%s holder %s: the client went without the vip for %s (budget %s), %d requests lost",
			role, how, gap.Round(time.Millisecond), blindBudget, lost)
	}
}

// stressCPU keeps n workers of stress-ng spinning until the test ends.
func stressCPU(t *testing.T, n int) {
	t.Helper()
	path, err := exec.LookPath("stress-ng")
	if err != nil {
		t.Fatalf("stress-ng is needed to keep the CPUs busy: install the Debian package stress-ng (make deps): %v", err)
	}
	// --timeout bounds it even if this process dies without cleaning up.
	cmd := exec.Command(path, "--cpu", fmt.Sprint(n), "--timeout", "20m", "--quiet")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting stress-ng: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		// stress-ng stops its workers on SIGTERM; its process group
		// holds only them.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	testutil.Eventually(t, 10*time.Second, "stress-ng workers running", func() error {
		out, err := exec.Command("pgrep", "-g", fmt.Sprint(cmd.Process.Pid)).Output()
		if err != nil {
			return fmt.Errorf("pgrep: %v", err)
		}
		if got := len(strings.Fields(string(out))); got < n+1 {
			return fmt.Errorf("%d processes in its group", got)
		}
		return nil
	})
}

// idleDuration is how long TestVIPIdleNoNeedlessMove runs: a minute, or
// ten with RAFTER_SOAK=1 (make soak).
func idleDuration(t *testing.T) time.Duration {
	switch v := os.Getenv("RAFTER_SOAK"); v {
	case "", "0":
		return time.Minute
	case "1":
		return 10 * time.Minute
	default:
		t.Fatalf("RAFTER_SOAK=%q: want 1 (ten minutes) or unset (one minute)", v)
		return 0
	}
}

// TestVIPIdleNoNeedlessMove runs a cluster with one VIP per node and both
// cores busy, and nothing failing: no VIP may move, blink or have two
// holders in any sample.
func TestVIPIdleNoNeedlessMove(t *testing.T) {
	d := idleDuration(t)
	r := newVIPCluster(t, "n1", "n2", "n3")
	stressCPU(t, 2)
	before := assignments(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	samples := make([][]Sample, len(r.Nodes))
	done := make(chan struct{})
	for i := range r.Nodes {
		go func() {
			defer func() { done <- struct{}{} }()
			samples[i] = r.SampleAddresses(ctx, 100*time.Millisecond, vipIP(i))
		}()
	}
	for range r.Nodes {
		<-done
	}
	after := assignments(t, r)
	for i, n := range r.Nodes {
		ss := samples[i]
		if len(ss) < int(d/(200*time.Millisecond)) {
			t.Fatalf("%s: only %d samples in %s", vipIP(i), len(ss), d)
		}
		var blinks []string
		for _, s := range ss {
			switch {
			case s.Err != nil:
				t.Fatalf("%s: sample at %s: %v", vipIP(i), s.At.Format("15:04:05.000"), s.Err)
			case len(s.Holders) > 1:
				t.Fatalf("split brain: at %s %s is held by %v", s.At.Format("15:04:05.000"), vipIP(i), s.Holders)
			case !slices.Equal(s.Holders, []string{n.Name}):
				blinks = append(blinks, fmt.Sprintf("%s %v", s.At.Format("15:04:05.000"), s.Holders))
			}
		}
		if len(blinks) > 0 {
			for _, n := range r.Nodes {
				t.Log(n.LogTail())
			}
			t.Fatalf("%s left its home %s in %d of %d samples with nothing failing: %v", vipIP(i), n.Name, len(blinks), len(ss), blinks)
		}
	}
	if !slices.Equal(before, after) {
		t.Fatalf("assignments changed with nothing failing: before %v, after %v", before, after)
	}
	t.Logf("idle for %s with both cores busy: %d VIPs stayed home (%v), no blink in %d samples each", d, len(before), after, len(samples[0]))
}

// assignments lists every VIP's holder and token, as the leader has them.
func assignments(t *testing.T, r *Rig) []string {
	t.Helper()
	var out []string
	testutil.Eventually(t, 30*time.Second, "the vips' assignments", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		list, err := listVIPs(ctx, r, r.Leader(30*time.Second), "?consistent")
		if err != nil {
			return err
		}
		out = out[:0]
		for _, it := range list {
			if it.Assignment == nil {
				return fmt.Errorf("%s has no holder", it.Name)
			}
			out = append(out, fmt.Sprintf("%s=%s@%d", it.Name, it.Assignment.Holder, it.Assignment.Token))
		}
		slices.Sort(out)
		return nil
	})
	return out
}
