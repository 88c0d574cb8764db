//go:build linux

package netns

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// The soak's nemesis: one fault at a time, picked by a seeded RNG, each
// healed (and the cluster seen whole again) before the next one starts.

// Fault kinds, as the soak's table names them.
const (
	faultKill          = "kill-9"
	faultStop          = "sigstop"
	faultPartitionNode = "partition-node"
	faultPartitionZone = "partition-zone"
	faultNetem         = "netem"
	faultDiskFull      = "disk-full"
)

var allFaults = []string{faultKill, faultStop, faultPartitionNode, faultPartitionZone, faultNetem, faultDiskFull}

// fault is one fault the nemesis injected.
type fault struct {
	kind      string
	target    string
	detail    string    // leader/holder at the time, hold time
	start     time.Time // injected
	healed    time.Time // undone
	recovered time.Time // cluster seen whole again; zero when it was not
}

// dataDirSize is the size of each node's own data-dir filesystem (a
// tmpfs), which the disk-full fault fills.
const dataDirSize = "128m"

// mountDataDirs gives every node's data dir a size-limited tmpfs of its
// own, before the agents start: `ip netns exec` copies the mount table, so
// each agent writes into its own small filesystem. Detached on cleanup.
func mountDataDirs(t *testing.T, r *Rig) {
	t.Helper()
	for _, n := range r.Nodes {
		if err := os.MkdirAll(n.DataDir, 0o700); err != nil {
			t.Fatalf("soak: data dir: %v", err)
		}
		if err := syscall.Mount("tmpfs", n.DataDir, "tmpfs", 0, "size="+dataDirSize+",mode=0700"); err != nil {
			t.Fatalf("soak: mounting a %s tmpfs on %s (needs root and tmpfs): %v", dataDirSize, n.DataDir, err)
		}
		dir := n.DataDir
		// Registered after the rig's cleanup, so it runs first, while the
		// agents may still run: detach, and the kernel frees the
		// filesystem once they are gone.
		t.Cleanup(func() {
			if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
				t.Errorf("soak: unmounting %s: %v", dir, err)
			}
		})
	}
}

// requireNetem fails the test, naming what is missing, when the netem
// fault can be set up neither with tc netem (sch_netem) nor with its
// NFQUEUE emulation (iptables, nfnetlink_queue, the NFQUEUE target); it
// returns the mode the fault will use. It probes the first node's
// namespace, before its agent runs.
func requireNetem(t *testing.T, r *Rig) string {
	t.Helper()
	x, err := r.Netem(r.Nodes[0].Name, NetemConfig{Delay: time.Millisecond})
	if err != nil {
		t.Fatalf("soak: the netem fault cannot be set up (RAFTER_SOAK_FAULTS selects the fault kinds): %v", err)
	}
	if err := x.Remove(); err != nil {
		t.Fatalf("soak: removing the netem probe: %v", err)
	}
	return x.Mode()
}

// nemesis injects faults into a rig.
type nemesis struct {
	t   *testing.T
	r   *Rig
	rnd *rand.Rand
	vip string
	// Whole is what the cluster must be seen as after each heal.
	whole func(ctx context.Context) error
}

// between returns a random duration in [lo, hi].
func (m *nemesis) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(m.rnd.Int64N(int64(hi-lo)+1))
}

func (m *nemesis) node() *Node { return m.r.Nodes[m.rnd.IntN(len(m.r.Nodes))] }

// hold waits d or until ctx ends: the time a fault stays in effect.
func hold(ctx context.Context, d time.Duration) {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
	case <-tm.C:
	}
}

// roleOf names what n was when the fault hit: leader and/or VIP holder.
func (m *nemesis) roleOf(n *Node) string {
	var roles []string
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if st, err := m.r.Status(ctx, n); err == nil && st.State == "Leader" {
		roles = append(roles, "leader")
	}
	if slices.Contains(holdersNow(m.r, m.vip), n.Name) {
		roles = append(roles, "vip holder")
	}
	if len(roles) == 0 {
		return "follower"
	}
	return strings.Join(roles, "+")
}

