package httpapi

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
)

// putNode records a member directly in a fake store.
func (f *fakeStore) putNode(t *testing.T, id, zone string) {
	t.Helper()
	n := &fsm.Node{ID: id, Zone: zone, RaftAddr: "127.0.0.1:7701"}
	if _, err := f.Apply(context.Background(), fsm.NewCommand(&fsm.NodeUpsert{Node: n})); err != nil {
		t.Fatalf("node %s: %v", id, err)
	}
}

// zoneFixture is three members in zones a, b, c; pool "spread" with a
// backend in each of a and b; pool "only-a" with its backends in a only.
func zoneFixture(t *testing.T, st *fakeStore) {
	t.Helper()
	st.putNode(t, "n1", "a")
	st.putNode(t, "n2", "b")
	st.putNode(t, "n3", "c")
	st.put(t, fsm.KindPool, "spread", `{"backends": [{"addr": "127.0.0.1:9001", "zone": "a"}, {"addr": "127.0.0.1:9002", "zone": "b"}]}`)
	st.put(t, fsm.KindPool, "only-a", `{"backends": [{"addr": "127.0.0.1:9003", "zone": "a"}, {"addr": "127.0.0.1:9004", "zone": "a"}, {"addr": "127.0.0.1:9005", "zone": "d"}]}`)
}

func TestZoneNameValidation(t *testing.T) {
	a := newTestAPI(t, "n1", withTokens)
	tests := []struct {
		name, zone string
		status     int
	}{
		{"aws zone", "us-east-1a", 200},
		{"zone id", "use1-az1", 200},
		{"one letter", "a", 200},
		{"upper case", "ZoneB", 200},
		{"dots and underscores", "dc1.rack_2", 200},
		{"leading dash", "-a", 400},
		{"trailing dot", "a.", 400},
		{"space", "a%20b", 400},
		{"colon", "a:b", 400},
		{"non ascii", "z%C3%A9", 400},
		{"too long", strings.Repeat("z", 64), 400},
		{"longest", strings.Repeat("z", 63), 200},
	}
	for _, tc := range tests {
		for _, method := range []string{"POST", "DELETE"} {
			t.Run(tc.name+" "+method, func(t *testing.T) {
				before := a.store.Config().Index
				r := do(t, a.srv.URL, method, "/v1/zones/"+tc.zone+"/evacuate", rwToken, "")
				if r.status != tc.status {
					t.Fatalf("got %d %s, want %d", r.status, r.body, tc.status)
				}
				if tc.status != 400 {
					return
				}
				if e := r.errorBody(t); e.Code != CodeInvalid || e.Field != "zone" {
					t.Fatalf("error %+v, want invalid with field zone", e)
				}
				if a.store.Config().Index != before {
					t.Fatal("a refused request changed the state")
				}
			})
		}
	}
	r := do(t, a.srv.URL, "GET", "/v1/zones/a:b", roToken, "")
	if r.status != 400 || r.errorBody(t).Field != "zone" {
		t.Fatalf("GET with a bad zone: %d %s", r.status, r.body)
	}
}

