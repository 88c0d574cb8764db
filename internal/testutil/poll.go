package testutil

import (
	"errors"
	"testing"
	"time"
)

// Poll asks again after firstPoll, then backs off to at most maxPoll: a
// quick condition is seen quickly, and a long wait (an election, a process
// starting) does not load the shared machine with requests.
const (
	firstPoll = 5 * time.Millisecond
	maxPoll   = 50 * time.Millisecond
)

// Eventually calls cond until it returns nil, failing the test with what
// and cond's last error when within does not suffice. Deadlines are
// generous on purpose: test machines are shared and slow.
func Eventually(t testing.TB, within time.Duration, what string, cond func() error) {
	t.Helper()
	if err := Poll(within, cond); err != nil {
		t.Fatalf("%s: not within %v: %v", what, within, err)
	}
}

// WaitFor is Eventually for a condition that has no reason to give.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	Eventually(t, within, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

var errNotYet = errors.New("condition not met")

// Poll calls cond until it returns nil or within has passed, and returns
// its last error then.
func Poll(within time.Duration, cond func() error) error {
	deadline := time.Now().Add(within)
	for wait := firstPoll; ; wait = min(2*wait, maxPoll) {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(wait)
	}
}
