package vip_test

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafterlb/rafter/cluster/probe"
	"github.com/rafterlb/rafter/cluster/vip"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

// fakeReports is a settable vip.Reports.
type fakeReports struct {
	mu      sync.Mutex
	leading bool
	r       map[string]probe.Report
}

func (f *fakeReports) Report(node string) (probe.Report, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.leading {
		return probe.Report{}, false
	}
	r := f.r[node]
	r.Holding = maps.Clone(r.Holding)
	return r, true
}

func (f *fakeReports) set(node string, r probe.Report) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.r[node] = r
}

func linuxConfig() *fsm.Config {
	cfg := fsm.Empty()
	for _, id := range []string{"n1", "n2", "n3"} {
		cfg.Nodes[id] = &fsm.Node{ID: id}
	}
	cfg.VIPs["a"] = &fsm.VIP{Name: "a", Spec: fsm.VIPSpec{Provider: fsm.ProviderLinux, Address: "10.0.0.100/24", HomeNode: "n1"}}
	cfg.VIPs["e"] = &fsm.VIP{Name: "e", Spec: fsm.VIPSpec{Provider: fsm.ProviderAWSEIP, AllocationID: "eipalloc-e", HomeNode: "n2"}}
	cfg.Assignments["a"] = &fsm.Assignment{VIP: "a", Holder: "n2", Token: 20}
	cfg.Assignments["e"] = &fsm.Assignment{VIP: "e", Holder: "n2", Token: 21}
	return cfg
}

func TestHandoverGrants(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	const delay = 2 * time.Second
	recent, old := now.Add(-100*time.Millisecond), now.Add(-delay)
	tests := []struct {
		name    string
		leading bool
		reports map[string]probe.Report
		node    string
		want    map[string]uint64
		settled bool
	}{
		{
			name:    "others reported not holding: granted at once",
			leading: true,
			reports: map[string]probe.Report{
				"n1": {Arrived: recent, Reported: true},
				"n3": {Arrived: recent, Reported: true, Holding: map[string]uint64{"other": 3}},
			},
			node: "n2",
			want: map[string]uint64{"a": 20},
		},
		{
			name:    "previous holder still reports it: not granted",
			leading: true,
			reports: map[string]probe.Report{
				"n1": {Arrived: recent, Reported: true, Holding: map[string]uint64{"a": 10}},
				"n3": {Arrived: recent, Reported: true},
			},
			node: "n2",
		},
		{
			name:    "a node not heard in this term blocks until the delay passed",
			leading: true,
			reports: map[string]probe.Report{
				"n1": {Arrived: now.Add(-delay + time.Millisecond)},
				"n3": {Arrived: recent, Reported: true},
			},
			node: "n2",
		},
		{
			name:    "previous holder silent for the delay: granted",
			leading: true,
			reports: map[string]probe.Report{
				"n1": {Arrived: old, Reported: true, Holding: map[string]uint64{"a": 10}},
				"n3": {Arrived: recent, Reported: true},
			},
			node: "n2",
			want: map[string]uint64{"a": 20},
		},
		{
			name:    "a settled assignment is granted although a node is silent",
			leading: true,
			settled: true,
			reports: map[string]probe.Report{
				"n1": {Arrived: now.Add(-delay + time.Millisecond), Reported: true, Holding: map[string]uint64{"other": 1}},
			},
			node: "n2",
			want: map[string]uint64{"a": 20},
		},
		{
			name:    "only the holder gets grants",
			leading: true,
			reports: map[string]probe.Report{
				"n2": {Arrived: recent, Reported: true},
				"n3": {Arrived: recent, Reported: true},
			},
			node: "n1",
		},
		{
			name:    "a follower grants nothing",
			leading: false,
			node:    "n2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &fakeReports{leading: tt.leading, r: tt.reports}
			cfg := linuxConfig()
			cfg.Assignments["a"].Settled = tt.settled
			h := vip.NewHandover(fixedConfig{cfg}, rep, delay, func() time.Time { return now })
			if got := h.Grants(tt.node); !maps.Equal(got, tt.want) {
				t.Fatalf("Grants(%s) = %v, want %v", tt.node, got, tt.want)
			}
		})
	}
}

type fixedConfig struct{ cfg *fsm.Config }

func (f fixedConfig) Config() *fsm.Config { return f.cfg }

func TestLinuxMoverWaitsForTheHolder(t *testing.T) {
	cfg := linuxConfig()
	rep := &fakeReports{leading: true, r: map[string]probe.Report{}}
	m := &vip.LinuxMover{Fence: vip.NewFence(&fenceStore{cfg: cfg}), Reports: rep, Poll: time.Millisecond}
	v, n2 := *cfg.VIPs["a"], *cfg.Nodes["n2"]

	done := make(chan error, 1)
	go func() { done <- m.Move(context.Background(), v, n2, 20) }()
	select {
	case err := <-done:
		t.Fatalf("Move returned %v before the holder reported the address", err)
	case <-time.After(50 * time.Millisecond):
	}
	if in, _ := m.InPlace(context.Background(), v, n2); in {
		t.Fatal("InPlace before the holder reported")
	}
	rep.set("n2", probe.Report{Reported: true, Holding: map[string]uint64{"a": 19}})
	select {
	case err := <-done:
		t.Fatalf("Move returned %v for an older token", err)
	case <-time.After(50 * time.Millisecond):
	}
	rep.set("n2", probe.Report{Reported: true, Holding: map[string]uint64{"a": 20}})
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Move: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Move did not return after the holder reported")
	}
	if in, err := m.InPlace(context.Background(), v, n2); in || err != nil {
		t.Fatalf("InPlace before the move was settled = %v, %v; want false", in, err)
	}
	cfg.Assignments["a"].Settled = true
	if in, err := m.InPlace(context.Background(), v, n2); !in || err != nil {
		t.Fatalf("InPlace = %v, %v; want true", in, err)
	}

	// A stale token is fenced at once; a context end stops the wait.
	if err := m.Move(context.Background(), v, n2, 19); !errors.Is(err, vip.ErrStaleToken) {
		t.Fatalf("Move with an older token: %v, want ErrStaleToken", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := m.Move(ctx, v, *cfg.Nodes["n3"], 20); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Move to a node that never claims: %v, want deadline exceeded", err)
	}
}

