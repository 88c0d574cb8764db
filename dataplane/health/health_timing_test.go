package health

import (
	"fmt"
	"testing"

	"github.com/rafterlb/rafter/fsm"
)

// hotMonitor has 50 pools of 20 backends, outlier detection on with a
// threshold the benchmarks never reach.
func hotMonitor() (*Monitor, []key) {
	m := NewMonitor(Options{Clock: newFakeClock()})
	pools := map[string]fsm.PoolSpec{}
	var keys []key
	for p := range 50 {
		name := fmt.Sprintf("pool-%d", p)
		var addrs []string
		for b := range 20 {
			addr := fmt.Sprintf("10.%d.0.%d:8080", p, b)
			addrs = append(addrs, addr)
			keys = append(keys, key{name, addr})
		}
		pools[name] = poolWith(nil, &fsm.Outlier{Consecutive5xx: 1 << 30, ConsecutiveConnectErrors: 1 << 30}, addrs...)
	}
	m.Update(pools)
	return m, keys
}

func TestHotPathAllocatesNothing(t *testing.T) {
	m, keys := hotMonitor()
	k := keys[len(keys)/2]
	tests := []struct {
		name string
		fn   func()
	}{
		{"Healthy", func() { _ = m.Healthy(k.pool, k.addr) }},
		{"Healthy unknown", func() { _ = m.Healthy("nope", k.addr) }},
		{"HealthyCount", func() { _, _ = m.HealthyCount(k.pool) }},
		{"Observe success", func() { m.Observe(k.pool, k.addr, Success) }},
		{"Observe 5xx", func() { m.Observe(k.pool, k.addr, Status5xx) }},
		{"Observe connect error", func() { m.Observe(k.pool, k.addr, ConnectError) }},
	}
	for _, tc := range tests {
		if n := testing.AllocsPerRun(1000, tc.fn); n != 0 {
			t.Errorf("%s allocates %v times per call, want 0", tc.name, n)
		}
	}
}

func BenchmarkHealthy(b *testing.B) {
	m, keys := hotMonitor()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			k := keys[i%len(keys)]
			if !m.Healthy(k.pool, k.addr) {
				b.Fatal("unhealthy")
			}
			i++
		}
	})
}

func BenchmarkHealthyCount(b *testing.B) {
	m, keys := hotMonitor()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			_, _ = m.HealthyCount(keys[i%len(keys)].pool)
			i++
		}
	})
}

func BenchmarkObserve(b *testing.B) {
	for _, o := range []Outcome{Success, Status5xx} {
		b.Run(o.String(), func(b *testing.B) {
			m, keys := hotMonitor()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					k := keys[i%len(keys)]
					m.Observe(k.pool, k.addr, o)
					i++
				}
			})
		})
	}
}
