package testutil

import (
	"slices"
	"sync"
	"time"
)

// FakeClock is a clock that moves only when a test advances it. Its
// methods have the shapes rafter's clock interfaces use (Now, and NewTimer
// returning something with C and Stop), so a package adapts it in a line
// or passes FakeClock.Now where it takes a func() time.Time.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*FakeTimer
}

// FakeTimer fires when its clock is advanced past its time.
type FakeTimer struct {
	c  *FakeClock
	at time.Time
	ch chan time.Time
}

// NewFakeClock starts at a fixed, recognisable time.
func NewFakeClock() *FakeClock {
	return &FakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// Now is the clock's time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer is a timer that fires once the clock has moved d past now
// (at once when d is not positive).
func (c *FakeClock) NewTimer(d time.Duration) *FakeTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &FakeTimer{c: c, at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

// C delivers the clock's time when the timer fires.
func (t *FakeTimer) C() <-chan time.Time { return t.ch }

// Stop disarms the timer; it reports whether the timer was still armed.
func (t *FakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	i := slices.Index(t.c.timers, t)
	if i < 0 {
		return false
	}
	t.c.timers = slices.Delete(t.c.timers, i, i+1)
	return true
}

// Advance moves the clock and fires every timer that is due.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.timers = slices.DeleteFunc(c.timers, func(t *FakeTimer) bool {
		if t.at.After(c.now) {
			return false
		}
		t.ch <- c.now
		return true
	})
}

// Waiters is how many timers are armed and not yet due: a test waits for
// the code under test to arm its timer before it advances the clock.
func (c *FakeClock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}
