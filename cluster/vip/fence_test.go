package vip_test

import (
	"context"
	"errors"
	"strings"
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

func TestConfigValidate(t *testing.T) {
	store := nopStore{}
	live := allAlive{}
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
