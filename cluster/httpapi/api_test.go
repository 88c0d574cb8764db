package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
)

func TestCRUDRoundTrip(t *testing.T) {
	tests := []struct {
		kind    fsm.Kind
		path    string
		prereqs bool
	}{
		{fsm.KindListener, "listeners", false},
		{fsm.KindPool, "pools", false},
		{fsm.KindRoute, "routes", true},
		{fsm.KindVIP, "vips", false},
	}
	for _, tc := range tests {
		t.Run(string(tc.kind), func(t *testing.T) {
			a := newTestAPI(t, "n1", nil)
			if tc.prereqs {
				a.store.putPrereqs(t)
			}
			base := a.srv.URL
			obj := "/v1/" + tc.path + "/obj-1"

			r := do(t, base, "GET", obj, "", "")
			if r.status != http.StatusNotFound || r.errorBody(t).Code != CodeNotFound {
				t.Fatalf("GET before PUT: %d %s", r.status, r.body)
			}

			r = do(t, base, "PUT", obj, "", validSpecs[tc.kind])
			if r.status != http.StatusOK {
				t.Fatalf("PUT: %d %s", r.status, r.body)
			}
			var put api.WriteResult
			r.decode(t, &put)
			if put.Index != a.store.Config().Index || put.Index == 0 {
				t.Fatalf("PUT index %d, store at %d", put.Index, a.store.Config().Index)
			}
			if got := r.header.Get(HeaderIndex); got != strconv.FormatUint(put.Index, 10) {
				t.Fatalf("PUT %s = %q, want %d", HeaderIndex, got, put.Index)
			}

			r = do(t, base, "GET", obj, "", "")
			if r.status != http.StatusOK {
				t.Fatalf("GET: %d %s", r.status, r.body)
			}
			var got map[string]json.RawMessage
			r.decode(t, &got)
			for _, k := range []string{"kind", "name", "spec", "modify_index"} {
				if _, ok := got[k]; !ok {
					t.Fatalf("GET answer %s lacks %q", r.body, k)
				}
			}
			var it api.Item
			r.decode(t, &it)
			if it.Kind != tc.kind || it.Name != "obj-1" || it.ModifyIndex != put.Index {
				t.Fatalf("GET = %+v, want kind %s name obj-1 modify_index %d", it, tc.kind, put.Index)
			}
			stored, _ := a.store.Config().Get(tc.kind, "obj-1")
			if !jsonEqual(t, it.Spec, stored.Spec) {
				t.Fatalf("GET spec %s, stored %s", it.Spec, stored.Spec)
			}

			r = do(t, base, "GET", "/v1/"+tc.path, "", "")
			var list api.List
			r.decode(t, &list)
			if r.status != http.StatusOK || list.Index != a.store.Config().Index {
				t.Fatalf("list: %d %s", r.status, r.body)
			}
			found := false
			for _, li := range list.Items {
				found = found || li.Name == "obj-1" && li.Kind == tc.kind && li.ModifyIndex == put.Index
			}
			if !found {
				t.Fatalf("list %s lacks obj-1", r.body)
			}

			r = do(t, base, "DELETE", obj, "", "")
			var del api.WriteResult
			r.decode(t, &del)
			if r.status != http.StatusOK || del.Index <= put.Index {
				t.Fatalf("DELETE: %d %s", r.status, r.body)
			}
			if r = do(t, base, "GET", obj, "", ""); r.status != http.StatusNotFound {
				t.Fatalf("GET after DELETE: %d %s", r.status, r.body)
			}
			if r = do(t, base, "DELETE", obj, "", ""); r.status != http.StatusNotFound {
				t.Fatalf("second DELETE: %d %s", r.status, r.body)
			}
		})
	}
}

