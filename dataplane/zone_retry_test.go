package dataplane

import (
	"slices"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/fsm"
)

// A retry goes to a backend this request has not tried yet: in a
// zone-aware pool whose local backends were all tried, that means one in
// another zone, before any tried backend is repeated.
func TestZoneAwareRetrySpillsBeforeRepeating(t *testing.T) {
	bs := []fsm.Backend{{Addr: "a1", Zone: "a"}, {Addr: "a2", Zone: "a"}, {Addr: "b1", Zone: "b"}, {Addr: "c1", Zone: "c"}}
	cases := []struct {
		name  string
		spec  fsm.PoolSpec
		tried []string
		want  string
	}{
		{"first try stays local", fsm.PoolSpec{Backends: bs, ZoneAware: true}, nil, "a1 a2"},
		{"retry prefers the untried local one", fsm.PoolSpec{Backends: bs, ZoneAware: true}, []string{"a1"}, "a2"},
		{"every local tried: other zones", fsm.PoolSpec{Backends: bs, ZoneAware: true}, []string{"a1", "a2"}, "b1 c1"},
		{"every local and b tried: c", fsm.PoolSpec{Backends: bs, ZoneAware: true}, []string{"a2", "a1", "b1"}, "c1"},
		{"everything tried: local again", fsm.PoolSpec{Backends: bs, ZoneAware: true}, []string{"a1", "a2", "b1", "c1"}, "a1 a2"},
		{"not zone aware: untried ones", fsm.PoolSpec{Backends: bs}, []string{"a1", "a2"}, "b1 c1"},
		{"not zone aware, everything tried", fsm.PoolSpec{Backends: bs}, []string{"a1", "a2", "b1", "c1"}, "a1 a2 b1 c1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := testPool(t, tc.spec, map[string]bool{}, "a")
			var tried []int32
			for _, addr := range tc.tried {
				i := slices.IndexFunc(p.backends, func(b poolBackend) bool { return b.addr == addr })
				if i < 0 {
					t.Fatalf("no backend %s", addr)
				}
				tried = append(tried, int32(i))
			}
			var sc pickScratch
			var got []string
			for _, i := range p.candidates(AllHealthy{}, &sc, tried) {
				got = append(got, p.backends[i].addr)
			}
			slices.Sort(got)
			if s := strings.Join(got, " "); s != tc.want {
				t.Fatalf("candidates %q, want %q", s, tc.want)
			}
		})
	}
}
