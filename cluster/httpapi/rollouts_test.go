package httpapi

import (
	"sync"
	"testing"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/cluster/rollout"
	"github.com/rafterlb/rafter/fsm"
)

type reports struct {
	mu  sync.Mutex
	got []rollout.Report
}

func (r *reports) Add(rep rollout.Report) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, rep)
}

func TestRollouts(t *testing.T) {
	rep := &reports{}
	a := newTestAPI(t, "n1", func(c *Config) { withTokens(c); c.Rollouts = rep })
	a.store.putPrereqs(t)
	a.store.put(t, fsm.KindPool, "v2", validSpecs[fsm.KindPool])
	a.store.put(t, fsm.KindRoute, "web", validSpecs[fsm.KindRoute])
	url := a.srv.URL

	r := do(t, url, "PUT", "/v1/rollouts/r1", rwToken, `{"route":"web","stable":"app","canary":"v2","steps":[10,100],"interval":"1s"}`)
	if r.status != 200 {
		t.Fatalf("put: %d %s", r.status, r.body)
	}
	var it api.Item
	do(t, url, "GET", "/v1/rollouts/r1", roToken, "").decode(t, &it)
	if it.Status == nil || it.Status.State != fsm.RolloutProgressing || it.Status.Weight != 10 {
		t.Fatalf("get: %+v", it)
	}
	var list api.List
	do(t, url, "GET", "/v1/rollouts", roToken, "").decode(t, &list)
	if len(list.Items) != 1 || list.Items[0].Status == nil {
		t.Fatalf("list: %+v", list)
	}

	for _, tc := range []struct{ body, field string }{
		{`{"route":"web","stable":"app","canary":"v2","steps":[10,5,100],"interval":"1s"}`, "spec.steps[1]"},
		{`{"route":"web","stable":"app","canary":"v2","steps":[100],"interval":"1s","max_error_rate":2}`, "spec.max_error_rate"},
		{`{"route":"web","stable":"app","canary":"v2","steps":[100],"interval":"10ms"}`, "spec.interval"},
		{`{"route":"nope","stable":"app","canary":"v2","steps":[100],"interval":"1s"}`, "spec.route"},
	} {
		r := do(t, url, "PUT", "/v1/rollouts/bad", rwToken, tc.body)
		if r.status != 400 || r.errorBody(t).Field != tc.field {
			t.Errorf("%s: %d %s, want 400 at %s", tc.body, r.status, r.body, tc.field)
		}
	}

	var res api.RolloutActionResult
	r = do(t, url, "POST", "/v1/rollouts/r1/pause", roToken, "")
	if r.status != 403 {
		t.Fatalf("pause with a read-only token: %d", r.status)
	}
	do(t, url, "POST", "/v1/rollouts/r1/pause", rwToken, "").decode(t, &res)
	if res.Status == nil || res.Status.State != fsm.RolloutPaused {
		t.Fatalf("pause: %+v", res)
	}
	do(t, url, "POST", "/v1/rollouts/r1/promote", rwToken, "").decode(t, &res)
	if res.Status == nil || res.Status.State != fsm.RolloutSucceeded {
		t.Fatalf("promote: %+v", res)
	}
	if split := a.store.Config().Routes["web"].Spec.Action.Split; split[1].Pool != "v2" || split[1].Weight != 100 {
		t.Fatalf("split after promote: %+v", split)
	}
	if r := do(t, url, "POST", "/v1/rollouts/r1/abort", rwToken, ""); r.status != 409 {
		t.Fatalf("abort after the end: %d %s", r.status, r.body)
	}
	if r := do(t, url, "POST", "/v1/rollouts/nope/abort", rwToken, ""); r.status != 404 {
		t.Fatalf("unknown rollout: %d %s", r.status, r.body)
	}

	r = do(t, url, "POST", rollout.Path, rwToken, `{"node":"n2","pools":[{"route":"web","pool":"v2","requests":3,"errors":1,"latency":[3]}]}`)
	if r.status != 200 || len(rep.got) != 1 || rep.got[0].Pools[0].Requests != 3 {
		t.Fatalf("report: %d %s %+v", r.status, r.body, rep.got)
	}
	if r := do(t, url, "POST", rollout.Path, rwToken, `{"pools":[]}`); r.status != 400 {
		t.Fatalf("report without node: %d", r.status)
	}
	if r := do(t, url, "DELETE", "/v1/rollouts/r1", rwToken, ""); r.status != 200 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
}
