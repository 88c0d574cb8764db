package dataplane

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/fsm"
	"github.com/valyala/fasthttp"
)

func lookupIn(t *testing.T, tab *Table, method, host, uri string, hdrs ...string) string {
	t.Helper()
	lt := tab.listeners["web"]
	var h fasthttp.RequestHeader
	h.DisableNormalizing()
	for i := 0; i+1 < len(hdrs); i += 2 {
		h.Add(hdrs[i], hdrs[i+1])
	}
	_, path, query := splitRequestURI([]byte(uri))
	v := requestView{method: []byte(method), host: normalizeHost(make([]byte, 0, 256), []byte(host)), path: path, query: query, hdr: &h}
	r := lt.lookup(&v)
	if r == nil {
		return ""
	}
	return r.name
}

func TestRoutePrecedence(t *testing.T) {
	split := fsm.RouteAction{Split: []fsm.WeightedPool{{Pool: "p", Weight: 1}}}
	rt := func(prio int, hosts []string, pm fsm.PathMatch) fsm.RouteSpec {
		return fsm.RouteSpec{Listener: "web", Priority: prio, Match: fsm.RouteMatch{Hosts: hosts, Path: pm}, Action: split}
	}
	cfg := config{
		listeners: map[string]fsm.ListenerSpec{"web": {}},
		pools:     map[string]fsm.PoolSpec{"p": {Backends: []fsm.Backend{{Addr: "127.0.0.1:1"}}}},
		routes: map[string]fsm.RouteSpec{
			"any-root":       rt(0, nil, fsm.PathMatch{}),
			"any-api":        rt(0, nil, fsm.PathMatch{Prefix: "/api"}),
			"wild-root":      rt(0, []string{"*.example.com"}, fsm.PathMatch{}),
			"wild-deep":      rt(0, []string{"*.b.example.com"}, fsm.PathMatch{}),
			"exact-root":     rt(0, []string{"App.Example.com"}, fsm.PathMatch{}),
			"exact-api":      rt(0, []string{"app.example.com"}, fsm.PathMatch{Prefix: "/api"}),
			"exact-apiv1":    rt(0, []string{"app.example.com"}, fsm.PathMatch{Prefix: "/api/v1"}),
			"exact-login":    rt(0, []string{"app.example.com"}, fsm.PathMatch{Exact: "/api/login"}),
			"exact-re":       rt(0, []string{"app.example.com"}, fsm.PathMatch{Regex: `/api/[0-9]+`}),
			"prio-any":       rt(10, nil, fsm.PathMatch{Prefix: "/urgent"}),
			"tie-b":          rt(0, []string{"tie.example.com"}, fsm.PathMatch{Prefix: "/x"}),
			"tie-a":          rt(0, []string{"tie.example.com"}, fsm.PathMatch{Prefix: "/y"}),
			"tie-a2":         rt(0, []string{"tie.example.com"}, fsm.PathMatch{Prefix: "/z"}),
			"tie-b2":         rt(0, []string{"tie.example.com"}, fsm.PathMatch{Prefix: "/z"}),
			"admin-raw":      rt(0, []string{"raw.example.com"}, fsm.PathMatch{Prefix: "/admin"}),
			"public-raw":     rt(0, []string{"raw.example.com"}, fsm.PathMatch{Prefix: "/public"}),
			"methods":        {Listener: "web", Match: fsm.RouteMatch{Hosts: []string{"m.example.com"}, Methods: []string{"post"}}, Action: split},
			"hdr":            {Listener: "web", Priority: 1, Match: fsm.RouteMatch{Hosts: []string{"m.example.com"}, Headers: []fsm.ValueMatch{{Name: "X-Canary", Value: "1"}}}, Action: split},
			"query":          {Listener: "web", Priority: 2, Match: fsm.RouteMatch{Hosts: []string{"m.example.com"}, Query: []fsm.ValueMatch{{Name: "v", Regex: "2|3"}}}, Action: split},
			"hdr-inverted":   {Listener: "web", Priority: 3, Match: fsm.RouteMatch{Hosts: []string{"m.example.com"}, Path: fsm.PathMatch{Prefix: "/inv"}, Headers: []fsm.ValueMatch{{Name: "x-beta", Invert: true}}}, Action: split},
			"other-listener": {Listener: "nope", Action: split},
		},
	}
	tab := compile(cfg.build(), newRegistry(nil), "")
	if len(tab.errors) != 1 {
		t.Errorf("compile errors = %v, want one (route on a missing listener)", tab.errors)
	}
	cases := []struct {
		name, method, host, uri string
		hdrs                    []string
		want                    string
	}{
		{"exact host beats wildcard and any", "GET", "app.example.com", "/", nil, "exact-root"},
		{"host case and port ignored", "GET", "APP.example.COM:8080", "/", nil, "exact-root"},
		{"trailing dot ignored", "GET", "app.example.com.", "/", nil, "exact-root"},
		{"longer prefix beats shorter", "GET", "app.example.com", "/api/v1/users", nil, "exact-apiv1"},
		{"exact path beats prefix", "GET", "app.example.com", "/api/login", nil, "exact-login"},
		{"regex beats prefix", "GET", "app.example.com", "/api/42", nil, "exact-re"},
		{"regex anchored", "GET", "app.example.com", "/api/42x", nil, "exact-api"},
		{"wildcard beats any", "GET", "x.example.com", "/api", nil, "wild-root"},
		{"longer wildcard first", "GET", "y.b.example.com", "/", nil, "wild-deep"},
		{"wildcard needs a label", "GET", "example.com", "/api", nil, "any-api"},
		{"exact host but no path match falls to wildcard", "GET", "app.example.com", "/other", nil, "exact-root"},
		{"priority beats host specificity", "GET", "app.example.com", "/urgent/1", nil, "prio-any"},
		{"any host", "GET", "unknown.test", "/api/x", nil, "any-api"},
		{"no host (HTTP/1.0)", "GET", "", "/", nil, "any-root"},
		{"tie by name", "GET", "tie.example.com", "/z", nil, "tie-a2"},
		{"raw dot-dot not normalized", "GET", "raw.example.com", "/public/../admin/x", nil, "public-raw"},
		{"encoded dots not decoded", "GET", "raw.example.com", "/public/%2e%2e/admin", nil, "public-raw"},
		{"encoded slash raw", "GET", "raw.example.com", "/admin%2fx", nil, "admin-raw"},
		{"query ignored by path", "GET", "app.example.com", "/api/login?x=1", nil, "exact-login"},
		{"method match", "POST", "m.example.com", "/", nil, "methods"},
		{"method mismatch", "GET", "m.example.com", "/", nil, "wild-root"},
		{"header match any case", "GET", "m.example.com", "/", []string{"x-CANARY", "1"}, "hdr"},
		{"header value mismatch", "GET", "m.example.com", "/", []string{"X-Canary", "2"}, "wild-root"},
		{"query regex", "GET", "m.example.com", "/?a=1&v=3", nil, "query"},
		{"query regex anchored", "GET", "m.example.com", "/?v=33", nil, "wild-root"},
		{"inverted header absent", "GET", "m.example.com", "/inv", nil, "hdr-inverted"},
		{"inverted header present", "GET", "m.example.com", "/inv", []string{"X-Beta", "1"}, "wild-root"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := lookupIn(t, tab, tc.method, tc.host, tc.uri, tc.hdrs...); got != tc.want {
				t.Errorf("lookup(%s %s%s) = %q, want %q", tc.method, tc.host, tc.uri, got, tc.want)
			}
		})
	}
}

