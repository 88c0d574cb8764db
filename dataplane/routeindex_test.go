package dataplane

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/fsm"
	"github.com/valyala/fasthttp"
)

// referenceLookup is the plain linear lookup: merge the host lists that
// apply by priority (the more specific list first on a tie), scan each in
// its precedence order, first full match wins. The indexed lookup must
// agree with it on every request.
func referenceLookup(lt *listenerTable, v *requestView) *route {
	var lists [maxHostLists][]*route
	n := 0
	if len(v.host) > 0 {
		if l, ok := lt.exact[string(v.host)]; ok {
			lists[n] = l.routes
			n++
		}
		for i := 0; i < len(v.host) && n < maxHostLists-1; i++ {
			if v.host[i] != '.' {
				continue
			}
			if l, ok := lt.wild[string(v.host[i:])]; ok {
				lists[n] = l.routes
				n++
			}
		}
	}
	if lt.anyHost != nil {
		lists[n] = lt.anyHost.routes
		n++
	}
	var pos [maxHostLists]int
	for {
		best := -1
		for i := 0; i < n; i++ {
			if pos[i] >= len(lists[i]) {
				continue
			}
			if best < 0 || lists[i][pos[i]].priority > lists[best][pos[best]].priority {
				best = i
			}
		}
		if best < 0 {
			return nil
		}
		r := lists[best][pos[best]]
		pos[best]++
		if r.matches(v) {
			return r
		}
	}
}

// Small alphabets so that random prefixes, exact paths and request paths
// overlap often, including raw "..", "%2f" and bytes that are not UTF-8.
var (
	propHosts   = []string{"a.example.com", "A.Example.com:8080", "b.example.com", "x.b.example.com", "y.x.b.example.com", "example.com", "other.test", ""}
	propPatHost = []string{"a.example.com", "b.example.com", "*.example.com", "*.b.example.com", "*.x.b.example.com", "x.b.example.com", "other.test", "*"}
	propRegexes = []string{`/a[ab]*`, `/(a|b)/.*`, `(?i)/A.*`, `/ab?`, `.*b`, `/a/[^/]+`, `/b.*|/a`, `/a/\.\./b.*`, `/\x{FFFD}.*`, `/é.*`, `\x2f.*`}
	propPieces  = []string{"/", "a", "b", "/a", "/b", "ab", "/..", "%2f", "é", "\xff", "."}
)

func propPath(rng *rand.Rand) string {
	var b strings.Builder
	if rng.IntN(8) != 0 {
		b.WriteByte('/')
	}
	for n := rng.IntN(5); n > 0; n-- {
		b.WriteString(propPieces[rng.IntN(len(propPieces))])
	}
	return b.String()
}

func propRoute(rng *rand.Rand) fsm.RouteSpec {
	s := fsm.RouteSpec{Listener: "web", Priority: rng.IntN(3) - rng.IntN(2),
		Action: fsm.RouteAction{Split: []fsm.WeightedPool{{Pool: "p", Weight: 1}}}}
	for n := rng.IntN(3); n > 0; n-- {
		s.Match.Hosts = append(s.Match.Hosts, propPatHost[rng.IntN(len(propPatHost))])
	}
	switch rng.IntN(10) {
	case 0, 1, 2:
		s.Match.Path.Exact = propPath(rng)
	case 3:
		s.Match.Path.Regex = propRegexes[rng.IntN(len(propRegexes))]
	case 4:
		// no path: every path
	default:
		s.Match.Path.Prefix = propPath(rng)
	}
	if rng.IntN(4) == 0 {
		s.Match.Methods = []string{[]string{"get", "POST"}[rng.IntN(2)]}
	}
	switch rng.IntN(6) {
	case 0:
		s.Match.Headers = []fsm.ValueMatch{{Name: "X-A", Value: "1"}}
	case 1:
		s.Match.Headers = []fsm.ValueMatch{{Name: "x-a", Invert: true}}
	case 2:
		s.Match.Query = []fsm.ValueMatch{{Name: "v", Regex: "[12]"}}
	}
	return s
}