func TestZoneEvacuateRestore(t *testing.T) {
	a := newTestAPI(t, "n1", withTokens)
	zoneFixture(t, a.store)

	var w api.ZoneResult
	r := do(t, a.srv.URL, "POST", "/v1/zones/b/evacuate", rwToken, "")
	if r.status != 200 {
		t.Fatalf("evacuate: %d %s", r.status, r.body)
	}
	r.decode(t, &w)
	cfg := a.store.Config()
	if w.Index != cfg.Index || w.Zone != "b" || !w.Evacuated || w.Warning != "" {
		t.Fatalf("evacuate answer %+v (state index %d)", w, cfg.Index)
	}
	if r.header.Get(HeaderIndex) != strconv.FormatUint(w.Index, 10) {
		t.Fatalf("%s = %s, want %d", HeaderIndex, r.header.Get(HeaderIndex), w.Index)
	}
	if zs := cfg.Zones["b"]; zs == nil || !zs.Evacuated || zs.ModifyIndex != w.Index {
		t.Fatalf("zone state %+v", zs)
	}

	var list api.ZoneList
	r = do(t, a.srv.URL, "GET", "/v1/zones", roToken, "")
	if r.status != 200 {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	r.decode(t, &list)
	want := []api.Zone{
		{Zone: "a", Nodes: []string{"n1"}, Backends: 3},
		{Zone: "b", Evacuated: true, ModifyIndex: w.Index, Nodes: []string{"n2"}, Backends: 1},
		{Zone: "c", Nodes: []string{"n3"}, Backends: 0},
		{Zone: "d", Nodes: []string{}, Backends: 1},
	}
	if list.Index != cfg.Index || !slices.EqualFunc(list.Items, want, zoneViewEqual) {
		t.Fatalf("list %+v, want %+v at index %d", list, want, cfg.Index)
	}

	var one api.Zone
	r = do(t, a.srv.URL, "GET", "/v1/zones/b", roToken, "")
	if r.status != 200 {
		t.Fatalf("get: %d %s", r.status, r.body)
	}
	r.decode(t, &one)
	if !zoneViewEqual(one, want[1]) {
		t.Fatalf("get %+v, want %+v", one, want[1])
	}
	if r := do(t, a.srv.URL, "GET", "/v1/zones/nowhere", roToken, ""); r.status != 404 || r.errorBody(t).Code != CodeNotFound {
		t.Fatalf("unknown zone: %d %s", r.status, r.body)
	}

	// Evacuating again changes nothing and answers the same way.
	r = do(t, a.srv.URL, "POST", "/v1/zones/b/evacuate", rwToken, "")
	if r.status != 200 || a.store.Config().Zones["b"].ModifyIndex != w.Index {
		t.Fatalf("evacuating twice: %d %s, zone %+v", r.status, r.body, a.store.Config().Zones["b"])
	}

	r = do(t, a.srv.URL, "DELETE", "/v1/zones/b/evacuate", rwToken, "")
	if r.status != 200 {
		t.Fatalf("restore: %d %s", r.status, r.body)
	}
	var rw api.ZoneResult
	r.decode(t, &rw)
	if rw.Evacuated || rw.Index <= w.Index || rw.Warning != "" {
		t.Fatalf("restore answer %+v", rw)
	}
	if zs := a.store.Config().Zones["b"]; zs == nil || zs.Evacuated || zs.ModifyIndex != rw.Index {
		t.Fatalf("zone state after restore %+v", zs)
	}
}

func zoneViewEqual(a, b api.Zone) bool {
	return a.Zone == b.Zone && a.Evacuated == b.Evacuated && a.ModifyIndex == b.ModifyIndex &&
		slices.Equal(a.Nodes, b.Nodes) && a.Backends == b.Backends
}

// Evacuating is never refused; the answer warns when a pool is left with
// nothing to send to, or when the zone names nothing.
func TestZoneEvacuateWarning(t *testing.T) {
	tests := []struct {
		name     string
		before   []string // zones evacuated first
		zone     string
		stranded []string
		warning  string // substring; "" = no warning
	}{
		{"other zones remain", nil, "b", nil, ""},
		{"a backend in another zone remains", nil, "a", nil, ""},
		{"earlier evacuations count", []string{"d"}, "a", []string{"only-a"}, "no backend outside evacuated zones in pool(s) only-a"},
		{"every zone of a pool", []string{"a"}, "b", []string{"spread"}, "spread"},
		{"unknown zone", nil, "us-east-1x", nil, "changes no traffic"},
		{"zone with only a node", nil, "c", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestAPI(t, "n1", withTokens)
			zoneFixture(t, a.store)
			for _, z := range tc.before {
				if r := do(t, a.srv.URL, "POST", "/v1/zones/"+z+"/evacuate", rwToken, ""); r.status != 200 {
					t.Fatalf("evacuate %s: %d %s", z, r.status, r.body)
				}
			}
			r := do(t, a.srv.URL, "POST", "/v1/zones/"+tc.zone+"/evacuate", rwToken, "")
			if r.status != 200 {
				t.Fatalf("evacuate: %d %s", r.status, r.body)
			}
			var w api.ZoneResult
			r.decode(t, &w)
			if tc.warning == "" && w.Warning != "" || !strings.Contains(w.Warning, tc.warning) {
				t.Fatalf("warning %q, want one containing %q", w.Warning, tc.warning)
			}
			if tc.stranded != nil && !slices.Equal(w.StrandedPools, tc.stranded) {
				t.Fatalf("stranded %v, want %v", w.StrandedPools, tc.stranded)
			}
			if !a.store.Config().Zones[tc.zone].Evacuated {
				t.Fatal("the zone was not evacuated")
			}
		})
	}
}