func TestSplitRequestURI(t *testing.T) {
	cases := []struct{ uri, auth, path, query string }{
		{"/a/b?x=1", "", "/a/b", "x=1"},
		{"/a/../b", "", "/a/../b", ""},
		{"http://h.example:81/p?q", "h.example:81", "/p", "q"},
		{"http://h.example", "h.example", "", ""},
		{"*", "", "*", ""},
		{"/p#frag", "", "/p", ""},
	}
	for _, tc := range cases {
		a, p, q := splitRequestURI([]byte(tc.uri))
		if string(a) != tc.auth || string(p) != tc.path || string(q) != tc.query {
			t.Errorf("splitRequestURI(%q) = %q %q %q, want %q %q %q", tc.uri, a, p, q, tc.auth, tc.path, tc.query)
		}
	}
}

// Routes that share a pattern share its compiled form: a build compiles
// each distinct regex once, however many routes and hosts use it.
func TestRegexCompiledOncePerBuild(t *testing.T) {
	split := fsm.RouteAction{Split: []fsm.WeightedPool{{Pool: "p", Weight: 1}}}
	cfg := config{
		listeners: map[string]fsm.ListenerSpec{"web": {}},
		pools:     map[string]fsm.PoolSpec{"p": {Backends: []fsm.Backend{{Addr: "127.0.0.1:1"}}}},
		routes:    map[string]fsm.RouteSpec{},
	}
	for i := 0; i < 50; i++ {
		cfg.routes[fmt.Sprintf("r%d", i)] = fsm.RouteSpec{Listener: "web",
			Match: fsm.RouteMatch{Hosts: []string{fmt.Sprintf("h%d.example", i)}, Path: fsm.PathMatch{Regex: `/items/[0-9]+`},
				Headers: []fsm.ValueMatch{{Name: "X-V", Regex: `v[0-9]`}}},
			Action: split}
	}
	tab := compile(cfg.build(), newRegistry(nil), "")
	seen := map[*regexp.Regexp]bool{}
	for _, l := range tab.listeners["web"].exact {
		for _, r := range l.routes {
			seen[r.re] = true
			seen[r.headers[0].re] = true
		}
	}
	if len(seen) != 2 {
		t.Errorf("50 routes sharing two patterns hold %d compiled regexps, want 2", len(seen))
	}
	if got := lookupIn(t, tab, "GET", "h7.example", "/items/12", "X-V", "v1"); got != "r7" {
		t.Errorf("lookup = %q, want r7", got)
	}
}

