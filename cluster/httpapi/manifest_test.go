package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
)

const sampleManifest = `kind: listener
name: web
spec: {port: 8080}
---
kind: pool
name: app
spec:
  balancer: round_robin
  backends:
    - {addr: 127.0.0.1:9000, zone: a, weight: 1}
---
kind: route
name: app
spec:
  listener: web
  match: {path: {prefix: /}}
  action:
    split: [{pool: app, weight: 100}]
`

func TestApplyAndDryRun(t *testing.T) {
	tests := []struct {
		name     string
		query    string
		body     string
		status   int
		creates  int
		writes   bool
		badField string
	}{
		{"dry run yaml", "?dry_run", sampleManifest, 200, 3, false, ""},
		{"dry run true", "?dry_run=true", sampleManifest, 200, 3, false, ""},
		{"apply yaml", "", sampleManifest, 200, 3, true, ""},
		{"apply json object", "", `{"kind": "listener", "name": "web", "spec": {"port": 8080}}`, 200, 1, true, ""},
		{"apply json array", "", `[{"kind": "listener", "name": "web", "spec": {"port": 8080}}]`, 200, 1, true, ""},
		{"dry run false applies", "?dry_run=false", sampleManifest, 200, 3, true, ""},
		{"bad dry_run", "?dry_run=maybe", sampleManifest, 400, 0, false, "dry_run"},
		{"unknown kind", "", "kind: widget\nname: w\nspec: {}\n", 400, 0, false, "kind"},
		{"unknown kind dry", "?dry_run", "kind: widget\nname: w\nspec: {}\n", 400, 0, false, "kind"},
		{"invalid spec dry", "?dry_run", "kind: listener\nname: web\nspec: {port: 70000}\n", 400, 0, false, "port"},
		{"invalid spec", "", "kind: listener\nname: web\nspec: {port: 70000}\n", 400, 0, false, "port"},
		{"garbage", "", "{{{", 400, 0, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestAPI(t, "n1", nil)
			a.store.put(t, fsm.KindListener, "other", `{"port": 9090}`)
			before := a.store.Config()
			r := do(t, a.srv.URL, "POST", "/v1/apply"+tc.query, "", tc.body)
			if r.status != tc.status {
				t.Fatalf("got %d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.status != 200 {
				e := r.errorBody(t)
				if e.Code != CodeInvalid || !strings.Contains(e.Field, tc.badField) {
					t.Fatalf("error %+v, want invalid with field containing %q", e, tc.badField)
				}
				if a.store.Config() != before {
					t.Fatalf("a refused apply changed the store")
				}
				return
			}
			var resp api.ApplyResult
			r.decode(t, &resp)
			if len(resp.Changes) != tc.creates {
				t.Fatalf("changes %s, want %d", r.body, tc.creates)
			}
			for _, c := range resp.Changes {
				if c.Op != "create" || c.Name == "other" {
					t.Fatalf("unexpected change %+v", c)
				}
			}
			if !tc.writes {
				if a.store.Config() != before || resp.Index != 0 {
					t.Fatalf("dry run wrote: index %d, answer %s", a.store.Config().Index, r.body)
				}
				return
			}
			if resp.Index != a.store.Config().Index || resp.Index != before.Index+1 {
				t.Fatalf("apply index %d, store %d (one entry expected)", resp.Index, a.store.Config().Index)
			}
			// Applying the same manifest again changes nothing.
			r = do(t, a.srv.URL, "POST", "/v1/apply?dry_run", "", tc.body)
			r.decode(t, &resp)
			if r.status != 200 || len(resp.Changes) != 0 {
				t.Fatalf("re-apply dry run: %d %s", r.status, r.body)
			}
		})
	}
}

func TestExportRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		query  string
		accept string
		ctype  string
	}{
		{"default", "", "", "application/json"},
		{"format json", "?format=json", "application/yaml", "application/json"},
		{"format yaml", "?format=yaml", "", "application/yaml"},
		{"accept yaml", "", "application/yaml", "application/yaml"},
		{"accept list", "", "text/html, application/x-yaml;q=0.9", "application/yaml"},
		{"accept json", "", "application/json", "application/json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newTestAPI(t, "n1", nil)
			if r := do(t, src.srv.URL, "POST", "/v1/apply", "", sampleManifest); r.status != 200 {
				t.Fatalf("apply: %d %s", r.status, r.body)
			}
			src.store.put(t, fsm.KindVIP, "edge", validSpecs[fsm.KindVIP])
			hdr := http.Header{}
			if tc.accept != "" {
				hdr.Set("Accept", tc.accept)
			}
			r := doCtx(t, t.Context(), src.srv.URL, "GET", "/v1/config"+tc.query, "", "", hdr)
			if r.status != 200 || r.header.Get("Content-Type") != tc.ctype {
				t.Fatalf("export: %d %s %s", r.status, r.header.Get("Content-Type"), r.body)
			}
			if tc.ctype == "application/json" && !strings.HasPrefix(strings.TrimSpace(string(r.body)), "[") {
				t.Fatalf("JSON export is not an array: %s", r.body)
			}

			// The export is what apply takes: into an empty store it
			// recreates everything; back into the source it changes nothing.
			dst := newTestAPI(t, "n2", nil)
			if ar := do(t, dst.srv.URL, "POST", "/v1/apply", "", string(r.body)); ar.status != 200 {
				t.Fatalf("apply export: %d %s", ar.status, ar.body)
			}
			want, got := src.store.Config().Objects(), dst.store.Config().Objects()
			if len(want) != len(got) {
				t.Fatalf("restored %d objects, want %d", len(got), len(want))
			}
			for i := range want {
				if want[i].Kind != got[i].Kind || want[i].Name != got[i].Name || !jsonEqual(t, want[i].Spec, got[i].Spec) {
					t.Fatalf("object %d: got %+v, want %+v", i, got[i], want[i])
				}
			}
			var resp api.ApplyResult
			dr := do(t, src.srv.URL, "POST", "/v1/apply?dry_run", "", string(r.body))
			dr.decode(t, &resp)
			if dr.status != 200 || len(resp.Changes) != 0 {
				t.Fatalf("export re-applied to its source: %d %s", dr.status, dr.body)
			}
		})
	}
	a := newTestAPI(t, "n1", nil)
	if r := do(t, a.srv.URL, "GET", "/v1/config?format=toml", "", ""); r.status != 400 || r.errorBody(t).Field != "format" {
		t.Fatalf("bad format: %d %s", r.status, r.body)
	}
}

// TestApplyUnchangedWritesNothing: re-applying a manifest answers at the
// current index with no changes and proposes nothing, on the leader and
// through a follower; modify_index stays, so compare-and-set keeps
// working; a real change is still written.
func TestApplyUnchangedWritesNothing(t *testing.T) {
	leader := newTestAPI(t, "n1", nil)
	r := do(t, leader.srv.URL, "POST", "/v1/apply", "", sampleManifest)
	if r.status != 200 {
		t.Fatalf("apply: %d %s", r.status, r.body)
	}
	written := leader.store.Config()
	follower := newTestAPI(t, "n2", nil)
	follower.store.setFollower("n1", leader.srv.Listener.Addr().String())
	for _, via := range []*testAPI{leader, follower, leader} {
		r = do(t, via.srv.URL, "POST", "/v1/apply", "", sampleManifest)
		var resp api.ApplyResult
		r.decode(t, &resp)
		if r.status != 200 || len(resp.Changes) != 0 || resp.Index != written.Index {
			t.Fatalf("re-apply via %s: %d %s, want no changes at index %d", via.store.id, r.status, r.body, written.Index)
		}
		if got := r.header.Get(HeaderIndex); got != fmt.Sprint(written.Index) {
			t.Fatalf("re-apply via %s: %s %q, want %d", via.store.id, HeaderIndex, got, written.Index)
		}
		if leader.store.Config() != written {
			t.Fatalf("re-apply via %s wrote index %d", via.store.id, leader.store.Config().Index)
		}
	}
	route := written.Routes["app"]
	r = do(t, leader.srv.URL, "PUT", fmt.Sprintf("/v1/routes/app?cas=%d", route.ModifyIndex), "",
		`{"listener": "web", "match": {"path": {"prefix": "/"}}, "action": {"split": [{"pool": "app", "weight": 100}]}, "priority": 2}`)
	if r.status != 200 {
		t.Fatalf("cas put after unchanged applies: %d %s", r.status, r.body)
	}
	r = do(t, leader.srv.URL, "POST", "/v1/apply", "", sampleManifest)
	var resp api.ApplyResult
	r.decode(t, &resp)
	if r.status != 200 || len(resp.Changes) != 1 || resp.Changes[0].Op != "update" || resp.Index != leader.store.Config().Index {
		t.Fatalf("apply undoing the put: %d %s", r.status, r.body)
	}
	if leader.store.Config().Routes["app"].Spec.Priority != 0 {
		t.Fatal("the changed apply was not written")
	}
}

// TestApplyUnchangedNoQuorum: without a leader nothing can be confirmed
// current, so an unchanged apply gets the same 503 as any write.
func TestApplyUnchangedNoQuorum(t *testing.T) {
	a := newTestAPI(t, "n1", nil)
	if r := do(t, a.srv.URL, "POST", "/v1/apply", "", sampleManifest); r.status != 200 {
		t.Fatalf("apply: %d %s", r.status, r.body)
	}
	a.store.setNoLeader()
	if r := do(t, a.srv.URL, "POST", "/v1/apply", "", sampleManifest); r.status != http.StatusServiceUnavailable {
		t.Fatalf("unchanged apply without a leader: %d %s, want 503", r.status, r.body)
	}
}