func TestVIPListIncludesAssignment(t *testing.T) {
	a := newTestAPI(t, "n1", nil)
	a.store.put(t, fsm.KindVIP, "edge", validSpecs[fsm.KindVIP])
	a.store.put(t, fsm.KindVIP, "spare", validSpecs[fsm.KindVIP])
	if _, err := a.store.Apply(t.Context(), fsm.NewCommand(&fsm.Assign{
		Assignment: &fsm.Assignment{VIP: "edge", Holder: "n1"}})); err != nil {
		t.Fatalf("assign: %v", err)
	}
	r := do(t, a.srv.URL, "GET", "/v1/vips", "", "")
	var list api.List
	r.decode(t, &list)
	if len(list.Items) != 2 {
		t.Fatalf("list: %s", r.body)
	}
	for _, it := range list.Items {
		switch it.Name {
		case "edge":
			if it.Assignment == nil || it.Assignment.Holder != "n1" || it.Assignment.Token == 0 {
				t.Fatalf("edge assignment: %s", r.body)
			}
		case "spare":
			if it.Assignment != nil {
				t.Fatalf("spare has an assignment: %s", r.body)
			}
		}
	}
}

func TestCAS(t *testing.T) {
	a := newTestAPI(t, "n1", nil)
	base := a.srv.URL
	spec := validSpecs[fsm.KindListener]
	first := do(t, base, "PUT", "/v1/listeners/web?cas=0", "", spec)
	if first.status != http.StatusOK {
		t.Fatalf("create with cas=0: %d %s", first.status, first.body)
	}
	var created api.WriteResult
	first.decode(t, &created)
	cur := created.Index

	tests := []struct {
		name   string
		method string
		query  string
		body   string
		status int
		code   string
		field  string
	}{
		{"create over existing", "PUT", "?cas=0", spec, http.StatusConflict, CodeConflict, ""},
		{"stale index", "PUT", fmt.Sprintf("?cas=%d", cur+100), `{"port": 8081}`, http.StatusConflict, CodeConflict, ""},
		{"delete stale", "DELETE", fmt.Sprintf("?cas=%d", cur+100), "", http.StatusConflict, CodeConflict, ""},
		{"bad cas", "PUT", "?cas=abc", spec, http.StatusBadRequest, CodeInvalid, "cas"},
		{"negative cas", "DELETE", "?cas=-1", "", http.StatusBadRequest, CodeInvalid, "cas"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := a.store.Config()
			r := do(t, base, tc.method, "/v1/listeners/web"+tc.query, "", tc.body)
			e := r.errorBody(t)
			if r.status != tc.status || e.Code != tc.code || (tc.field != "" && e.Field != tc.field) {
				t.Fatalf("got %d %s, want %d %s field %q", r.status, r.body, tc.status, tc.code, tc.field)
			}
			if a.store.Config() != before {
				t.Fatalf("a refused write changed the store")
			}
		})
	}

	r := do(t, base, "PUT", fmt.Sprintf("/v1/listeners/web?cas=%d", cur), "", `{"port": 8081}`)
	if r.status != http.StatusOK {
		t.Fatalf("put with current cas: %d %s", r.status, r.body)
	}
	var upd api.WriteResult
	r.decode(t, &upd)
	r = do(t, base, "DELETE", fmt.Sprintf("/v1/listeners/web?cas=%d", upd.Index), "", "")
	if r.status != http.StatusOK {
		t.Fatalf("delete with current cas: %d %s", r.status, r.body)
	}
}

