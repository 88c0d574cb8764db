package dataplane

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/fsm"
)

// tableShape describes what a table routes: every host list of every
// listener as route names in precedence order, and what each route does.
func tableShape(t *Table) map[string][]string {
	out := map[string][]string{}
	names := func(l *routeList) []string {
		if l == nil {
			return nil
		}
		var s []string
		for _, r := range l.routes {
			s = append(s, r.name)
		}
		return s
	}
	for ln, lt := range t.listeners {
		for h, l := range lt.exact {
			out[ln+" exact "+h] = names(l)
		}
		for h, l := range lt.wild {
			out[ln+" wild "+h] = names(l)
		}
		if lt.anyHost != nil {
			out[ln+" any"] = names(lt.anyHost)
		}
	}
	t.routes.all(func(name string, r *route) {
		var legs []string
		for _, leg := range r.split {
			legs = append(legs, fmt.Sprintf("%s/%d", leg.pool.name, leg.cum))
		}
		out["route "+name] = []string{fmt.Sprintf("prio=%d kind=%d path=%q action=%d legs=%v body=%q methods=%v",
			r.priority, r.kind, r.path, r.action, legs, r.respond.body, r.methods)}
	})
	return out
}

func mustApply(t *testing.T, c *fsm.Config, cmd *fsm.Command) *fsm.Config {
	t.Helper()
	next, err := fsm.Next(c, c.Index+1, cmd)
	if err != nil {
		t.Fatalf("%s: %v", cmd.Type, err)
	}
	return next
}

func specObj(kind fsm.Kind, name string, spec any) fsm.Object {
	b, err := json.Marshal(spec)
	if err != nil {
		panic(err)
	}
	return fsm.Object{Kind: kind, Name: name, Spec: b}
}

// randomRoute is a route spec drawn from a small space, so that routes
// often share hosts, paths and priorities.
func randomRoute(rng *rand.Rand) fsm.RouteSpec {
	s := fsm.RouteSpec{Listener: []string{"web", "alt"}[rng.IntN(2)], Priority: rng.IntN(3)}
	for range rng.IntN(3) {
		s.Match.Hosts = append(s.Match.Hosts, []string{"a.example.com", "B.example.com", "*.example.com", "c.test", "*.test"}[rng.IntN(5)])
	}
	switch rng.IntN(3) {
	case 0:
		s.Match.Path.Exact = fmt.Sprintf("/x/%d", rng.IntN(4))
	case 1:
		s.Match.Path.Prefix = fmt.Sprintf("/%s", []string{"", "api", "api/v1", "x"}[rng.IntN(4)])
	}
	if rng.IntN(4) == 0 {
		s.Match.Methods = []string{"GET"}
	}
	switch rng.IntN(3) {
	case 0:
		s.Action.Respond = &fsm.Respond{Status: 200, Body: fmt.Sprintf("b%d", rng.IntN(100))}
	default:
		s.Action.Split = []fsm.WeightedPool{{Pool: "p1", Weight: 1 + rng.IntN(5)}}
		if rng.IntN(2) == 0 {
			s.Action.Split = append(s.Action.Split, fsm.WeightedPool{Pool: "p2", Weight: 1})
		}
	}
	return s
}

