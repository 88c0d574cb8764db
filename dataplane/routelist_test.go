package dataplane

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/fsm"
)

// listIndex describes how a list indexes its routes: every exact path
// and every trie key with the names of its routes in rank order. It fails
// t when the ranks do not rise along the list or an entry's rank is not
// its route's.
func listIndex(t *testing.T, l *routeList) map[string][]string {
	t.Helper()
	if len(l.ranks) != len(l.routes) {
		t.Fatalf("%d ranks for %d routes", len(l.ranks), len(l.routes))
	}
	rankOf := map[*route]int64{}
	for i, r := range l.routes {
		if i > 0 && l.ranks[i] <= l.ranks[i-1] {
			t.Fatalf("rank %d of %s does not follow %d", l.ranks[i], r.name, l.ranks[i-1])
		}
		rankOf[r] = l.ranks[i]
	}
	out := map[string][]string{}
	names := func(es []entry) []string {
		var s []string
		for i, e := range es {
			if e.rank != rankOf[e.r] || e.prio != e.r.priority {
				t.Fatalf("entry of %s has rank %d prio %d, the list ranks it %d", e.r.name, e.rank, e.prio, rankOf[e.r])
			}
			if i > 0 && e.rank <= es[i-1].rank {
				t.Fatalf("bucket not in rank order at %s", e.r.name)
			}
			s = append(s, e.r.name)
		}
		return s
	}
	for si, m := range l.exact.shards {
		for path, es := range m {
			if got := l.exact.shard(path); got != si {
				t.Fatalf("path %q in shard %d, hashes to %d", path, si, got)
			}
			out["exact "+path] = names(es)
		}
	}
	var walk func(n *trieNode, key string, up *trieNode)
	walk = func(n *trieNode, key string, up *trieNode) {
		key += n.label
		if n.up != up {
			t.Fatalf("trie node %q links up to the wrong node", key)
		}
		if len(n.items) > 0 {
			out["trie "+key] = names(n.items)
			up = n
		}
		for _, c := range n.children {
			walk(c, key, up)
		}
	}
	walk(l.trie, "", nil)
	return out
}

