package lease

import (
	"context"
	"testing"
	"time"
)

// BenchmarkKeepAlive measures keepalives per second one leader's Manager
// answers (all from memory), over 1,000 leases, from parallel callers.
func BenchmarkKeepAlive(b *testing.B) {
	store := newFakeStore(b)
	m, err := New(Config{
		Store: store, CheckInterval: time.Second, SelfPreservationShare: 0.5,
		MaxExpirePerEntry: 1000, ApplyTimeout: time.Second,
	})
	if err != nil {
		b.Fatal(err)
	}
	m.takeOffice(context.Background(), 1)
	ids := make([]uint64, 1000)
	for i := range ids {
		l, err := m.Grant(context.Background(), time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = l.ID
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := m.KeepAlive(context.Background(), ids[i%len(ids)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "keepalives/s")
}
