package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// recorded is one request the fake API saw.
type recorded struct {
	Method, Path, Query, Auth, ContentType, Body string
}

// fakeAPI answers every request with the canned status/body for its
// "METHOD PATH" and records it.
func fakeAPI(t *testing.T, answers map[string]func(w http.ResponseWriter)) (*httptest.Server, *[]recorded) {
	t.Helper()
	var seen []recorded
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen = append(seen, recorded{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), string(b)})
		h, ok := answers[r.Method+" "+r.URL.EscapedPath()]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":{"code":"not_found","message":"no such endpoint"}}`)
			return
		}
		h(w)
	}))
	t.Cleanup(srv.Close)
	return srv, &seen
}

func answer(status int, index string, body string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		if index != "" {
			w.Header().Set("X-Rafter-Index", index)
		}
		w.Header().Set("X-Rafter-Leader", "n1")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func TestCalls(t *testing.T) {
	srv, seen := fakeAPI(t, map[string]func(http.ResponseWriter){
		"GET /v1/status":         answer(200, "7", `{"node_id":"n1","zone":"a","state":"Leader","leader":"n1","members":[{"id":"n1","healthy":true,"leader":true}]}`),
		"GET /v1/routes/app":     answer(200, "7", `{"kind":"route","name":"app","spec":{"listener":"web"},"modify_index":5}`),
		"GET /v1/routes":         answer(200, "7", `{"items":[{"kind":"route","name":"app","spec":{},"modify_index":5}],"index":7}`),
		"PUT /v1/listeners/web":  answer(200, "8", `{"index":8}`),
		"DELETE /v1/pools/a%2Fb": answer(200, "", `{"index":9}`),
		"POST /v1/apply":         answer(200, "10", `{"index":10,"changes":[{"op":"create","kind":"route","name":"app"}]}`),
		"GET /v1/config":         answer(200, "10", "kind: listener\nname: web\n"),
		"POST /v1/nodes":         answer(200, "11", `{"index":11}`),
		"DELETE /v1/nodes/n4":    answer(200, "12", `{"index":12}`),
		"GET /v1/snapshot":       answer(200, "12", "RAFTSNAP\x00\x00\x00\x01\xff"),
		"POST /v1/restore":       answer(200, "13", `{"index":13,"changes":[{"op":"delete","kind":"route","name":"late"}]}`),
	})
	c := New(srv.URL, "s3cret", nil)
	ctx := context.Background()

	st, m, err := c.Status(ctx)
	if err != nil || st.NodeID != "n1" || len(st.Members) != 1 || m.Index != 7 || m.Leader != "n1" {
		t.Fatalf("Status = %+v %+v %v", st, m, err)
	}
	obj, _, err := c.Get(ctx, fsm.KindRoute, "app")
	if err != nil || obj.Name != "app" || obj.ModifyIndex != 5 {
		t.Fatalf("Get = %+v %v", obj, err)
	}
	items, m, err := c.List(ctx, fsm.KindRoute)
	if err != nil || len(items) != 1 || m.Index != 7 {
		t.Fatalf("List = %+v %+v %v", items, m, err)
	}
	cas := uint64(0)
	idx, err := c.Put(ctx, fsm.KindListener, "web", map[string]int{"port": 8080}, &cas)
	if err != nil || idx != 8 {
		t.Fatalf("Put = %d %v", idx, err)
	}
	idx, err = c.Delete(ctx, fsm.KindPool, "a/b", nil)
	if err != nil || idx != 9 {
		t.Fatalf("Delete = %d %v", idx, err)
	}
	res, err := c.Apply(ctx, []byte("kind: route\n"), true)
	if err != nil || len(res.Changes) != 1 || !res.DryRun {
		t.Fatalf("Apply = %+v %v", res, err)
	}
	doc, _, err := c.Config(ctx, "yaml")
	if err != nil || !strings.HasPrefix(string(doc), "kind: listener") {
		t.Fatalf("Config = %q %v", doc, err)
	}
	if err := c.Join(ctx, PeerInfo{ID: "n4", RaftAddr: "127.0.0.4:7701"}); err != nil {
		t.Fatalf("Join: %v", err)
	}
	if err := c.Remove(ctx, "n4"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	snap, m, err := c.Snapshot(ctx, true)
	if err != nil || string(snap) != "RAFTSNAP\x00\x00\x00\x01\xff" || m.Index != 12 {
		t.Fatalf("Snapshot = %q %+v %v", snap, m, err)
	}
	res, err = c.Restore(ctx, snap, false)
	if err != nil || res.Index != 13 || res.DryRun || len(res.Changes) != 1 || res.Changes[0].Op != "delete" {
		t.Fatalf("Restore = %+v %v", res, err)
	}

	want := []recorded{
		{Method: "GET", Path: "/v1/status"},
		{Method: "GET", Path: "/v1/routes/app"},
		{Method: "GET", Path: "/v1/routes"},
		{Method: "PUT", Path: "/v1/listeners/web", Query: "cas=0", ContentType: "application/json", Body: `{"port":8080}`},
		{Method: "DELETE", Path: "/v1/pools/a%2Fb"},
		{Method: "POST", Path: "/v1/apply", Query: "dry_run=true", ContentType: "application/yaml", Body: "kind: route\n"},
		{Method: "GET", Path: "/v1/config", Query: "format=yaml"},
		{Method: "POST", Path: "/v1/nodes", ContentType: "application/json", Body: `{"id":"n4","zone":"","raft_addr":"127.0.0.4:7701","admin_addr":"","bootstrapped":false}`},
		{Method: "DELETE", Path: "/v1/nodes/n4"},
		{Method: "GET", Path: "/v1/snapshot", Query: "consistent=true"},
		{Method: "POST", Path: "/v1/restore", ContentType: "application/octet-stream", Body: "RAFTSNAP\x00\x00\x00\x01\xff"},
	}
	if len(*seen) != len(want) {
		t.Fatalf("saw %d requests, want %d", len(*seen), len(want))
	}
	for i, w := range want {
		got := (*seen)[i]
		w.Auth = "Bearer s3cret"
		if got != w {
			t.Errorf("request %d:\n got %+v\nwant %+v", i, got, w)
		}
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		header  map[string]string
		want    APIError
		wantStr string
	}{
		{
			name:    "validation",
			status:  400,
			body:    `{"error":{"code":"invalid","message":"must be 1..65535","field":"spec.port"}}`,
			want:    APIError{Status: 400, Code: "invalid", Message: "must be 1..65535", Field: "spec.port"},
			wantStr: "400 invalid: spec.port: must be 1..65535",
		},
		{
			name:    "message already names the field",
			status:  400,
			body:    `{"error":{"code":"invalid","message":"spec.port: must be 1..65535","field":"spec.port"}}`,
			want:    APIError{Status: 400, Code: "invalid", Message: "spec.port: must be 1..65535", Field: "spec.port"},
			wantStr: "400 invalid: spec.port: must be 1..65535",
		},
		{
			name:    "no leader",
			status:  503,
			body:    `{"error":{"code":"no_leader","message":"no leader"}}`,
			header:  map[string]string{"Retry-After": "2"},
			want:    APIError{Status: 503, Code: "no_leader", Message: "no leader", RetryAfter: 2 * time.Second},
			wantStr: "503 no_leader: no leader",
		},
		{
			name:    "not json",
			status:  502,
			body:    "bad gateway\nmore",
			want:    APIError{Status: 502, Code: "bad_gateway", Message: "bad gateway"},
			wantStr: "502 bad_gateway: bad gateway",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := fakeAPI(t, map[string]func(http.ResponseWriter){
				"PUT /v1/listeners/web": func(w http.ResponseWriter) {
					for k, v := range tt.header {
						w.Header().Set(k, v)
					}
					w.WriteHeader(tt.status)
					io.WriteString(w, tt.body)
				},
			})
			_, err := New(srv.URL, "", nil).Put(context.Background(), fsm.KindListener, "web", json.RawMessage(`{"port":0}`), nil)
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want *APIError", err)
			}
			if *ae != tt.want {
				t.Fatalf("got %+v, want %+v", *ae, tt.want)
			}
			if ae.Error() != tt.wantStr {
				t.Fatalf("Error() = %q, want %q", ae.Error(), tt.wantStr)
			}
			if !IsStatus(err, tt.status) {
				t.Fatal("IsStatus false")
			}
		})
	}
}