// inject applies one fault of kind, holds it, and heals it. ctx bounds
// the hold, not the healing: a fault is always undone.
func (m *nemesis) inject(ctx context.Context, kind string) *fault {
	t := m.t
	t.Helper()
	n := m.node()
	f := &fault{kind: kind, target: n.Name, detail: m.roleOf(n)}
	var d time.Duration
	f.start = time.Now()
	switch kind {
	case faultKill:
		d = m.between(time.Second, 3*time.Second)
		n.Kill()
		hold(ctx, d)
		n.Start()
	case faultStop:
		// A grey failure: the process is there and its sockets accept,
		// but it answers nothing.
		d = m.between(time.Second, 5*time.Second)
		p := n.running()
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			t.Fatalf("soak: %v", err)
		}
		hold(ctx, d)
		if err := p.Signal(syscall.SIGCONT); err != nil {
			t.Fatalf("soak: %v", err)
		}
	case faultPartitionNode, faultPartitionZone:
		// One node per zone in the rig: cutting a node off its peers
		// leaves the client reaching it (its requests there fail for want
		// of a leader); cutting its zone off takes the client's path to it
		// too, as when the zone's network goes.
		d = m.between(2*time.Second, 5*time.Second)
		var rest []string
		for _, o := range others(m.r, n) {
			rest = append(rest, o.Name)
		}
		if kind == faultPartitionZone {
			f.target = "zone " + n.Zone
			rest = append(rest, Client)
		}
		m.r.Partition([]string{n.Name}, rest)
		hold(ctx, d)
		m.r.Heal()
	case faultNetem:
		// Egress only, as tc netem on the node's interface: its round
		// trip to everyone grows by 100ms and 5% of what it sends is lost.
		d = m.between(3*time.Second, 6*time.Second)
		x, err := m.r.Netem(n.Name, NetemConfig{Delay: 100 * time.Millisecond, Loss: 5, Seed: m.rnd.Uint64()})
		if err != nil {
			t.Fatalf("soak: %v", err)
		}
		hold(ctx, d)
		if err := x.Remove(); err != nil {
			t.Fatalf("soak: %v", err)
		}
		f.detail += ", " + x.Mode()
		if seen, dropped, overflow := x.Stats(); seen > 0 {
			f.detail += fmt.Sprintf(" (%d packets held, %d dropped, %d let through at once)", seen-dropped-overflow, dropped, overflow)
		}
	case faultDiskFull:
		d = m.between(2*time.Second, 5*time.Second)
		before := strings.Count(testutil.LogTail(n.LogPath, 64<<20), "no space left")
		filler := fillDisk(t, n)
		hold(ctx, d)
		if err := os.Remove(filler); err != nil {
			t.Fatalf("soak: freeing %s's disk: %v", n.Name, err)
		}
		// Evidence that the agent met the full disk, for the log.
		enospc := strings.Count(testutil.LogTail(n.LogPath, 64<<20), "no space left") - before
		f.detail += fmt.Sprintf(", %d log lines of ENOSPC", enospc)
	default:
		t.Fatalf("soak: unknown fault kind %q", kind)
	}
	f.healed = time.Now()
	f.detail += ", held " + d.Round(100*time.Millisecond).String()
	return f
}

// fillDisk writes a file into n's data-dir filesystem until it is full
// and returns its path.
func fillDisk(t *testing.T, n *Node) string {
	t.Helper()
	path := filepath.Join(n.DataDir, "soak-filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatalf("soak: filling %s's disk: %v", n.Name, err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for range 1 << 12 { // bounded: 4 GiB is far beyond dataDirSize
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return path
			}
			t.Fatalf("soak: filling %s's disk: %v", n.Name, err)
		}
	}
	t.Fatalf("soak: %s's data dir never filled up; is it on its own filesystem?", n.Name)
	return ""
}

// recover waits until the cluster is whole after f was healed, and
// reports why not when it does not become so within limit.
func (m *nemesis) recover(f *fault, limit time.Duration) error {
	err := testutil.Poll(limit, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return m.whole(ctx)
	})
	if err == nil {
		f.recovered = time.Now()
	}
	return err
}

// clusterWhole is the condition between faults: every agent runs (none
// exited on its own), all report one leader, and the VIP is on one node.
func clusterWhole(r *Rig, vip string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		leaders := map[string]bool{}
		for _, n := range r.Nodes {
			if !n.Running() {
				return fmt.Errorf("%w: agent %s is not running", errCrashed, n.Name)
			}
			resp, err := r.API(ctx, n, http.MethodGet, "/v1/status", nil)
			if err != nil {
				return fmt.Errorf("%s: %w", n.Name, err)
			}
			if resp.Status != http.StatusOK || resp.Leader == "" {
				return fmt.Errorf("%s: status %d, leader %q", n.Name, resp.Status, resp.Leader)
			}
			leaders[resp.Leader] = true
		}
		if len(leaders) != 1 {
			return fmt.Errorf("nodes disagree on the leader: %v", leaders)
		}
		if h := holdersNow(r, vip); len(h) != 1 {
			return fmt.Errorf("vip %s held by %v", vip, h)
		}
		return nil
	}
}

// errCrashed marks an agent that exited although the nemesis did not
// kill it.
var errCrashed = errors.New("agent crashed")
