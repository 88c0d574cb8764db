package leading

import (
	"context"
	"sync/atomic"
	"testing"
)

func TestFollow(t *testing.T) {
	ch := make(chan bool)
	var running, starts atomic.Int32
	var transitions []bool
	done := make(chan error)
	go func() {
		done <- Follow(context.Background(), ch, func(context.Context) func() {
			starts.Add(1)
			running.Add(1)
			return func() { running.Add(-1) }
		}, func(l bool) { transitions = append(transitions, l) })
	}()
	for _, l := range []bool{false, true, true, false, true} {
		ch <- l
	}
	close(ch)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if starts.Load() != 2 || running.Load() != 0 {
		t.Fatalf("starts %d, still running %d; want 2 terms, none left running", starts.Load(), running.Load())
	}
	if len(transitions) != 3 || !transitions[0] || transitions[1] || !transitions[2] {
		t.Fatalf("transitions %v, want [true false true]", transitions)
	}
}
