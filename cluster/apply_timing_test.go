package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cluster/clustertest"
	"github.com/rafterlb/rafter/fsm"
)

// benchCommand cycles through a fixed set of listeners so the document,
// and the cost of each fsm.Next, stays the same size whatever b.N is.
func benchCommand(i int) *fsm.Command {
	spec, _ := json.Marshal(fsm.ListenerSpec{Port: 10000 + i%64, Limits: fsm.ListenerLimits{MaxConns: i + 1}})
	return fsm.PutCommand(fsm.Object{Kind: fsm.KindListener, Name: fmt.Sprintf("bench%02d", i%64), Spec: spec}, nil)
}

// BenchmarkApply: one writer, each write waiting for its commit on 3 nodes.
func BenchmarkApply(b *testing.B) {
	c := clustertest.NewCluster(b, 3)
	c.Leader(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.Apply(b, benchCommand(i))
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}

// BenchmarkApplyParallel: concurrent writers; Raft batches their entries
// into shared disk writes and AppendEntries rounds.
func BenchmarkApplyParallel(b *testing.B) {
	c := clustertest.NewCluster(b, 3)
	leader := c.Leader(b)
	ctx := context.Background()
	var retries atomic.Int64
	var seq atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		leader := leader
		for pb.Next() {
			i := int(seq.Add(1))
			// On a loaded machine a leader can miss its lease; writers
			// then follow the new leader, as clients of the admin API do.
			for {
				_, err := leader.Apply(ctx, benchCommand(i))
				if err == nil {
					break
				}
				if !errors.Is(err, cluster.ErrNotLeader) && !errors.Is(err, cluster.ErrNoLeader) {
					b.Error(err)
					return
				}
				retries.Add(1)
				leader = waitLeader(c)
				if leader == nil {
					b.Error("no leader")
					return
				}
			}
		}
	})
	b.ReportMetric(float64(retries.Load()), "retries")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}

// waitLeader polls for a leader from a benchmark worker goroutine, where
// Cluster.Leader's Fatal may not be called.
func waitLeader(c *clustertest.Cluster) *cluster.Node {
	deadline := time.Now().Add(clustertest.WaitTimeout)
	for time.Now().Before(deadline) {
		if n := currentLeader(c); n != nil {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}
