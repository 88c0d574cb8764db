package testutil

import (
	"testing"
	"time"
)

func TestFakeClock(t *testing.T) {
	c := NewFakeClock()
	start := c.Now()
	early, late := c.NewTimer(time.Second), c.NewTimer(3*time.Second)
	stopped := c.NewTimer(2 * time.Second)
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop: want true once, then false")
	}
	if c.Waiters() != 2 {
		t.Fatalf("Waiters = %d, want 2", c.Waiters())
	}
	c.Advance(2 * time.Second)
	select {
	case at := <-early.C():
		if want := start.Add(2 * time.Second); !at.Equal(want) {
			t.Fatalf("fired with %v, want %v", at, want)
		}
	default:
		t.Fatal("due timer did not fire")
	}
	select {
	case <-late.C():
		t.Fatal("timer fired before its time")
	default:
	}
	if c.Waiters() != 1 {
		t.Fatalf("Waiters = %d, want 1", c.Waiters())
	}
	select {
	case <-c.NewTimer(0).C():
	default:
		t.Fatal("a zero timer must fire at once")
	}
}