func TestInvalidSpecs(t *testing.T) {
	tests := []struct {
		name      string
		path      string
		body      string
		fieldPart string // the error's field must contain this
	}{
		{"port out of range", "/v1/listeners/web", `{"port": 70000}`, "port"},
		{"unknown field", "/v1/listeners/web", `{"port": 8080, "prot": 1}`, ""},
		{"wrong type", "/v1/listeners/web", `{"port": "eighty"}`, ""},
		{"bad balancer", "/v1/pools/app", `{"balancer": "fastest", "backends": [{"addr": "127.0.0.1:1"}]}`, "balancer"},
		{"route to missing listener", "/v1/routes/r", `{"listener": "nope", "action": {"split": [{"pool": "app", "weight": 1}]}}`, "listener"},
		{"bad regex", "/v1/routes/r", `{"listener": "web", "match": {"path": {"regex": "("}}, "action": {"split": [{"pool": "app", "weight": 1}]}}`, "regex"},
		{"bad provider", "/v1/vips/v", `{"provider": "carrier-pigeon", "home_node": "n1"}`, "provider"},
		{"bad backend ca", "/v1/pools/app", `{"tls": {"ca": "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"}}`, "spec.tls.ca"},
		{"client key without cert", "/v1/pools/app", `{"tls": {"key_file": "/k.pem"}}`, "spec.tls.cert_file"},
		{"bad send_proxy_protocol", "/v1/pools/app", `{"send_proxy_protocol": "v9"}`, "spec.send_proxy_protocol"},
		{"bad trusted CIDR", "/v1/listeners/web", `{"port": 8080, "proxy_protocol": {"trusted": ["10.0.0.0/8", "10.0.0.0/99"]}}`, "spec.proxy_protocol.trusted[1]"},
		{"syntax error", "/v1/listeners/web", `{"port": 8080`, "spec"},
		{"empty body", "/v1/listeners/web", ``, "spec"},
		{"two values", "/v1/listeners/web", `{"port": 1} {"port": 2}`, "spec"},
		{"bad name", "/v1/listeners/Not%20A%20Name", `{"port": 8080}`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestAPI(t, "n1", nil)
			a.store.putPrereqs(t)
			before := a.store.Config()
			r := do(t, a.srv.URL, "PUT", tc.path, "", tc.body)
			e := r.errorBody(t)
			if r.status != http.StatusBadRequest || e.Code != CodeInvalid {
				t.Fatalf("got %d %s, want 400 invalid", r.status, r.body)
			}
			if e.Field == "" || !strings.Contains(e.Field, tc.fieldPart) {
				t.Fatalf("field %q, want one containing %q (%s)", e.Field, tc.fieldPart, r.body)
			}
			if a.store.Config() != before {
				t.Fatalf("an invalid write changed the store")
			}
		})
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	a := newTestAPI(t, "n1", withTokens)
	tests := []struct {
		method, path string
		status       int
		code         string
		allow        string
	}{
		{"GET", "/v1/widgets", http.StatusNotFound, CodeNotFound, ""},
		{"GET", "/v1/widgets/x", http.StatusNotFound, CodeNotFound, ""},
		{"PUT", "/v1/widgets/x", http.StatusNotFound, CodeNotFound, ""},
		{"GET", "/v1/routes/x/extra", http.StatusNotFound, CodeNotFound, ""},
		{"GET", "/nothing", http.StatusNotFound, CodeNotFound, ""},
		{"PATCH", "/v1/routes/x", http.StatusMethodNotAllowed, CodeMethodNotAllowed, "GET, PUT, DELETE"},
		{"POST", "/v1/status", http.StatusMethodNotAllowed, CodeMethodNotAllowed, "GET"},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := do(t, a.srv.URL, tc.method, tc.path, rwToken, "")
			if r.status != tc.status || r.errorBody(t).Code != tc.code {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, tc.status, tc.code)
			}
			if got := r.header.Get("Allow"); got != tc.allow {
				t.Fatalf("Allow %q, want %q", got, tc.allow)
			}
		})
	}
	// Without a token the answer is 401 whatever the path: unknown paths
	// reveal nothing to strangers.
	if r := do(t, a.srv.URL, "GET", "/v1/widgets", "", ""); r.status != http.StatusUnauthorized {
		t.Fatalf("unknown path without token: %d", r.status)
	}
}