// TestRouteListChangesIndexLikeFull changes routes of one large host list
// (its exact paths sharded) many times, with runs of routes added at the
// same place until their ranks run out, one command or two at a time,
// and wants every list built from the previous one to hold, index and route exactly as a list built
// afresh from the same configuration.
func TestRouteListChangesIndexLikeFull(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	respond := func(body string) fsm.RouteAction {
		return fsm.RouteAction{Respond: &fsm.Respond{Status: 200, Body: body}}
	}
	spec := func(i int) fsm.RouteSpec {
		s := fsm.RouteSpec{Listener: "web", Priority: rng.IntN(2), Action: respond(fmt.Sprintf("b%d", i))}
		switch rng.IntN(8) {
		case 0:
			s.Match.Path.Prefix = fmt.Sprintf("/p/%d", rng.IntN(40))
		case 1:
			s.Match.Path.Regex = fmt.Sprintf("/re/%d/[a-z]+", rng.IntN(10))
		default:
			s.Match.Path.Exact = fmt.Sprintf("/e/%d", rng.IntN(900))
		}
		return s
	}
	reg := newRegistry(nil)
	c := mustApply(t, fsm.Empty(), fsm.PutCommand(specObj(fsm.KindListener, "web", fsm.ListenerSpec{Port: 8080}), nil))
	var objs []fsm.Object
	for i := range 800 {
		objs = append(objs, specObj(fsm.KindRoute, fmt.Sprintf("r%04d", i), spec(i)))
	}
	// Two neighbours in precedence order that the runs below squeeze
	// routes between.
	objs = append(objs,
		specObj(fsm.KindRoute, "m", fsm.RouteSpec{Listener: "web", Priority: 5, Match: fsm.RouteMatch{Path: fsm.PathMatch{Exact: "/m"}}, Action: respond("m")}),
		specObj(fsm.KindRoute, "n", fsm.RouteSpec{Listener: "web", Priority: 5, Match: fsm.RouteMatch{Path: fsm.PathMatch{Exact: "/n"}}, Action: respond("n")}))
	c = mustApply(t, c, fsm.ApplyCommand(objs))
	tab := compileNext(nil, c, reg, "")
	if shards := len(tab.listeners["web"].anyHost.exact.shards); shards < 2 {
		t.Fatalf("the list's exact paths are in %d shard; the test needs them sharded", shards)
	}
	paths := []string{"/", "/m", "/n", "/m0", "/p/3", "/p/3/x", "/p/39", "/re/4/abc", "/re/4/", "/e/1", "/e/12", "/e/899"}
	for range 60 {
		paths = append(paths, fmt.Sprintf("/e/%d", rng.IntN(900)), fmt.Sprintf("/p/%d/y", rng.IntN(40)))
	}
	squeezed, reranked := 0, 0
	for step := range 400 {
		var cmd *fsm.Command
		switch op := rng.IntN(10); {
		case step%10 == 9:
			// Each new route sorts just before n: the gap before n halves
			// every time until the list is ranked again.
			squeezed++
			name := "m" + strings.Repeat("z", squeezed)
			cmd = fsm.PutCommand(specObj(fsm.KindRoute, name, fsm.RouteSpec{Listener: "web", Priority: 5, Match: fsm.RouteMatch{Path: fsm.PathMatch{Exact: "/" + name}}, Action: respond(name)}), nil)
		case op < 2:
			name := fmt.Sprintf("r%04d", rng.IntN(900))
			if _, ok := c.Routes[name]; !ok {
				continue
			}
			cmd = fsm.NewCommand(&fsm.Delete{Kind: fsm.KindRoute, Name: name})
		case op < 3:
			var batch []fsm.Object
			for range 1 + rng.IntN(6) {
				n := fmt.Sprintf("r%04d", rng.IntN(900))
				if !slices.ContainsFunc(batch, func(o fsm.Object) bool { return o.Name == n }) {
					batch = append(batch, specObj(fsm.KindRoute, n, spec(step)))
				}
			}
			cmd = fsm.ApplyCommand(batch)
		default:
			cmd = fsm.PutCommand(specObj(fsm.KindRoute, fmt.Sprintf("r%04d", rng.IntN(900)), spec(step)), nil)
		}
		c = mustApply(t, c, cmd)
		if step%7 == 3 {
			// The next table is built across two commands: the routes
			// that changed are then found by comparing the maps.
			continue
		}
		prev := tab.listeners["web"].anyHost
		prevIndex := listIndex(t, prev)
		next := compileIncremental(tab, c, reg)
		if next == nil {
			t.Fatalf("step %d: a change of a few routes was compiled in full", step)
		}
		full := compile(c, reg, "")
		if g, w := tableShape(next), tableShape(full); !reflect.DeepEqual(g, w) {
			t.Fatalf("step %d (%s): the table built from the previous one differs from a full compile", step, cmd.Type)
		}
		got, want := next.listeners["web"].anyHost, full.listeners["web"].anyHost
		if gi, wi := listIndex(t, got), listIndex(t, want); !reflect.DeepEqual(gi, wi) {
			t.Fatalf("step %d (%s): the list built from the previous one indexes\n%v\nbuilt afresh\n%v", step, cmd.Type, gi, wi)
		}
		if rankOf(prev, "n") != rankOf(got, "n") {
			reranked++ // n never changes: only ranking afresh moves it
		}
		for _, p := range paths {
			if g, w := lookupIn(t, next, "GET", "h.example.com", p), lookupIn(t, full, "GET", "h.example.com", p); g != w {
				t.Fatalf("step %d: %s routes to %q, afresh to %q", step, p, g, w)
			}
		}
		if after := listIndex(t, prev); !reflect.DeepEqual(prevIndex, after) {
			t.Fatalf("step %d: building the next list changed the previous one", step)
		}
		tab = next
	}
	if squeezed < 30 || reranked == 0 {
		t.Fatalf("%d routes squeezed in, the list ranked afresh %d times: the test did not run out of ranks", squeezed, reranked)
	}
	if got := lookupIn(t, tab, "GET", "h", "/m"+strings.Repeat("z", squeezed)); got != "m"+strings.Repeat("z", squeezed) {
		t.Fatalf("the last squeezed route is not served: %q", got)
	}
}

func rankOf(l *routeList, name string) int64 {
	for i, r := range l.routes {
		if r.name == name {
			return l.ranks[i]
		}
	}
	return -1
}
