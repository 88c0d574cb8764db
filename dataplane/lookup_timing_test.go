package dataplane

import (
	"fmt"
	"testing"

	"github.com/rafterlb/rafter/fsm"
	"github.com/valyala/fasthttp"
)

// oneHostConfig puts n routes on one host, as an API gateway does; mk
// gives route i's match (its host is filled in).
func oneHostConfig(n int, mk func(i int) (fsm.RouteMatch, int)) config {
	c := config{
		listeners: map[string]fsm.ListenerSpec{"web": {}},
		pools:     map[string]fsm.PoolSpec{"p": {Backends: []fsm.Backend{{Addr: "127.0.0.1:1"}}}},
		routes:    map[string]fsm.RouteSpec{},
	}
	split := fsm.RouteAction{Split: []fsm.WeightedPool{{Pool: "p", Weight: 1}}}
	for i := 0; i < n; i++ {
		m, prio := mk(i)
		if m.Hosts == nil {
			m.Hosts = []string{"api.example.com"}
		}
		c.routes[fmt.Sprintf("r%05d", i)] = fsm.RouteSpec{Listener: "web", Priority: prio, Match: m, Action: split}
	}
	return c
}

// Prefixes of equal length, so the list order is the name order and
// /svc/00000 is the first route of the host and /svc/09999 the last.
func prefixRoutes(i int) (fsm.RouteMatch, int) {
	return fsm.RouteMatch{Path: fsm.PathMatch{Prefix: fmt.Sprintf("/svc/%05d/", i)}}, 0
}

func exactRoutes(i int) (fsm.RouteMatch, int) {
	return fsm.RouteMatch{Path: fsm.PathMatch{Exact: fmt.Sprintf("/v1/objects/%05d", i)}}, 0
}

// mixedRoutes: mostly prefixes and exact paths on the host, some
// wildcard-host and any-host routes, a few regexes, method and header
// conditions and a few priorities.
func mixedRoutes(i int) (fsm.RouteMatch, int) {
	switch {
	case i%1000 == 7:
		return fsm.RouteMatch{Path: fsm.PathMatch{Regex: fmt.Sprintf(`/re%d/[0-9]+/x`, i)}}, 0
	case i%100 == 3:
		return fsm.RouteMatch{Hosts: []string{"*.example.com"}, Path: fsm.PathMatch{Prefix: fmt.Sprintf("/w/%05d", i)}}, 0
	case i%100 == 5:
		return fsm.RouteMatch{Hosts: []string{}, Path: fsm.PathMatch{Prefix: fmt.Sprintf("/any/%05d", i)}}, 0
	case i%10 == 1:
		return fsm.RouteMatch{Path: fsm.PathMatch{Exact: fmt.Sprintf("/svc/%05d/status", i)}, Methods: []string{"GET"}}, 0
	case i%10 == 2:
		return fsm.RouteMatch{Path: fsm.PathMatch{Prefix: fmt.Sprintf("/svc/%05d/", i)},
			Headers: []fsm.ValueMatch{{Name: "X-Canary", Value: "1"}}}, 1
	default:
		return fsm.RouteMatch{Path: fsm.PathMatch{Prefix: fmt.Sprintf("/svc/%05d/", i)}}, i % 3
	}
}

type lookupCase struct{ name, host, uri, want string }

func benchLookup(b *testing.B, tab *Table, tc lookupCase) {
	lt := tab.listeners["web"]
	var h fasthttp.RequestHeader
	h.DisableNormalizing()
	h.SetRequestURI(tc.uri)
	h.SetHost(tc.host)
	h.Set("X-Request-Id", "abc")
	hostBuf := make([]byte, 0, 256)
	check := func() string {
		_, path, query := splitRequestURI(h.RequestURI())
		v := requestView{method: h.Method(), host: normalizeHost(hostBuf, h.Host()), path: path, query: query, hdr: &h}
		if r := lt.lookup(&v); r != nil {
			return r.name
		}
		return ""
	}
	if got := check(); got != tc.want {
		b.Fatalf("lookup(%s%s) = %q, want %q", tc.host, tc.uri, got, tc.want)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, path, query := splitRequestURI(h.RequestURI())
		v := requestView{method: h.Method(), host: normalizeHost(hostBuf, h.Host()), path: path, query: query, hdr: &h}
		if r := lt.lookup(&v); (r == nil) != (tc.want == "") {
			b.Fatal("lookup changed its answer")
		}
	}
}

// BenchmarkLookup10kOneHost shows the cases where routes do not spread
// over hosts: 10,000 on one host, hitting the first route in precedence
// order, the last one, and none.
func BenchmarkLookup10kOneHost(b *testing.B) {
	sets := []struct {
		name  string
		mk    func(int) (fsm.RouteMatch, int)
		cases []lookupCase
	}{
		{"prefix", prefixRoutes, []lookupCase{
			{"early", "api.example.com", "/svc/00000/items/1?x=1", "r00000"},
			{"late", "api.example.com", "/svc/09999/items/1?x=1", "r09999"},
			{"none", "api.example.com", "/nope/items/1", ""},
		}},
		{"exact", exactRoutes, []lookupCase{
			{"early", "api.example.com", "/v1/objects/00000", "r00000"},
			{"late", "api.example.com", "/v1/objects/09999", "r09999"},
			{"none", "api.example.com", "/v1/objects/10000", ""},
		}},
		{"mixed", mixedRoutes, []lookupCase{
			{"early", "api.example.com", "/svc/00008/items", "r00008"}, // the first priority-2 route
			{"late", "api.example.com", "/svc/09999/items", "r09999"},  // the last priority-0 route
			{"header-miss", "api.example.com", "/svc/00002/items", ""},
			{"regex", "api.example.com", "/re9007/123/x", "r09007"},
			{"wildcard", "api.example.com", "/w/09903/a", "r09903"},
			{"any-host", "api.example.com", "/any/09905/a", "r09905"},
			{"none", "api.example.com", "/nope", ""},
		}},
	}
	for _, s := range sets {
		tab := compile(oneHostConfig(10000, s.mk).build(), newRegistry(nil), "")
		for _, tc := range s.cases {
			b.Run(s.name+"/"+tc.name, func(b *testing.B) { benchLookup(b, tab, tc) })
		}
	}
}
