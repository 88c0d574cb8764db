package fsm

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// differingRoutes is every route name whose route is not the same object
// in a and b, found the slow way.
func differingRoutes(a, b *Config) []string {
	var out []string
	for name, r := range b.Routes {
		if a.Routes[name] != r {
			out = append(out, name)
		}
	}
	for name := range a.Routes {
		if _, ok := b.Routes[name]; !ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// TestChangedRoutesNamesEveryChange applies random commands (route puts,
// deletes and manifests, rollouts that rewrite a route's split, other
// kinds, refused commands, a restore) and wants ChangedRoutes to name
// every route that differs between a document and the next, to answer
// for every command, and never to answer wrongly across two commands.
func TestChangedRoutesNamesEveryChange(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	route := func(i int) Object {
		return obj(KindRoute, fmt.Sprintf("r%d", i), fmt.Sprintf(`{"listener":"web","priority":%d,"action":{"split":[{"pool":"app","weight":1}]}}`, rng.IntN(3)))
	}
	c := baseConfig(t)
	prev := c
	answered, restores := 0, 0
	for step := range 400 {
		var cmd *Command
		switch op := rng.IntN(12); {
		case op < 4:
			cmd = PutCommand(route(rng.IntN(40)), nil)
		case op < 6:
			cmd = DeleteCommand(KindRoute, fmt.Sprintf("r%d", rng.IntN(40)), nil)
		case op < 8:
			var objs []Object
			for i := range 1 + rng.IntN(5) {
				objs = append(objs, route(i*7+rng.IntN(7)))
			}
			cmd = ApplyCommand(objs)
		case op == 8:
			cmd = PutCommand(obj(KindRollout, "ro", rolloutSpec), nil)
		case op == 9:
			if _, ok := c.Rollouts["ro"]; ok {
				cmd = DeleteCommand(KindRollout, "ro", nil)
			} else {
				cmd = PutCommand(obj(KindRoute, "app", `{"listener":"web","action":{"split":[{"pool":"app","weight":1}]}}`), nil)
			}
		case op == 10:
			cmd = PutCommand(obj(KindPool, "other", fmt.Sprintf(`{"backends":[{"addr":"10.0.1.%d:80"}]}`, 1+rng.IntN(200))), nil)
		default:
			cmd = NewCommand(&Restore{Config: c})
			restores++
		}
		f := New()
		f.Restore(c)
		data, err := EncodeCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		_ = f.Apply(c.Index+1, data) // refused commands still publish a document
		next := f.Config()
		names, ok := ChangedRoutes(c, next)
		switch {
		case ok:
			answered++
		case cmd.Type == CmdRestore:
			// A restore builds every map afresh: no answer, which is right.
		default:
			t.Fatalf("step %d (%s): no answer for one command", step, cmd.Type)
		}
		for _, n := range differingRoutes(c, next) {
			if !slices.Contains(names, n) {
				t.Fatalf("step %d (%s): route %s changed, ChangedRoutes names %v", step, cmd.Type, n, names)
			}
		}
		if names, ok := ChangedRoutes(prev, next); ok {
			for _, n := range differingRoutes(prev, next) {
				if !slices.Contains(names, n) {
					t.Fatalf("step %d: across two commands route %s changed, ChangedRoutes names %v", step, n, names)
				}
			}
		}
		prev, c = c, next
	}
	if answered+restores != 400 || restores == 0 {
		t.Fatalf("answered %d of 400 with %d restores", answered, restores)
	}
	back, err := ReadSnapshot(bytesReader(snapshotBytes(t, c)))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ChangedRoutes(prev, back); ok && !sameMap(prev.Routes, back.Routes) {
		t.Fatal("a document read from a snapshot answered for the routes of another")
	}
}
