package httpapi

import (
	"fmt"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// BenchmarkHistoryObserveOneRouteChange is what every node's history does
// for a one-route change among n routes: look at the new document and
// record the change.
func BenchmarkHistoryObserveOneRouteChange(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			objs := []fsm.Object{{Kind: fsm.KindListener, Name: "web", Spec: []byte(`{"port":8080}`)}}
			for i := range n {
				objs = append(objs, fsm.Object{Kind: fsm.KindRoute, Name: fmt.Sprintf("r%d", i), Spec: []byte(`{"listener":"web","action":{"respond":{"status":200}}}`)})
			}
			c, err := fsm.Next(fsm.Empty(), 1, fsm.ApplyCommand(objs))
			if err != nil {
				b.Fatal(err)
			}
			const changes = 64
			cfgs := []*fsm.Config{c}
			for i := range changes {
				next, err := fsm.Next(cfgs[i], cfgs[i].Index+1, fsm.PutCommand(fsm.Object{Kind: fsm.KindRoute, Name: fmt.Sprintf("r%d", i*7),
					Spec: fmt.Appendf(nil, `{"listener":"web","priority":%d,"action":{"respond":{"status":200}}}`, i+1)}, nil))
				if err != nil {
					b.Fatal(err)
				}
				cfgs = append(cfgs, next)
			}
			h := &History{size: DefaultHistorySize}
			h.now = func() (t0 time.Time) { return t0 }
			h.observe(cfgs[0])
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if i > changes {
					b.StopTimer()
					i = 1
					h.prev = cfgs[0]
					b.StartTimer()
				}
				h.observe(cfgs[i])
			}
		})
	}
}
