package vip_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cluster/vip"
	"github.com/rafterlb/rafter/fsm"
)

// fenceStore is a FenceStore with a fixed Config and leadership answer.
type fenceStore struct {
	cfg      *fsm.Config
	notLead  bool
	verifies int
}

func (s *fenceStore) Config() *fsm.Config { return s.cfg }

func (s *fenceStore) VerifyLeader(context.Context) error {
	s.verifies++
	if s.notLead {
		return cluster.ErrNotLeader
	}
	return nil
}

func TestFence(t *testing.T) {
	cfg := fsm.Empty()
	cfg.VIPs["a"] = &fsm.VIP{Name: "a", Spec: fsm.VIPSpec{Provider: fsm.ProviderAWSEIP, AllocationID: "eipalloc-a"}}
	cfg.VIPs["b"] = &fsm.VIP{Name: "b", Spec: fsm.VIPSpec{Provider: fsm.ProviderAWSEIP, AllocationID: "eipalloc-b"}}
	cfg.Assignments["a"] = &fsm.Assignment{VIP: "a", Holder: "n1", Token: 10}
	tests := []struct {
		name     string
		vip      string
		token    uint64
		notLead  bool
		want     error
		verifies int
	}{
		{"current token", "a", 10, false, nil, 1},
		{"newer token (local state behind)", "a", 11, false, nil, 1},
		{"older token refused without asking the quorum", "a", 9, false, vip.ErrStaleToken, 0},
		{"deleted vip", "gone", 10, false, vip.ErrStaleToken, 0},
		{"vip without assignment", "b", 1, false, vip.ErrStaleToken, 0},
		{"deposed leader", "a", 10, true, vip.ErrNotLeader, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &fenceStore{cfg: cfg, notLead: tt.notLead}
			err := vip.NewFence(s).Check(context.Background(), tt.vip, tt.token)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Check: %v, want %v", err, tt.want)
			}
			if s.verifies != tt.verifies {
				t.Fatalf("VerifyLeader called %d times, want %d", s.verifies, tt.verifies)
			}
			if tt.notLead && !errors.Is(err, cluster.ErrNotLeader) {
				t.Fatalf("cause lost: %v", err)
			}
		})
	}
}

// fakeStatus serves a Status that the test changes.
type fakeStatus struct {
	mu sync.Mutex
	st cluster.Status
}

func (f *fakeStatus) Status() cluster.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeStatus) set(st cluster.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = st
}

func TestStatusLiveness(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	now := t0
	clock := func() time.Time { return now }
	src := &fakeStatus{}
	leaderView := func(contact2 time.Time, members ...string) cluster.Status {
		st := cluster.Status{NodeID: "n1", State: "Leader", Leader: "n1"}
		for _, id := range members {
			m := cluster.Member{ID: id, LastContact: now}
			if id == "n2" {
				m.LastContact = contact2
			}
			st.Members = append(st.Members, m)
		}
		return st
	}
	l, err := vip.NewStatusLiveness(src, 500*time.Millisecond, clock)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		alive bool
		since time.Time
	}
	steps := []struct {
		name    string
		advance time.Duration
		status  func() cluster.Status
		node    string
		want    want
	}{
		{"self is alive", 0, func() cluster.Status { return leaderView(now, "n1", "n2", "n3") }, "n1", want{true, t0}},
		{"peer in contact", 0, nil, "n2", want{true, t0}},
		{"silent for less than the period", 400 * time.Millisecond, func() cluster.Status { return leaderView(t0, "n1", "n2", "n3") }, "n2", want{true, t0}},
		{"silent for the period: dead since last contact", 200 * time.Millisecond, func() cluster.Status { return leaderView(t0, "n1", "n2", "n3") }, "n2", want{false, t0}},
		{"back: alive since first seen", time.Second, func() cluster.Status { return leaderView(t0.Add(1600*time.Millisecond), "n1", "n2", "n3") }, "n2", want{true, t0.Add(1600 * time.Millisecond)}},
		{"still alive keeps its since", 5 * time.Second, func() cluster.Status { return leaderView(t0.Add(6600*time.Millisecond), "n1", "n2", "n3") }, "n2", want{true, t0.Add(1600 * time.Millisecond)}},
		{"removed from raft: dead", 10 * time.Millisecond, func() cluster.Status { return leaderView(now, "n1", "n2") }, "n3", want{false, t0.Add(6610 * time.Millisecond)}},
		{"unknown node: dead", 0, nil, "n9", want{false, t0.Add(6610 * time.Millisecond)}},
		{"follower view: peer unknown", time.Second, func() cluster.Status {
			return cluster.Status{NodeID: "n1", State: "Follower", Leader: "n2", Members: []cluster.Member{{ID: "n2", Healthy: true, LastContact: now}, {ID: "n3"}}}
		}, "n3", want{false, t0.Add(6610 * time.Millisecond)}},
		{"shutdown: even self is dead", time.Second, func() cluster.Status { return cluster.Status{NodeID: "n1", State: "Shutdown"} }, "n1", want{false, t0.Add(8610 * time.Millisecond)}},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		if s.status != nil {
			src.set(s.status())
		}
		alive, since := l.Alive(s.node)
		if alive != s.want.alive || !since.Equal(s.want.since) {
			t.Fatalf("%s: Alive(%s) = %v since %s, want %v since %s", s.name, s.node, alive, since.Sub(t0), s.want.alive, s.want.since.Sub(t0))
		}
	}
}

func TestConfigValidate(t *testing.T) {
	store := nopStore{}
	live, err := vip.NewStatusLiveness(&fakeStatus{}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		cfg   vip.Config
		field string
	}{
		{"no store", vip.Config{Liveness: live}, "vip.store"},
		{"no liveness", vip.Config{Store: store}, "vip.liveness"},
		{"negative hold-down", vip.Config{Store: store, Liveness: live, HoldDown: -1}, "vip.hold_down"},
		{"retry max below base", vip.Config{Store: store, Liveness: live, RetryBase: time.Second, RetryMax: time.Millisecond}, "vip.retry_max"},
		{"mover for provider none", vip.Config{Store: store, Liveness: live, Movers: map[string]vip.Mover{fsm.ProviderNone: nopMover{}}}, "vip.movers[none]"},
		{"nil mover", vip.Config{Store: store, Liveness: live, Movers: map[string]vip.Mover{fsm.ProviderAWSEIP: nil}}, "vip.movers[aws-eip]"},
		{"defaults", vip.Config{Store: store, Liveness: live}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := vip.New(tt.cfg)
			if tt.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("New: %v, want an error naming %s", err, tt.field)
			}
		})
	}
}

type nopStore struct{}

func (nopStore) Config() *fsm.Config                                 { return fsm.Empty() }
func (nopStore) Changed() <-chan struct{}                            { return nil }
func (nopStore) Apply(context.Context, *fsm.Command) (uint64, error) { return 0, errors.New("nop") }
func (nopStore) VerifyLeader(context.Context) error                  { return nil }

type nopMover struct{}

func (nopMover) Move(context.Context, fsm.VIP, fsm.Node, uint64) error { return nil }