func TestRestore(t *testing.T) {
	srv, seen := fakeAPI(t, map[string]func(http.ResponseWriter){
		"POST /v1/restore": func(w http.ResponseWriter) {
			answer(200, "20", `{"changes":[{"op":"create","kind":"listener","name":"web"}]}`)(w)
		},
	})
	c := New(srv.URL, "", nil)
	res, err := c.Restore(t.Context(), []byte("snap"), true)
	if err != nil || !res.DryRun || res.Index != 0 || len(res.Changes) != 1 {
		t.Fatalf("dry run = %+v %v", res, err)
	}
	if got := (*seen)[0]; got.Query != "dry_run=true" || got.Body != "snap" {
		t.Fatalf("request %+v", got)
	}
	// A write whose answer has no index takes the header's.
	res, err = c.Restore(t.Context(), []byte("snap"), false)
	if err != nil || res.Index != 20 {
		t.Fatalf("restore = %+v %v", res, err)
	}

	bad, _ := fakeAPI(t, map[string]func(http.ResponseWriter){
		"POST /v1/restore": answer(400, "20", `{"error":{"code":"invalid","message":"request body: corrupt snapshot: checksum mismatch"}}`),
	})
	_, err = New(bad.URL, "", nil).Restore(t.Context(), nil, false)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Code != "invalid" || !strings.Contains(ae.Message, "checksum mismatch") {
		t.Fatalf("corrupt snapshot: %v", err)
	}
}