// A regex sees at most maxRegexInput bytes: a longer path or value does
// not match.
func TestRegexInputBounded(t *testing.T) {
	split := fsm.RouteAction{Split: []fsm.WeightedPool{{Pool: "p", Weight: 1}}}
	cfg := config{
		listeners: map[string]fsm.ListenerSpec{"web": {}},
		pools:     map[string]fsm.PoolSpec{"p": {Backends: []fsm.Backend{{Addr: "127.0.0.1:1"}}}},
		routes: map[string]fsm.RouteSpec{
			"re":  {Listener: "web", Match: fsm.RouteMatch{Path: fsm.PathMatch{Regex: `/a.*`}}, Action: split},
			"hdr": {Listener: "web", Match: fsm.RouteMatch{Path: fsm.PathMatch{Prefix: "/h"}, Headers: []fsm.ValueMatch{{Name: "X-V", Regex: `x*`}}}, Action: split},
		},
	}
	tab := compile(cfg.build(), newRegistry(nil), "")
	long := strings.Repeat("x", maxRegexInput)
	if got := lookupIn(t, tab, "GET", "a", "/a"+long[:maxRegexInput-2]); got != "re" {
		t.Errorf("path of exactly the bound: %q, want re", got)
	}
	if got := lookupIn(t, tab, "GET", "a", "/a"+long); got != "" {
		t.Errorf("path over the bound matched %q", got)
	}
	if got := lookupIn(t, tab, "GET", "a", "/h", "X-V", long); got != "hdr" {
		t.Errorf("header value of exactly the bound: %q, want hdr", got)
	}
	if got := lookupIn(t, tab, "GET", "a", "/h", "X-V", long+"x"); got != "" {
		t.Errorf("header value over the bound matched %q", got)
	}
}
