package systemtest

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchCluster starts one 3-node cluster for a benchmark and returns it with
// its leader and one follower.
func benchCluster(b *testing.B) (*Cluster, *Agent, *Agent) {
	c := StartCluster(b, bin, 3)
	leader := c.Leader(30 * time.Second)
	for _, a := range c.Agents {
		if a != leader {
			return c, leader, a
		}
	}
	b.Fatal("no follower")
	return nil, nil, nil
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkWriteLatency measures one PUT at a time, sent to the leader and
// to a follower (which forwards it to the leader).
func BenchmarkWriteLatency(b *testing.B) {
	c, leader, follower := benchCluster(b)
	for _, tc := range []struct {
		name string
		to   *Agent
	}{{"leader", leader}, {"follower", follower}} {
		b.Run(tc.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if !c.put(tc.to, fmt.Sprintf("lat-%s-%d", tc.name, i%500)) {
					b.Fatalf("write %d failed", i)
				}
				lat = append(lat, time.Since(start))
			}
			reportPercentiles(b, lat)
		})
	}
}

// BenchmarkWriteThroughput measures writes/s with 64 concurrent writers
// (Raft batches their entries) against one object per manifest entry vs
// 100 objects per POST /v1/apply.
func BenchmarkWriteThroughput(b *testing.B) {
	c, leader, _ := benchCluster(b)
	b.Run("concurrent-puts", func(b *testing.B) {
		var n atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for w := 0; w < 64; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for {
					i := n.Add(1)
					if i > int64(b.N) {
						return
					}
					if !c.put(leader, fmt.Sprintf("tp-%d", i%2000)) {
						b.Errorf("write %d failed", i)
						return
					}
				}
			}(w)
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
	})
	b.Run("apply-100-per-entry", func(b *testing.B) {
		start := time.Now()
		for i := 0; i < b.N; i++ {
			var m []byte
			for j := 0; j < 100; j++ {
				m = append(m, fmt.Sprintf("---\nkind: pool\nname: batch-%d\nspec: {backends: [{addr: 'b-%d-%d.invalid:80'}]}\n", j, i, j)...)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			r, err := c.Do(ctx, leader, "POST", "/v1/apply", m)
			cancel()
			if err != nil || r.Status != 200 {
				b.Fatalf("apply: %v %+v", err, r)
			}
		}
		b.ReportMetric(float64(b.N*100)/time.Since(start).Seconds(), "objects/s")
	})
}