// TestIncrementalCompileEqualsFull applies random route changes (puts,
// deletes, new routes, and now and then a pool or listener change) and
// wants the table built from the previous one to route exactly as a full
// compile of the same configuration, with and without metrics.
func TestIncrementalCompileEqualsFull(t *testing.T) {
	for _, withMetrics := range []bool{false, true} {
		t.Run(fmt.Sprintf("metrics=%v", withMetrics), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			reg := newRegistry(nil)
			if withMetrics {
				m, err := newMetrics(prometheus.NewRegistry())
				if err != nil {
					t.Fatal(err)
				}
				reg.metrics = m
			}
			c := mustApply(t, fsm.Empty(), fsm.ApplyCommand([]fsm.Object{
				specObj(fsm.KindListener, "web", fsm.ListenerSpec{Port: 8080}),
				specObj(fsm.KindListener, "alt", fsm.ListenerSpec{Port: 8081}),
				specObj(fsm.KindPool, "p1", fsm.PoolSpec{Backends: []fsm.Backend{{Addr: "127.0.0.1:1"}}}),
				specObj(fsm.KindPool, "p2", fsm.PoolSpec{Backends: []fsm.Backend{{Addr: "127.0.0.1:2"}}}),
			}))
			var objs []fsm.Object
			for i := range 200 {
				objs = append(objs, specObj(fsm.KindRoute, fmt.Sprintf("r%03d", i), randomRoute(rng)))
			}
			c = mustApply(t, c, fsm.ApplyCommand(objs))
			tab := compileNext(nil, c, reg, "")
			incremental := 0
			for step := range 300 {
				name := fmt.Sprintf("r%03d", rng.IntN(230))
				var cmd *fsm.Command
				switch op := rng.IntN(20); {
				case op == 0:
					cmd = fsm.PutCommand(specObj(fsm.KindPool, "p1", fsm.PoolSpec{Backends: []fsm.Backend{{Addr: fmt.Sprintf("127.0.0.1:%d", 10+step)}}}), nil)
				case op == 1:
					cmd = fsm.PutCommand(specObj(fsm.KindListener, "alt", fsm.ListenerSpec{Port: 9000 + step}), nil)
				case op < 6:
					if _, ok := c.Routes[name]; !ok {
						continue
					}
					cmd = fsm.NewCommand(&fsm.Delete{Kind: fsm.KindRoute, Name: name})
				case op < 8:
					var batch []fsm.Object
					for range 1 + rng.IntN(5) {
						n := fmt.Sprintf("r%03d", rng.IntN(230))
						if !slices.ContainsFunc(batch, func(o fsm.Object) bool { return o.Name == n }) {
							batch = append(batch, specObj(fsm.KindRoute, n, randomRoute(rng)))
						}
					}
					cmd = fsm.ApplyCommand(batch)
				default:
					cmd = fsm.PutCommand(specObj(fsm.KindRoute, name, randomRoute(rng)), nil)
				}
				c = mustApply(t, c, cmd)
				if compileIncremental(tab, c, reg) != nil {
					incremental++
				}
				next := compileNext(tab, c, reg, "")
				if withMetrics {
					// What Dataplane.apply does after the swap: the series
					// left must be exactly those the table counts into.
					if next.incremental {
						reg.metrics.retireRoutes(next)
					} else {
						reg.metrics.sweepRoutes(next)
					}
					var kept []string
					reg.metrics.obs.Range(func(k, v any) bool {
						if o := v.(*requestObs); o.route != "" || o.pool != "" {
							kept = append(kept, o.route+"|"+o.pool)
						}
						return true
					})
					slices.Sort(kept)
					if want := obsKeys(next.obs); !reflect.DeepEqual(kept, want) {
						t.Fatalf("step %d: series kept %v, want %v", step, kept, want)
					}
				}
				full := compile(c, reg, "")
				if got, want := tableShape(next), tableShape(full); !reflect.DeepEqual(got, want) {
					t.Fatalf("step %d (%s): incremental table differs from a full compile\n got %v\nwant %v", step, cmd.Type, got, want)
				}
				if next.Index() != c.Index {
					t.Fatalf("step %d: index %d, want %d", step, next.Index(), c.Index)
				}
				if withMetrics {
					if got, want := obsKeys(next.obs), obsKeys(full.obs); !reflect.DeepEqual(got, want) {
						t.Fatalf("step %d: series %v, want %v", step, got, want)
					}
				}
				tab = next
			}
			if incremental < 200 {
				t.Fatalf("only %d of 300 changes compiled incrementally", incremental)
			}
		})
	}
}

func obsKeys(obs []*requestObs) []string {
	var out []string
	for _, o := range obs {
		out = append(out, o.route+"|"+o.pool)
	}
	slices.Sort(out)
	return out
}

// TestIncrementalCompileLeavesPreviousTable: building the next table
// never changes the one requests may still be reading.
func TestIncrementalCompileLeavesPreviousTable(t *testing.T) {
	reg := newRegistry(nil)
	c := mustApply(t, fsm.Empty(), fsm.ApplyCommand([]fsm.Object{
		specObj(fsm.KindListener, "web", fsm.ListenerSpec{Port: 8080}),
		specObj(fsm.KindRoute, "a", fsm.RouteSpec{Listener: "web", Match: fsm.RouteMatch{Hosts: []string{"a.example.com"}}, Action: fsm.RouteAction{Respond: &fsm.Respond{Status: 200, Body: "a"}}}),
		specObj(fsm.KindRoute, "b", fsm.RouteSpec{Listener: "web", Action: fsm.RouteAction{Respond: &fsm.Respond{Status: 200, Body: "b"}}}),
	}))
	prev := compileNext(nil, c, reg, "")
	before := tableShape(prev)
	c = mustApply(t, c, fsm.PutCommand(specObj(fsm.KindRoute, "a", fsm.RouteSpec{Listener: "web", Match: fsm.RouteMatch{Hosts: []string{"z.example.com"}}, Action: fsm.RouteAction{Respond: &fsm.Respond{Status: 200, Body: "a2"}}}), nil))
	c = mustApply(t, c, fsm.NewCommand(&fsm.Delete{Kind: fsm.KindRoute, Name: "b"}))
	next := compileIncremental(prev, c, reg)
	if next == nil {
		t.Fatal("a one-route change was not compiled incrementally")
	}
	if after := tableShape(prev); !reflect.DeepEqual(before, after) {
		t.Fatalf("the previous table changed:\n%v\nnow\n%v", before, after)
	}
	if got := lookupIn(t, next, "GET", "z.example.com", "/"); got != "a" {
		t.Fatalf("z.example.com routes to %q, want a", got)
	}
	if got := lookupIn(t, next, "GET", "a.example.com", "/"); got != "" {
		t.Fatalf("a.example.com routes to %q after both routes left it", got)
	}
}
