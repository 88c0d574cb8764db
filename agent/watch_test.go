package agent

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

// fakeSource is a configSource whose changes the test makes with fsm.Next,
// as Raft would apply them.
type fakeSource struct {
	mu      sync.Mutex
	c       *fsm.Config
	changed chan struct{}
}

func newFakeSource() *fakeSource {
	return &fakeSource{c: fsm.Empty(), changed: make(chan struct{})}
}

func (s *fakeSource) Config() *fsm.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c
}

func (s *fakeSource) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *fakeSource) apply(t *testing.T, cmd *fsm.Command) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	next, err := fsm.Next(s.c, s.c.Index+1, cmd)
	if err != nil {
		t.Fatalf("apply %s: %v", cmd.Type, err)
	}
	s.c = next
	close(s.changed)
	s.changed = make(chan struct{})
}

// recordingHealth records each pool set it is given and, at that moment,
// the index the data plane had and the index the watcher reported as seen,
// which must both still be the older ones.
type recordingHealth struct {
	mu        sync.Mutex
	updates   []map[string]fsm.PoolSpec
	w         *watcher
	dpIndex   uint64
	seenIndex uint64
}

func (h *recordingHealth) Update(pools map[string]fsm.PoolSpec) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.updates = append(h.updates, pools)
	if h.w != nil {
		h.dpIndex = h.w.Snapshot().Index
		h.seenIndex, _ = h.w.indexes()
	}
}

func (h *recordingHealth) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.updates)
}

func manifest(t *testing.T, y string) *fsm.Command {
	t.Helper()
	objs, err := fsm.ParseManifest([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return fsm.ApplyCommand(objs)
}

// waitSeen waits until the watcher has handled src at index i: fed the
// health monitor and, if it reads the change, the data plane.
func waitSeen(t *testing.T, w *watcher, i uint64) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, "watcher reads the new index", func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.seen == nil || w.seen.Index < i {
			return fmt.Errorf("watcher has not read index %d", i)
		}
		return nil
	})
}

func TestWatcherSkipsChangesTheDataPlaneDoesNotRead(t *testing.T) {
	src := newFakeSource()
	src.apply(t, manifest(t, `
kind: listener
name: web
spec: {port: 8080}
---
kind: pool
name: app
spec:
  backends: [{addr: "127.0.0.1:9001", zone: a}]
---
kind: route
name: app
spec:
  listener: web
  match: {path: {prefix: /}}
  action: {split: [{pool: app, weight: 100}]}
---
kind: vip
name: v1
spec: {provider: none, home_node: n1}
`))
	h := &recordingHealth{}
	w := newWatcher(src, h)
	if w.Snapshot() == nil || h.count() != 1 {
		t.Fatalf("first configuration not fed: snapshot %v, health updates %d", w.Snapshot(), h.count())
	}
	h.mu.Lock()
	h.w = w
	h.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	published := w.Snapshot().Index
	steps := []struct {
		name      string
		cmd       *fsm.Command
		dataplane bool // the data plane must see it
		health    bool // the health monitor must see it
	}{
		{"node record", fsm.NewCommand(&fsm.NodeUpsert{Node: &fsm.Node{ID: "n1", Zone: "a", RaftAddr: "127.0.0.1:7701"}}), false, false},
		{"vip assignment", fsm.NewCommand(&fsm.Assign{Assignment: &fsm.Assignment{VIP: "v1", Holder: "n1"}}), false, false},
		{"lease grant", fsm.LeaseGrantCommand(30*time.Second, time.Unix(1000, 0)), false, false},
		{"route change", manifest(t, "kind: route\nname: app\nspec: {listener: web, match: {path: {prefix: /x}}, action: {split: [{pool: app, weight: 100}]}}\n"), true, false},
		{"backend registered", fsm.BackendRegisterCommand("app", fsm.Backend{Addr: "127.0.0.1:9002", Zone: "a", Lease: 4}), true, true},
		{"zone evacuated", fsm.NewCommand(&fsm.ZoneChange{Zone: &fsm.ZoneState{Zone: "a", Evacuated: true}}), true, false},
	}
	for _, st := range steps {
		ch := w.Changed()
		before := h.count()
		src.apply(t, st.cmd)
		idx := src.Config().Index
		waitSeen(t, w, idx)
		got := w.Snapshot().Index
		if st.dataplane {
			select {
			case <-ch:
			default:
				t.Fatalf("%s: the data plane was not signalled", st.name)
			}
			if got != idx {
				t.Fatalf("%s: data plane has index %d, want %d", st.name, got, idx)
			}
			published = idx
		} else {
			select {
			case <-ch:
				t.Fatalf("%s: the data plane was signalled for a change it does not read", st.name)
			default:
			}
			if got != published {
				t.Fatalf("%s: data plane snapshot moved to %d", st.name, got)
			}
		}
		if fed := h.count() > before; fed != st.health {
			t.Fatalf("%s: health monitor fed = %v, want %v", st.name, fed, st.health)
		}
		if st.health {
			h.mu.Lock()
			dp, seen := h.dpIndex, h.seenIndex
			h.mu.Unlock()
			if dp >= idx {
				t.Fatalf("%s: the data plane had index %d before the health monitor saw %d", st.name, dp, idx)
			}
			// Seen before the data plane has it, the config-lag metric
			// would count the data plane as current with idx.
			if seen >= idx {
				t.Fatalf("%s: the watcher reported index %d as seen before handing it on", st.name, seen)
			}
		}
	}
}
