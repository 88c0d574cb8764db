package dataplane

import (
	"fmt"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/dataplane/health"
	"github.com/rafterlb/rafter/fsm"
)

type fakeHealth struct{ down map[string]bool }

func (f fakeHealth) Healthy(_, addr string) bool            { return !f.down[addr] }
func (f fakeHealth) Observe(string, string, health.Outcome) {}

func testPool(t *testing.T, spec fsm.PoolSpec, zones map[string]bool, localZone string) *pool {
	t.Helper()
	c := config{pools: map[string]fsm.PoolSpec{"p": spec}, zones: zones}
	return compile(c.build(), newRegistry(nil), localZone).pools["p"]
}

func pickN(p *pool, h HealthView, n int, key func(i int) []byte) []string {
	var sc pickScratch
	var out []string
	for i := 0; i < n; i++ {
		cand := p.candidates(h, &sc, nil)
		if len(cand) == 0 {
			out = append(out, "")
			continue
		}
		var k []byte
		if key != nil {
			k = key(i)
		}
		out = append(out, p.backends[p.pick(cand, k, &sc)].addr)
	}
	return out
}

func TestSmoothWeightedRoundRobinSequence(t *testing.T) {
	p := testPool(t, fsm.PoolSpec{Backends: []fsm.Backend{{Addr: "a", Weight: 5}, {Addr: "b", Weight: 1}, {Addr: "c", Weight: 1}}}, nil, "")
	got := strings.Join(pickN(p, AllHealthy{}, 14, nil), "")
	if want := "aabacaa" + "aabacaa"; got != want {
		t.Errorf("sequence = %s, want %s", got, want)
	}
}

func TestBalancerFilters(t *testing.T) {
	bs := []fsm.Backend{
		{Addr: "a1", Zone: "a"}, {Addr: "a2", Zone: "a"}, {Addr: "b1", Zone: "b"}, {Addr: "c1", Zone: "c"},
		{Addr: "d1", Zone: "a", Drain: true},
	}
	cases := []struct {
		name  string
		spec  fsm.PoolSpec
		zones map[string]bool
		down  []string
		want  string // sorted set of picked backends
	}{
		{"drain gets nothing", fsm.PoolSpec{Backends: bs}, nil, nil, "a1 a2 b1 c1"},
		{"evacuated zone gets nothing", fsm.PoolSpec{Backends: bs}, map[string]bool{"b": true}, nil, "a1 a2 c1"},
		{"unhealthy skipped", fsm.PoolSpec{Backends: bs}, nil, []string{"a1", "c1"}, "a2 b1"},
		{"zone aware prefers local", fsm.PoolSpec{Backends: bs, ZoneAware: true}, nil, nil, "a1 a2"},
		{"zone aware spills under min healthy", fsm.PoolSpec{Backends: bs, ZoneAware: true}, nil, []string{"a1"}, "a2 b1 c1"},
		{"zone aware with lowered minimum", fsm.PoolSpec{Backends: bs, ZoneAware: true, ZoneMinHealthyPercent: 50}, nil, []string{"a1"}, "a2"},
		{"panic threshold uses all", fsm.PoolSpec{Backends: bs, PanicThreshold: 50}, nil, []string{"a1", "a2", "b1"}, "a1 a2 b1 c1"},
		{"all down without panic", fsm.PoolSpec{Backends: bs}, nil, []string{"a1", "a2", "b1", "c1"}, ""},
		{"weight zero gets nothing", fsm.PoolSpec{Backends: []fsm.Backend{{Addr: "x", Weight: -1}, {Addr: "y"}}}, nil, nil, "y"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := testPool(t, tc.spec, tc.zones, "a")
			down := map[string]bool{}
			for _, d := range tc.down {
				down[d] = true
			}
			set := map[string]bool{}
			for _, a := range pickN(p, fakeHealth{down}, 100, nil) {
				if a != "" {
					set[a] = true
				}
			}
			var got []string
			for _, b := range p.backends {
				if set[b.addr] {
					got = append(got, b.addr)
				}
			}
			if s := strings.Join(got, " "); s != tc.want {
				t.Errorf("picked %q, want %q", s, tc.want)
			}
		})
	}
}

func TestConsistentHashStability(t *testing.T) {
	var bs []fsm.Backend
	for i := 0; i < 10; i++ {
		bs = append(bs, fsm.Backend{Addr: fmt.Sprintf("10.0.0.%d:80", i)})
	}
	spec := fsm.PoolSpec{Balancer: fsm.BalancerHash, Hash: &fsm.HashPolicy{Header: "X-User"}, Backends: bs}
	key := func(i int) []byte { return []byte(fmt.Sprintf("user-%d", i)) }
	before := pickN(testPool(t, spec, nil, ""), AllHealthy{}, 2000, key)
	again := pickN(testPool(t, spec, nil, ""), AllHealthy{}, 2000, key)
	spec.Backends = append(append([]fsm.Backend(nil), bs...), fsm.Backend{Addr: "10.0.0.99:80"})
	after := pickN(testPool(t, spec, nil, ""), AllHealthy{}, 2000, key)
	moved := 0
	perBackend := map[string]int{}
	for i := range before {
		perBackend[before[i]]++
		if before[i] != again[i] {
			t.Fatalf("key %d maps to %s then %s with the same pool", i, before[i], again[i])
		}
		if before[i] != after[i] {
			moved++
			if after[i] != "10.0.0.99:80" {
				t.Errorf("key %d moved from %s to %s, not to the new backend", i, before[i], after[i])
			}
		}
	}
	// 1/11 of the keys are expected to move; allow generous slack.
	if moved == 0 || moved > 2000*2/11 {
		t.Errorf("%d of 2000 keys moved", moved)
	}
	for b, n := range perBackend {
		if n < 2000/10/3 {
			t.Errorf("backend %s got only %d of 2000 keys", b, n)
		}
	}
	// An unhealthy backend's keys move, the others stay.
	down := fakeHealth{map[string]bool{"10.0.0.3:80": true}}
	degraded := pickN(testPool(t, fsm.PoolSpec{Balancer: fsm.BalancerHash, Backends: bs}, nil, ""), down, 2000, key)
	for i := range before {
		if before[i] != "10.0.0.3:80" && degraded[i] != before[i] {
			t.Fatalf("key %d moved from healthy %s to %s", i, before[i], degraded[i])
		}
	}
}

func TestLeastRequestAvoidsBusyBackend(t *testing.T) {
	p := testPool(t, fsm.PoolSpec{Balancer: fsm.BalancerLeastRequest, Backends: []fsm.Backend{{Addr: "a"}, {Addr: "b"}, {Addr: "c"}}}, nil, "")
	p.backends[0].st.active.Store(100)
	for _, a := range pickN(p, AllHealthy{}, 300, nil) {
		if a == "a" {
			t.Fatalf("busy backend picked")
		}
	}
}

func TestRandomHonoursWeights(t *testing.T) {
	p := testPool(t, fsm.PoolSpec{Balancer: fsm.BalancerRandom, Backends: []fsm.Backend{{Addr: "a", Weight: 9}, {Addr: "b", Weight: 1}}}, nil, "")
	n := 0
	for _, a := range pickN(p, AllHealthy{}, 2000, nil) {
		if a == "a" {
			n++
		}
	}
	if n < 1600 || n > 1950 {
		t.Errorf("weight 9 of 10 got %d of 2000 picks", n)
	}
}
