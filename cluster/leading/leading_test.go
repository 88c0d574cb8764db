package leading

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

func TestFollow(t *testing.T) {
	l := func(term uint64) Leadership { return Leadership{Leader: term != 0, Term: term} }
	for _, tc := range []struct {
		name        string
		reports     []Leadership
		starts      []uint64 // terms started, in order
		transitions []Leadership
	}{
		{
			name:        "gain, lose, gain",
			reports:     []Leadership{l(0), l(2), l(2), l(0), l(4)},
			starts:      []uint64{2, 4},
			transitions: []Leadership{l(2), l(0), l(4), l(0)},
		},
		{
			// A slow reader saw only the latest report: the loss between
			// terms 2 and 5 was overwritten, yet term 2's work must stop.
			name:        "lost and regained between reads",
			reports:     []Leadership{l(2), l(5)},
			starts:      []uint64{2, 5},
			transitions: []Leadership{l(2), l(0), l(5), l(0)},
		},
		{
			name:    "never leads",
			reports: []Leadership{l(0), l(0)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := make(chan Leadership)
			var running atomic.Int32
			var starts []uint64
			var transitions []Leadership
			done := make(chan error)
			go func() {
				done <- Follow(context.Background(), ch, func(_ context.Context, term uint64) func() {
					if running.Add(1) != 1 {
						t.Errorf("term %d started while another runs", term)
					}
					starts = append(starts, term)
					return func() { running.Add(-1) }
				}, func(l Leadership) { transitions = append(transitions, l) })
			}()
			for _, r := range tc.reports {
				ch <- r
			}
			close(ch)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if running.Load() != 0 {
				t.Fatalf("%d terms still running after Follow returned", running.Load())
			}
			if !slices.Equal(starts, tc.starts) {
				t.Errorf("terms started %v, want %v", starts, tc.starts)
			}
			if !slices.Equal(transitions, tc.transitions) {
				t.Errorf("transitions %v, want %v", transitions, tc.transitions)
			}
		})
	}
}

// TestEvery: the step runs at once, again on each tick, and Every returns
// once ctx ends (a tick ready at the same moment may run it once more).
func TestEvery(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		Every(ctx, time.Millisecond, func(context.Context) {
			calls++
			if calls == 3 {
				cancel()
			}
		})
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Every did not return after its context ended")
	}
	if calls < 3 {
		t.Fatalf("step ran %d times before Every returned, want at least 3", calls)
	}
}