// An answer over the limit is an error, never a silently cut body.
func TestAnswerLimit(t *testing.T) {
	srv, _ := fakeAPI(t, map[string]func(http.ResponseWriter){
		"GET /v1/snapshot": answer(200, "1", "12345"),
	})
	c := New(srv.URL, "", nil)
	tests := []struct {
		limit int64
		ok    bool
	}{{4, false}, {5, true}, {6, true}}
	for _, tc := range tests {
		var raw rawBody
		_, err := c.send(t.Context(), http.MethodGet, "/v1/snapshot", call{limit: tc.limit}, &raw)
		if tc.ok && (err != nil || string(raw) != "12345") {
			t.Errorf("limit %d: %q %v", tc.limit, raw, err)
		}
		if !tc.ok && !errors.Is(err, ErrTooLarge) {
			t.Errorf("limit %d: err %v, want ErrTooLarge", tc.limit, err)
		}
	}
}

func TestAddress(t *testing.T) {
	tests := []struct {
		addr string
		want string
	}{
		{"", DefaultAddr},
		{"127.0.0.1:7700", "http://127.0.0.1:7700"},
		{"https://10.0.0.1:7700", "https://10.0.0.1:7700"},
	}
	for _, tt := range tests {
		if got := New(tt.addr, "", nil).Addr(); got != tt.want {
			t.Errorf("New(%q).Addr() = %q, want %q", tt.addr, got, tt.want)
		}
	}
	_, _, err := New("ftp://x", "", nil).Status(context.Background())
	if err == nil {
		t.Fatal("ftp scheme accepted")
	}
}

func TestConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := New(addr, "", nil).Status(ctx)
	var ae *APIError
	if err == nil || errors.As(err, &ae) {
		t.Fatalf("err = %v, want a transport error", err)
	}
}
