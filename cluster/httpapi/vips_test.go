package httpapi

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/cluster/probe"
	"github.com/rafterlb/rafter/fsm"
)

func TestVIPMove(t *testing.T) {
	a := newTestAPI(t, "n1", withTokens)
	zoneFixture(t, a.store)
	a.store.putNode(t, "n4", "d")
	a.store.put(t, fsm.KindVIP, "web", `{"provider": "linux", "address": "10.0.0.100/24", "home_node": "n1", "candidates": ["n1", "n2", "n4"]}`)
	url := a.srv.URL

	var m api.MoveResult
	r := do(t, url, "POST", "/v1/vips/web/move", rwToken, `{"to": "n2"}`)
	if r.status != 200 {
		t.Fatalf("move: %d %s", r.status, r.body)
	}
	r.decode(t, &m)
	got := a.store.Config().Assignments["web"]
	if got == nil || got.Holder != "n2" || got.Reason != "operator" || got.Token != m.Index || m.Assignment.Holder != "n2" {
		t.Fatalf("after move: stored %+v, answer %+v", got, m)
	}
	first := got.Token

	// Moving to the holder again is a no-op answered with the assignment.
	r = do(t, url, "POST", "/v1/vips/web/move", rwToken, `{"to": "n2"}`)
	if r.status != 200 || a.store.Config().Assignments["web"].Token != first {
		t.Fatalf("repeat move: %d %s", r.status, r.body)
	}

	if _, err := a.store.Apply(context.Background(), fsm.NewCommand(&fsm.ZoneChange{Zone: &fsm.ZoneState{Zone: "d", Evacuated: true}})); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, body, want string }{
		{"missing", `{}`, "required"},
		{"not a member", `{"to": "n9"}`, "not a cluster member"},
		{"not a candidate", `{"to": "n3"}`, "not a candidate"},
		{"evacuated zone", `{"to": "n4"}`, "evacuated"},
		{"unknown field", `{"node": "n2"}`, "unknown field"},
	} {
		r := do(t, url, "POST", "/v1/vips/web/move", rwToken, tc.body)
		if r.status != 400 {
			t.Errorf("%s: %d %s, want 400", tc.name, r.status, r.body)
			continue
		}
		e := r.errorBody(t)
		if (tc.name != "unknown field" && e.Field != "to") || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s: error %+v, want field to and %q", tc.name, e, tc.want)
		}
	}
	if r := do(t, url, "POST", "/v1/vips/nope/move", rwToken, `{"to": "n2"}`); r.status != 404 {
		t.Fatalf("unknown vip: %d %s", r.status, r.body)
	}
	if r := do(t, url, "POST", "/v1/vips/web/move", roToken, `{"to": "n1"}`); r.status != 403 {
		t.Fatalf("read-only token: %d %s", r.status, r.body)
	}
	if tok := a.store.Config().Assignments["web"].Token; tok != first {
		t.Fatalf("a refused move changed the assignment: token %d, was %d", tok, first)
	}
}

type fakeProbe struct {
	err  error
	reqs []probe.Request
}

func (f *fakeProbe) Handle(_ context.Context, req probe.Request) (probe.Response, error) {
	f.reqs = append(f.reqs, req)
	if f.err != nil {
		return probe.Response{}, f.err
	}
	return probe.Response{Leader: "n1", Grants: map[string]uint64{"web": 4}}, nil
}

func TestProbeEndpoint(t *testing.T) {
	fp := &fakeProbe{}
	a := newTestAPI(t, "n1", func(c *Config) { withTokens(c); c.Probe = fp })
	url := a.srv.URL
	r := do(t, url, "POST", probe.Path, rwToken, `{"node": "n2", "holding": {"web": 3}, "leaving": true}`)
	if r.status != 200 {
		t.Fatalf("probe: %d %s", r.status, r.body)
	}
	var resp probe.Response
	r.decode(t, &resp)
	if resp.Leader != "n1" || resp.Grants["web"] != 4 {
		t.Fatalf("answer %+v", resp)
	}
	if got := fp.reqs[0]; got.Node != "n2" || got.Holding["web"] != 3 || !got.Leaving {
		t.Fatalf("request seen %+v", got)
	}
	if r := do(t, url, "POST", probe.Path, rwToken, `{"holding": {}}`); r.status != 400 || r.errorBody(t).Field != "node" {
		t.Fatalf("probe without node: %d %s", r.status, r.body)
	}
	if r := do(t, url, "POST", probe.Path, roToken, `{"node": "n2"}`); r.status != 403 {
		t.Fatalf("read-only probe: %d %s", r.status, r.body)
	}
	fp.err = errors.Join(probe.ErrNotLeader, errors.New("lost quorum"))
	r = do(t, url, "POST", probe.Path, rwToken, `{"node": "n2"}`)
	if r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Fatalf("probe to a node that cannot confirm it leads: %d %s", r.status, r.body)
	}

	b := newTestAPI(t, "n1", withTokens)
	if r := do(t, b.srv.URL, "POST", probe.Path, rwToken, `{"node": "n2"}`); r.status != 404 {
		t.Fatalf("probe without a tracker: %d %s", r.status, r.body)
	}
}

// Bad VIP input names the field and stores nothing.
func TestVIPBadInput(t *testing.T) {
	a := newTestAPI(t, "n1", withTokens)
	zoneFixture(t, a.store)
	a.store.put(t, fsm.KindVIP, "web", `{"provider": "linux", "address": "10.0.0.100/24", "home_node": "n1"}`)
	a.store.put(t, fsm.KindVIP, "eip", `{"provider": "aws-eip", "allocation_id": "eipalloc-1", "home_node": "n1"}`)
	before := a.store.Config().Index
	for _, tc := range []struct{ name, body, field string }{
		{"candidate not a member", `{"provider": "linux", "address": "10.0.0.101/24", "home_node": "n1", "candidates": ["n1", "n9"]}`, "candidates"},
		{"duplicate address", `{"provider": "linux", "address": "10.0.0.100/24", "home_node": "n2"}`, "address"},
		{"duplicate allocation", `{"provider": "aws-eip", "allocation_id": "eipalloc-1", "home_node": "n2"}`, "allocation_id"},
		{"unknown provider", `{"provider": "gcp", "address": "10.0.0.102/24", "home_node": "n1"}`, "provider"},
	} {
		r := do(t, a.srv.URL, "PUT", "/v1/vips/other", rwToken, tc.body)
		if r.status != 400 {
			t.Errorf("%s: %d %s, want 400", tc.name, r.status, r.body)
			continue
		}
		if e := r.errorBody(t); !strings.Contains(e.Field, tc.field) {
			t.Errorf("%s: field %q (%s), want it to name %q", tc.name, e.Field, e.Message, tc.field)
		}
	}
	if idx := a.store.Config().Index; idx != before {
		t.Fatalf("refused writes changed the state: index %d -> %d", before, idx)
	}
}
