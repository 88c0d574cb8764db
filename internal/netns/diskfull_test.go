//go:build linux

package netns

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// TestDiskFullNodeCatchesUp cuts the leader off while the others take
// writes, fills its data-dir filesystem and heals the partition, so that
// the entries it must catch up on meet a full disk; then frees the disk.
// The node must store nothing it could not, and once space is back catch
// up with every acknowledged write and the same applied index.
func TestDiskFullNodeCatchesUp(t *testing.T) {
	o := DefaultOptions()
	o.Bin = bin
	r := New(t, o)
	mountDataDirs(t, r)
	r.StartAgents()
	victim := r.Leader(60 * time.Second)
	rest := others(r, victim)
	t.Cleanup(func() {
		if t.Failed() {
			dumpStacks(r)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := range 5000 {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			name := fmt.Sprintf("w-%d", i)
			if ok, _ := put(r, rest[i%2], name, apiTimeout); ok {
				mu.Lock()
				acked = append(acked, name)
				mu.Unlock()
			}
		}
	})
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	testutil.WaitFor(t, 30*time.Second, "writes before the partition", func() bool { return count() >= 50 })
	r.Partition([]string{victim.Name}, []string{rest[0].Name, rest[1].Name})
	mark := count()
	testutil.WaitFor(t, 60*time.Second, "writes on the majority side", func() bool { return count() >= mark+300 })
	filler := fillDisk(t, victim)
	r.Heal()
	mark = count()
	testutil.WaitFor(t, 30*time.Second, "writes while the disk is full", func() bool { return count() >= mark+150 })
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	mark = count()
	testutil.WaitFor(t, 30*time.Second, "writes after freeing the disk", func() bool { return count() >= mark+100 })
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if err := testutil.Poll(time.Minute, func() error { return allAcked(r, acked) }); err != nil {
		t.Fatalf("after the disk of %s was freed: %v", victim.Name, err)
	}
	testutil.Eventually(t, time.Minute, "one applied index and document on every node", func() error { return converged(r) })
}