func TestHeadersOnEveryResponse(t *testing.T) {
	a := newTestAPI(t, "n1", func(c *Config) {
		withTokens(c)
		c.MaxBodyBytes = 64
	})
	a.store.put(t, fsm.KindListener, "web", validSpecs[fsm.KindListener])
	idx := strconv.FormatUint(a.store.Config().Index, 10)
	noLeader := newTestAPI(t, "n2", withTokens)
	noLeader.store.setNoLeader()

	tests := []struct {
		name         string
		api          *testAPI
		method, path string
		token, body  string
		status       int
	}{
		{"status", a, "GET", "/v1/status", rwToken, "", 200},
		{"peer", a, "GET", "/v1/internal/peer", roToken, "", 200},
		{"list", a, "GET", "/v1/listeners", roToken, "", 200},
		{"config", a, "GET", "/v1/config", roToken, "", 200},
		{"openapi", a, "GET", "/v1/openapi.json", roToken, "", 200},
		{"unauthorized", a, "GET", "/v1/status", "", "", 401},
		{"forbidden", a, "PUT", "/v1/listeners/web", roToken, `{"port": 1}`, 403},
		{"not found", a, "GET", "/v1/listeners/none", rwToken, "", 404},
		{"unknown kind", a, "GET", "/v1/things", rwToken, "", 404},
		{"method", a, "PATCH", "/v1/listeners/web", rwToken, "", 405},
		{"invalid", a, "PUT", "/v1/listeners/web", rwToken, `{"port": -1}`, 400},
		{"conflict", a, "PUT", "/v1/listeners/web?cas=0", rwToken, `{"port": 1}`, 409},
		{"too large", a, "PUT", "/v1/listeners/web", rwToken, `{"port": 8080, "protocol": "` + strings.Repeat("x", 100) + `"}`, 413},
		{"no leader", noLeader, "PUT", "/v1/listeners/web", rwToken, `{"port": 1}`, 503},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, tc.api.srv.URL, tc.method, tc.path, tc.token, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d %s, want %d", r.status, r.body, tc.status)
			}
			if _, ok := r.header[HeaderIndex]; !ok {
				t.Fatalf("no %s", HeaderIndex)
			}
			if _, ok := r.header[HeaderLeader]; !ok {
				t.Fatalf("no %s", HeaderLeader)
			}
			if tc.api == a {
				if got := r.header.Get(HeaderIndex); got != idx {
					t.Fatalf("%s = %q, want %s", HeaderIndex, got, idx)
				}
				if got := r.header.Get(HeaderLeader); got != "n1" {
					t.Fatalf("%s = %q, want n1", HeaderLeader, got)
				}
			}
			if tc.status >= 400 {
				if e := r.errorBody(t); e.Code == "" || e.Message == "" {
					t.Fatalf("error body %s lacks code or message", r.body)
				}
			}
		})
	}
}

func TestNoLeader(t *testing.T) {
	a := newTestAPI(t, "n1", nil)
	a.store.setNoLeader()
	tests := []struct{ method, path, body string }{
		{"PUT", "/v1/listeners/web", `{"port": 8080}`},
		{"DELETE", "/v1/listeners/web", ""},
		{"POST", "/v1/apply", "kind: listener\nname: web\nspec: {port: 8080}\n"},
		{"GET", "/v1/listeners?consistent", ""},
		{"POST", "/v1/nodes", `{"id": "n4", "raft_addr": "127.0.0.4:7701"}`},
		{"DELETE", "/v1/nodes/n3", ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := do(t, a.srv.URL, tc.method, tc.path, "", tc.body)
			if r.status != http.StatusServiceUnavailable || r.errorBody(t).Code != CodeNoLeader {
				t.Fatalf("got %d %s, want 503 no_leader", r.status, r.body)
			}
			if got := r.header.Get("Retry-After"); got != "1" {
				t.Fatalf("Retry-After %q, want 1", got)
			}
			if got, ok := r.header[HeaderLeader]; !ok || got[0] != "" {
				t.Fatalf("%s = %q, want present and empty", HeaderLeader, got)
			}
		})
	}
}