func TestZoneAuth(t *testing.T) {
	a := newTestAPI(t, "n1", withTokens)
	tests := []struct {
		method, path, token string
		status              int
	}{
		{"POST", "/v1/zones/a/evacuate", "", 401},
		{"POST", "/v1/zones/a/evacuate", "wrong", 401},
		{"POST", "/v1/zones/a/evacuate", roToken, 403},
		{"DELETE", "/v1/zones/a/evacuate", roToken, 403},
		{"GET", "/v1/zones", "", 401},
		{"GET", "/v1/zones", roToken, 200},
		{"POST", "/v1/zones/a/evacuate", rwToken, 200},
		{"GET", "/v1/zones/a", roToken, 200},
		{"DELETE", "/v1/zones/a/evacuate", rwToken, 200},
		{"PUT", "/v1/zones/a/evacuate", rwToken, 405},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path+" "+tc.token, func(t *testing.T) {
			before := a.store.Config().Index
			r := do(t, a.srv.URL, tc.method, tc.path, tc.token, "")
			if r.status != tc.status {
				t.Fatalf("got %d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.status >= 400 && a.store.Config().Index != before {
				t.Fatal("a refused request changed the state")
			}
		})
	}
}

func TestZoneForwarding(t *testing.T) {
	tests := []struct {
		method, path, token string
		status              int
		forwarded           bool
		evacuated           bool // the leader's state of zone b afterwards
	}{
		{"POST", "/v1/zones/b/evacuate", rwToken, 200, true, true},
		{"DELETE", "/v1/zones/b/evacuate", rwToken, 200, true, false},
		{"POST", "/v1/zones/-b/evacuate", rwToken, 400, false, false},
		{"POST", "/v1/zones/b/evacuate", roToken, 403, false, false},
		{"GET", "/v1/zones", roToken, 200, false, false},
		{"GET", "/v1/zones?consistent", roToken, 200, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path+" "+strconv.Itoa(tc.status), func(t *testing.T) {
			rec := &recorder{}
			leader := newWrappedTestAPI(t, "n1", withTokens, rec.wrap)
			zoneFixture(t, leader.store)
			follower := newTestAPI(t, "n2", withTokens)
			follower.store.setFollower("n1", leader.srv.Listener.Addr().String())

			r := do(t, follower.srv.URL, tc.method, tc.path, tc.token, "")
			if r.status != tc.status {
				t.Fatalf("got %d %s, want %d", r.status, r.body, tc.status)
			}
			seen := rec.requests()
			if !tc.forwarded {
				if len(seen) != 0 {
					t.Fatalf("forwarded %+v", seen)
				}
				return
			}
			if len(seen) != 1 || seen[0].method != tc.method || seen[0].uri != tc.path ||
				seen[0].header.Get(HeaderForwarded) != "n2" || seen[0].header.Get("Authorization") != "Bearer "+tc.token {
				t.Fatalf("leader saw %+v", seen)
			}
			if tc.method == "GET" {
				var list api.ZoneList
				r.decode(t, &list)
				if len(list.Items) != 4 {
					t.Fatalf("consistent list from the leader: %+v", list)
				}
				return
			}
			var w api.ZoneResult
			r.decode(t, &w)
			zs := leader.store.Config().Zones["b"]
			if zs == nil || zs.Evacuated != tc.evacuated || w.Index != leader.store.Config().Index {
				t.Fatalf("leader zone state %+v, answer %+v", zs, w)
			}
			if follower.store.Config().Index != 0 {
				t.Fatal("the follower's store changed")
			}
		})
	}

	// Without a leader a write answers 503 with Retry-After.
	a := newTestAPI(t, "n2", withTokens)
	a.store.setNoLeader()
	r := do(t, a.srv.URL, "POST", "/v1/zones/b/evacuate", rwToken, "")
	if r.status != http.StatusServiceUnavailable || r.errorBody(t).Code != CodeNoLeader || r.header.Get("Retry-After") != "1" {
		t.Fatalf("no leader: %d %v %s", r.status, r.header, r.body)
	}
}