// n1StillHolds: every node reported just now, and n1 that it still holds
// VIP "a" under an old token, so the leader grants "a" to nobody else.
func n1StillHolds(now time.Time) *fakeReports {
	return &fakeReports{leading: true, r: map[string]probe.Report{
		"n1": {Arrived: now, Reported: true, Holding: map[string]uint64{"a": 10}},
		"n2": {Arrived: now, Reported: true},
		"n3": {Arrived: now, Reported: true},
	}}
}

// A hand-over that takes long is said at WARN once, with what holds the
// grant up, and its end at INFO.
func TestLinuxMoverSaysWhatItWaitsFor(t *testing.T) {
	cfg, now := linuxConfig(), time.Now()
	rep := n1StillHolds(now)
	var logs testutil.SyncBuffer
	store := &fenceStore{cfg: cfg}
	m := &vip.LinuxMover{
		Fence: vip.NewFence(store), Reports: rep, Poll: time.Millisecond,
		Handover:  vip.NewHandover(fixedConfig{cfg}, rep, time.Hour, nil),
		WarnAfter: 50 * time.Millisecond,
		Logger:    slog.New(slog.NewJSONHandler(&logs, nil)),
	}
	v, n2 := *cfg.VIPs["a"], *cfg.Nodes["n2"]
	done := make(chan error, 1)
	go func() { done <- m.Move(context.Background(), v, n2, 20) }()
	const warning = `"msg":"linux vip not yet claimed by its new holder"`
	testutil.WaitFor(t, 10*time.Second, "the warning", func() bool { return strings.Contains(logs.String(), warning) })
	if s := logs.String(); !strings.Contains(s, `"granted":"no, waiting for node n1: reports holding it with token 10"`) {
		t.Fatalf("the warning does not name the node holding the grant up:\n%s", s)
	}
	rep.set("n1", probe.Report{Arrived: now, Reported: true})
	time.Sleep(100 * time.Millisecond) // still waiting: no second warning
	rep.set("n2", probe.Report{Arrived: now, Reported: true, Holding: map[string]uint64{"a": 20}})
	if err := <-done; err != nil {
		t.Fatalf("Move: %v", err)
	}
	if s := logs.String(); strings.Count(s, warning) != 1 || !strings.Contains(s, `"msg":"linux vip claimed after a long wait"`) {
		t.Fatalf("want one warning, then the claim said:\n%s", s)
	}

	// Granted, and still not claimed: the warning says the node decides.
	rep.set("n2", probe.Report{Arrived: now, Reported: true})
	logs = testutil.SyncBuffer{}
	m.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- m.Move(ctx, v, *cfg.Nodes["n3"], 20) }()
	testutil.WaitFor(t, 10*time.Second, "the warning", func() bool { return strings.Contains(logs.String(), warning) })
	cancel()
	<-done
	if s := logs.String(); !strings.Contains(s, `"granted":"yes`) || !strings.Contains(s, `"node_holding":null`) {
		t.Fatalf("the warning does not say the grant is given:\n%s", s)
	}
}

// Move fails with ErrNotClaimed once the target has had the grant for
// ClaimTimeout, and never while the leader still waits for another node
// to let go: that wait is not the target's fault.
func TestLinuxMoverGivesUpOnceGranted(t *testing.T) {
	cfg, now := linuxConfig(), time.Now()
	rep := n1StillHolds(now)
	const claimTimeout = 100 * time.Millisecond
	m := &vip.LinuxMover{
		Fence: vip.NewFence(&fenceStore{cfg: cfg}), Reports: rep, Poll: time.Millisecond,
		Handover:     vip.NewHandover(fixedConfig{cfg}, rep, time.Hour, nil),
		ClaimTimeout: claimTimeout,
		Logger:       slog.New(slog.DiscardHandler),
	}
	done := make(chan error, 1)
	go func() { done <- m.Move(context.Background(), *cfg.VIPs["a"], *cfg.Nodes["n2"], 20) }()
	select {
	case err := <-done:
		t.Fatalf("Move returned %v while n1 still holds the vip", err)
	case <-time.After(5 * claimTimeout):
	}
	granted := time.Now()
	rep.set("n1", probe.Report{Arrived: now, Reported: true})
	select {
	case err := <-done:
		if !errors.Is(err, vip.ErrNotClaimed) {
			t.Fatalf("Move: %v, want ErrNotClaimed", err)
		}
		if took := time.Since(granted); took < claimTimeout {
			t.Fatalf("gave up %s after the grant, before the claim timeout %s", took, claimTimeout)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Move did not give up on a target that had the grant")
	}
}