func TestBodyLimit(t *testing.T) {
	a := newTestAPI(t, "n1", func(c *Config) { c.MaxBodyBytes = 256 })
	big := strings.Repeat(" ", 300)
	tests := []struct{ method, path, body string }{
		{"PUT", "/v1/listeners/web", `{"port": 8080}` + big},
		{"POST", "/v1/apply", "kind: listener\nname: web\nspec: {port: 8080}\n#" + big},
		{"POST", "/v1/apply?dry_run", "kind: listener\nname: web\nspec: {port: 8080}\n#" + big},
		{"POST", "/v1/nodes", `{"id": "n4", "raft_addr": "127.0.0.4:7701"}` + big},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := do(t, a.srv.URL, tc.method, tc.path, "", tc.body)
			if r.status != http.StatusRequestEntityTooLarge || r.errorBody(t).Code != CodeTooLarge {
				t.Fatalf("got %d %s, want 413 too_large", r.status, r.body)
			}
			if a.store.Config().Index != 0 {
				t.Fatalf("an oversized write changed the store")
			}
		})
	}
	// Just under the limit is fine.
	if r := do(t, a.srv.URL, "PUT", "/v1/listeners/web", "", `{"port": 8080}`+strings.Repeat(" ", 200)); r.status != http.StatusOK {
		t.Fatalf("body under the limit: %d %s", r.status, r.body)
	}
}

func TestStatusAndPeer(t *testing.T) {
	a := newTestAPI(t, "n1", nil)
	var st struct {
		NodeID string `json:"node_id"`
		State  string `json:"state"`
	}
	r := do(t, a.srv.URL, "GET", "/v1/status", "", "")
	r.decode(t, &st)
	if r.status != 200 || st.NodeID != "n1" || st.State != "Leader" {
		t.Fatalf("status: %d %s", r.status, r.body)
	}
	var pi struct {
		ID       string `json:"id"`
		RaftAddr string `json:"raft_addr"`
	}
	r = do(t, a.srv.URL, "GET", "/v1/internal/peer", "", "")
	r.decode(t, &pi)
	if r.status != 200 || pi.ID != "n1" || pi.RaftAddr == "" {
		t.Fatalf("peer: %d %s", r.status, r.body)
	}
}

func TestNodes(t *testing.T) {
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		status int
		field  string
	}{
		{"join", "POST", "/v1/nodes", `{"id": "n4", "zone": "d", "raft_addr": "127.0.0.4:7701", "admin_addr": "127.0.0.4:7700"}`, 200, ""},
		{"join without id", "POST", "/v1/nodes", `{"raft_addr": "127.0.0.4:7701"}`, 400, "id"},
		{"join without raft addr", "POST", "/v1/nodes", `{"id": "n4"}`, 400, "raft_addr"},
		{"join unknown field", "POST", "/v1/nodes", `{"id": "n4", "raft_addr": "x:1", "color": "red"}`, 400, "body"},
		{"join bad json", "POST", "/v1/nodes", `{"id": `, 400, "body"},
		{"remove", "DELETE", "/v1/nodes/n3", "", 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestAPI(t, "n1", nil)
			r := do(t, a.srv.URL, tc.method, tc.path, "", tc.body)
			if r.status != tc.status {
				t.Fatalf("got %d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.status != 200 {
				if e := r.errorBody(t); e.Field != tc.field {
					t.Fatalf("field %q, want %q", e.Field, tc.field)
				}
				return
			}
			switch tc.method {
			case "POST":
				if j := a.store.joined(); len(j) != 1 || j[0].ID != "n4" || j[0].Zone != "d" {
					t.Fatalf("joined %+v", j)
				}
			case "DELETE":
				a.store.mu.Lock()
				removed := append([]string(nil), a.store.removed...)
				a.store.mu.Unlock()
				if len(removed) != 1 || removed[0] != "n3" {
					t.Fatalf("removed %v", removed)
				}
			}
		})
	}
}