func TestLookupMatchesReference(t *testing.T) {
	for seed := uint64(1); seed <= 300; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		c := config{
			listeners: map[string]fsm.ListenerSpec{"web": {}},
			pools:     map[string]fsm.PoolSpec{"p": {Backends: []fsm.Backend{{Addr: "127.0.0.1:1"}}}},
			routes:    map[string]fsm.RouteSpec{},
		}
		nRoutes := 1 + rng.IntN(60)
		for i := 0; i < nRoutes; i++ {
			c.routes[fmt.Sprintf("r%02d", rng.IntN(100))] = propRoute(rng)
		}
		tab := compile(c.build(), newRegistry(nil), "")
		if len(tab.errors) > 0 {
			t.Fatalf("seed %d: compile errors %v", seed, tab.errors)
		}
		lt := tab.listeners["web"]
		hostBuf := make([]byte, 0, 256)
		for i := 0; i < 300; i++ {
			var h fasthttp.RequestHeader
			h.DisableNormalizing()
			switch rng.IntN(3) {
			case 0:
				h.Set("X-A", "1")
			case 1:
				h.Set("x-a", "2")
			}
			method := []string{"GET", "POST", "PUT"}[rng.IntN(3)]
			uri := propPath(rng)
			if rng.IntN(3) == 0 {
				uri += fmt.Sprintf("?v=%d", rng.IntN(3))
			}
			host := propHosts[rng.IntN(len(propHosts))]
			_, path, query := splitRequestURI([]byte(uri))
			v := requestView{method: []byte(method), host: normalizeHost(hostBuf, []byte(host)), path: path, query: query, hdr: &h}
			got, want := lt.lookup(&v), referenceLookup(lt, &v)
			if got != want {
				t.Fatalf("seed %d: %s %s%q: lookup = %s, reference = %s", seed, method, host, uri, routeName(got), routeName(want))
			}
		}
	}
}

func routeName(r *route) string {
	if r == nil {
		return "<none>"
	}
	return r.name
}

// TestLookupManyHostLists covers a host with more wildcard suffixes than a
// lookup merges: both lookups take the same, most specific, lists.
func TestLookupManyHostLists(t *testing.T) {
	c := config{
		listeners: map[string]fsm.ListenerSpec{"web": {}},
		pools:     map[string]fsm.PoolSpec{"p": {Backends: []fsm.Backend{{Addr: "127.0.0.1:1"}}}},
		routes:    map[string]fsm.RouteSpec{},
	}
	host := "h"
	for i := 0; i < 2*maxHostLists; i++ {
		host += fmt.Sprintf(".l%d", i)
	}
	labels := strings.Split(host, ".")
	for i := 1; i < len(labels); i++ {
		c.routes[fmt.Sprintf("w%02d", i)] = fsm.RouteSpec{Listener: "web", Priority: i % 3,
			Match:  fsm.RouteMatch{Hosts: []string{"*." + strings.Join(labels[i:], ".")}, Path: fsm.PathMatch{Prefix: fmt.Sprintf("/%d", i%4)}},
			Action: fsm.RouteAction{Split: []fsm.WeightedPool{{Pool: "p", Weight: 1}}}}
	}
	lt := compile(c.build(), newRegistry(nil), "").listeners["web"]
	for _, p := range []string{"/0", "/1", "/2", "/3", "/4"} {
		v := requestView{method: []byte("GET"), host: []byte(host), path: []byte(p)}
		if got, want := lt.lookup(&v), referenceLookup(lt, &v); got != want {
			t.Errorf("%s: lookup = %s, reference = %s", p, routeName(got), routeName(want))
		}
	}
}

// TestLookupDoesNotAllocate walks candidates that fail their conditions
// across several host lists and regexes.
func TestLookupDoesNotAllocate(t *testing.T) {
	tab := compile(oneHostConfig(2000, mixedRoutes).build(), newRegistry(nil), "")
	lt := tab.listeners["web"]
	var h fasthttp.RequestHeader
	h.DisableNormalizing()
	for _, uri := range []string{"/svc/00002/items", "/svc/01998/x", "/re1007/1/x", "/any/01905/", "/nope"} {
		v := requestView{method: []byte("GET"), host: []byte("api.example.com"), path: []byte(uri), hdr: &h}
		if n := testing.AllocsPerRun(100, func() { lt.lookup(&v) }); n != 0 {
			t.Errorf("lookup(%s) allocates %v times", uri, n)
		}
	}
}

func TestRouteTrie(t *testing.T) {
	var root trieNode
	keys := []string{"/api/v1", "/api", "/", "/api/v2/x", "/apx", "/b", "/api/v1"}
	for i, k := range keys {
		root.insert(k, entry{rank: int64(i)})
	}
	root.link(nil)
	cases := []struct {
		path string
		want []int64 // ranks, deepest key first
	}{
		{"/api/v1/users", []int64{0, 6, 1, 2}},
		{"/api/v2", []int64{1, 2}},
		{"/api/v2/xy", []int64{3, 1, 2}},
		{"/apx", []int64{4, 2}},
		{"/ap", []int64{2}},
		{"x", nil},
		{"", nil},
	}
	for _, tc := range cases {
		var got []int64
		for n := root.deepest([]byte(tc.path)); n != nil; n = n.up {
			for _, e := range n.items {
				got = append(got, e.rank)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("walk(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
}
