package dataplane

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/fsm"
)

// BenchmarkTableRebuildOneRouteChange10k is the data plane's work for a
// one-route change in a configuration of 10,000 routes (what every node
// does for every such write), with metrics on as in the agent: "full"
// compiles the whole table as before, "incremental" builds it from the
// previous table. Both run on the same configurations, side by side.
func BenchmarkTableRebuildOneRouteChange10k(b *testing.B) {
	base := bigConfig(10000).build()
	cfg := fsm.Empty()
	var objs []fsm.Object
	for name := range base.Listeners {
		objs = append(objs, specObj(fsm.KindListener, name, fsm.ListenerSpec{Port: 8080}))
	}
	for name, p := range base.Pools {
		objs = append(objs, specObj(fsm.KindPool, name, p.Spec))
	}
	for name, r := range base.Routes {
		objs = append(objs, specObj(fsm.KindRoute, name, r.Spec))
	}
	cfg, err := fsm.Next(cfg, 1, fsm.ApplyCommand(objs))
	if err != nil {
		b.Fatal(err)
	}
	// Configurations that each change one route, as successive writes do.
	const changes = 64
	cfgs := []*fsm.Config{cfg}
	for i := range changes {
		spec := base.Routes[fmt.Sprintf("r%05d", i*97)].Spec
		spec.Priority = i + 1
		next, err := fsm.Next(cfgs[len(cfgs)-1], uint64(i+2), fsm.PutCommand(specObj(fsm.KindRoute, fmt.Sprintf("r%05d", i*97), spec), nil))
		if err != nil {
			b.Fatal(err)
		}
		cfgs = append(cfgs, next)
	}
	for _, mode := range []string{"full", "incremental"} {
		b.Run(mode, func(b *testing.B) {
			benchRebuilds(b, cfgs, func(tab *Table, c *fsm.Config, reg *registry) *Table {
				if mode == "full" {
					return compile(c, reg, "")
				}
				return compileNext(tab, c, reg, "")
			})
		})
	}
}

// BenchmarkTableRebuildOneRouteChangeOneList is the same for the shape of
// the bench harness's large manifest, where every route is in one host
// list: n respond routes on one listener, each on its own exact path, and
// one of them changed per configuration.
func BenchmarkTableRebuildOneRouteChangeOneList(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		objs := []fsm.Object{specObj(fsm.KindListener, "web", fsm.ListenerSpec{Port: 8080})}
		route := func(i int, body string) fsm.Object {
			return specObj(fsm.KindRoute, fmt.Sprintf("r%d", i), fsm.RouteSpec{Listener: "web",
				Match:  fsm.RouteMatch{Path: fsm.PathMatch{Exact: fmt.Sprintf("/r/%d", i)}},
				Action: fsm.RouteAction{Respond: &fsm.Respond{Status: 200, Body: body}}})
		}
		for i := range n {
			objs = append(objs, route(i, fmt.Sprintf("r%d", i)))
		}
		cfg, err := fsm.Next(fsm.Empty(), 1, fsm.ApplyCommand(objs))
		if err != nil {
			b.Fatal(err)
		}
		const changes = 64
		cfgs := []*fsm.Config{cfg}
		for i := range changes {
			next, err := fsm.Next(cfgs[len(cfgs)-1], uint64(i+2), fsm.PutCommand(route(i*7, fmt.Sprintf("w%d", i)), nil))
			if err != nil {
				b.Fatal(err)
			}
			cfgs = append(cfgs, next)
		}
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			benchRebuilds(b, cfgs, func(tab *Table, c *fsm.Config, reg *registry) *Table {
				if tab = compileNext(tab, c, reg, ""); !tab.incremental {
					b.Fatal("compiled in full")
				}
				return tab
			})
		})
	}
}

// benchRebuilds builds the table of each of cfgs[1:] in turn with rebuild,
// from the previous one (metrics on, as in the agent), starting again from
// cfgs[0], compiled outside the timing, after the last.
func benchRebuilds(b *testing.B, cfgs []*fsm.Config, rebuild func(tab *Table, c *fsm.Config, reg *registry) *Table) {
	reg := newRegistry(nil)
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	reg.metrics = m
	tab := compile(cfgs[0], reg, "")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if i == len(cfgs) {
			b.StopTimer()
			i = 1
			tab = compile(cfgs[0], reg, "")
			b.StartTimer()
		}
		tab = rebuild(tab, cfgs[i], reg)
	}
}
