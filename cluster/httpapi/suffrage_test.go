package httpapi

import (
	"net/http"
	"slices"
	"testing"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
)

func TestSuffrageRoutes(t *testing.T) {
	conflict := &fsm.FieldError{Field: "ids", Err: fsm.ErrConflict, Message: "that would make 4 voters, an even count"}
	tests := []struct {
		name         string
		path, body   string
		storeErr     error
		status       int
		field        string
		wantPromoted []string
		wantDemoted  []string
	}{
		{name: "promote one", path: "/v1/nodes/p1/promote", status: 200, wantPromoted: []string{"p1"}},
		{name: "demote one", path: "/v1/nodes/n3/demote", status: 200, wantDemoted: []string{"n3"}},
		{name: "promote two", path: "/v1/nodes/promote", body: `{"ids": ["p1", "p2"]}`, status: 200, wantPromoted: []string{"p1", "p2"}},
		{name: "demote two", path: "/v1/nodes/demote", body: `{"ids": ["n4", "n5"]}`, status: 200, wantDemoted: []string{"n4", "n5"}},
		{name: "bad body", path: "/v1/nodes/promote", body: `{"ids": "p1"}`, status: 400, field: "body.ids"},
		{name: "unknown field", path: "/v1/nodes/demote", body: `{"ids": [], "force": true}`, status: 400, field: "body"},
		{name: "even count refused", path: "/v1/nodes/p1/promote", storeErr: conflict, status: 409, field: "ids"},
		{name: "not a member", path: "/v1/nodes/x/demote", status: 404, field: "ids[0]",
			storeErr: &fsm.FieldError{Field: "ids[0]", Err: fsm.ErrNotFound, Message: "x is not a member of the cluster"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestAPI(t, "n1", nil)
			a.store.suffrageErr = tc.storeErr
			r := do(t, a.srv.URL, "POST", tc.path, "", tc.body)
			if r.status != tc.status {
				t.Fatalf("got %d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.status != http.StatusOK {
				if e := r.errorBody(t); e.Field != tc.field {
					t.Fatalf("field %q, want %q (%s)", e.Field, tc.field, r.body)
				}
				return
			}
			var res api.SuffrageResult
			r.decode(t, &res)
			a.store.mu.Lock()
			promoted, demoted := slices.Clone(a.store.promoted), slices.Clone(a.store.demoted)
			a.store.mu.Unlock()
			if !slices.Equal(promoted, tc.wantPromoted) || !slices.Equal(demoted, tc.wantDemoted) {
				t.Fatalf("promoted %v demoted %v, want %v %v", promoted, demoted, tc.wantPromoted, tc.wantDemoted)
			}
		})
	}
}

func TestJoinRole(t *testing.T) {
	a := newTestAPI(t, "n1", nil)
	r := do(t, a.srv.URL, "POST", "/v1/nodes", "", `{"id": "p1", "raft_addr": "127.0.0.5:7701", "role": "observer"}`)
	if r.status != http.StatusBadRequest || r.errorBody(t).Field != "role" {
		t.Fatalf("bad role: %d %s, want 400 on field role", r.status, r.body)
	}
	r = do(t, a.srv.URL, "POST", "/v1/nodes", "", `{"id": "p1", "raft_addr": "127.0.0.5:7701", "role": "proxy"}`)
	if r.status != http.StatusOK {
		t.Fatalf("proxy join: %d %s", r.status, r.body)
	}
	if j := a.store.joined(); len(j) != 1 || j[0].Role != fsm.RoleProxy {
		t.Fatalf("joined %+v, want p1 as a proxy", j)
	}
}

func TestSuffrageWithoutLeader(t *testing.T) {
	a := newTestAPI(t, "n1", nil)
	a.store.setNoLeader()
	r := do(t, a.srv.URL, "POST", "/v1/nodes/promote", "", `{"ids": ["p1", "p2"]}`)
	if r.status != http.StatusServiceUnavailable || r.errorBody(t).Code != CodeNoLeader {
		t.Fatalf("got %d %s, want 503 no_leader", r.status, r.body)
	}
}
