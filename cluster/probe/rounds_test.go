package probe

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// A probe that arrived while a round was running waits for the next one
// and, when the first round ends before that next one starts, arms the
// confirm loop once more. After the next round answers it nothing waits,
// yet that stale wake-up starts one more round at once. A node that sends
// its next probe as soon as the answer comes (Prober.ProbeNow, which the
// keeper calls while it waits for a grant, or any answer slower than the
// probe interval) then arrives just after a round began and always waits
// two full rounds: with rounds over LeasePeriod/2 (100ms) its lease is
// never fresh when the grant arrives, and it never claims.
//
// Which of the waiter and the confirm loop runs first once a round ends is
// up to the scheduler: on one P the loop, which closes the round, runs on
// until it blocks in the next VerifyLeader, so the bad order happens every
// time; the scenario also repeats.
func TestTrackerStartsNoRoundNobodyWaitsFor(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	verify, started, release := gatedVerify()
	tr, err := NewTracker(TrackerConfig{NodeID: "n3", ConfirmTimeout: 10 * time.Second, VerifyLeader: verify})
	if err != nil {
		t.Fatal(err)
	}
	lead := runTracker(t, tr)
	lead(true)
	waitUntil(t, "the term to start", func() bool { _, ok := tr.TermStart(); return ok })
	defer close(release)

	answered := make(chan string, 2)
	probe := func(node string, seq uint64) {
		go func() {
			if _, err := tr.Handle(context.Background(), Request{Node: node, Incarnation: 1, Seq: seq}); err != nil {
				t.Errorf("probe %d of %s: %v", seq, node, err)
			}
			answered <- node
		}()
	}
	for i := uint64(1); i <= 20; i++ {
		probe("n2", i)
		<-started // a round for n2's probe
		probe("n1", i)
		waitUntil(t, "n1's probe recorded", func() bool {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			return tr.latest["n1"][1] == i
		})
		release <- struct{}{} // the round ends: it answers n2, not n1 (arrived after it started)
		if got := <-answered; got != "n2" {
			t.Fatalf("iteration %d: %s answered by the first round", i, got)
		}
		<-started                        // the round n1 waits for
		time.Sleep(5 * time.Millisecond) // a round takes a while: n1's waiter looks again meanwhile
		release <- struct{}{}            // it answers n1
		if got := <-answered; got != "n1" {
			t.Fatalf("iteration %d: %s answered by the second round", i, got)
		}
		// Nothing waits now: no round may start before the next probe.
		select {
		case <-started:
			t.Fatalf("iteration %d: a confirmation round started with no probe waiting; "+
				"n1's next probe, sent on the answer, arrives just after it began and needs two rounds", i)
		case <-time.After(30 * time.Millisecond):
		}
	}
}
