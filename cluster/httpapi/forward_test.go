package httpapi

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/rafterlb/rafter/fsm"
)

type seenRequest struct {
	method, uri string
	header      http.Header
	body        string
}

// recorder notes every request a server receives before handling it.
type recorder struct {
	mu   sync.Mutex
	seen []seenRequest
}

func (rec *recorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		rec.mu.Lock()
		rec.seen = append(rec.seen, seenRequest{r.Method, r.URL.RequestURI(), r.Header.Clone(), string(b)})
		rec.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (rec *recorder) requests() []seenRequest {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]seenRequest(nil), rec.seen...)
}

func TestForwardToLeader(t *testing.T) {
	manifest := "kind: listener\nname: web\nspec: {port: 8080}\n"
	tests := []struct {
		name         string
		method, path string
		token, body  string
		status       int
		forwarded    bool
		check        func(t *testing.T, leader *fakeStore)
	}{
		{"put", "PUT", "/v1/listeners/web?cas=0", rwToken, `{"port": 8080}`, 200, true, func(t *testing.T, l *fakeStore) {
			if _, ok := l.Config().Get(fsm.KindListener, "web"); !ok {
				t.Fatal("leader lacks the listener")
			}
		}},
		{"delete", "DELETE", "/v1/listeners/old", rwToken, "", 200, true, func(t *testing.T, l *fakeStore) {
			if _, ok := l.Config().Get(fsm.KindListener, "old"); ok {
				t.Fatal("leader still has the listener")
			}
		}},
		{"apply", "POST", "/v1/apply", rwToken, manifest, 200, true, func(t *testing.T, l *fakeStore) {
			if _, ok := l.Config().Get(fsm.KindListener, "web"); !ok {
				t.Fatal("leader lacks the applied listener")
			}
		}},
		{"join", "POST", "/v1/nodes", rwToken, `{"id": "n4", "raft_addr": "127.0.0.4:7701"}`, 200, true, func(t *testing.T, l *fakeStore) {
			if j := l.joined(); len(j) != 1 || j[0].ID != "n4" {
				t.Fatalf("leader joined %+v", j)
			}
		}},
		{"remove", "DELETE", "/v1/nodes/n3", rwToken, "", 200, true, nil},
		{"consistent read", "GET", "/v1/listeners?consistent", roToken, "", 200, true, nil},
		{"invalid at the leader", "PUT", "/v1/listeners/web", rwToken, `{"port": 70000}`, 400, true, nil},
		{"cas conflict at the leader", "PUT", "/v1/listeners/old?cas=0", rwToken, `{"port": 8080}`, 409, true, nil},
		{"local read", "GET", "/v1/listeners", roToken, "", 200, false, nil},
		{"forbidden before forwarding", "PUT", "/v1/listeners/web", roToken, `{"port": 8080}`, 403, false, nil},
		{"bad cas before forwarding", "PUT", "/v1/listeners/web?cas=x", rwToken, `{"port": 8080}`, 400, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			leader := newWrappedTestAPI(t, "n1", withTokens, rec.wrap)
			leader.store.put(t, fsm.KindListener, "old", `{"port": 9090}`)
			follower := newTestAPI(t, "n2", withTokens)
			follower.store.setFollower("n1", leader.srv.Listener.Addr().String())

			hdr := http.Header{"Content-Type": {"application/json"}}
			r := doCtx(t, t.Context(), follower.srv.URL, tc.method, tc.path, tc.token, tc.body, hdr)
			if r.status != tc.status {
				t.Fatalf("got %d %s, want %d", r.status, r.body, tc.status)
			}
			if got := r.header.Get(HeaderLeader); got != "n1" {
				t.Fatalf("%s = %q, want n1", HeaderLeader, got)
			}
			seen := rec.requests()
			if !tc.forwarded {
				if len(seen) != 0 {
					t.Fatalf("forwarded %+v", seen)
				}
				return
			}
			if len(seen) != 1 {
				t.Fatalf("leader saw %d requests, want 1", len(seen))
			}
			got := seen[0]
			if got.method != tc.method || got.uri != tc.path || got.body != tc.body {
				t.Fatalf("leader saw %s %s %q, want %s %s %q", got.method, got.uri, got.body, tc.method, tc.path, tc.body)
			}
			if a := got.header.Get("Authorization"); a != "Bearer "+tc.token {
				t.Fatalf("forwarded Authorization %q", a)
			}
			if f := got.header.Get(HeaderForwarded); f != "n2" {
				t.Fatalf("forwarded %s = %q, want n2", HeaderForwarded, f)
			}
			if ct := got.header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("forwarded Content-Type %q", ct)
			}
			// The leader's own index comes back, not the follower's.
			if want := leader.store.Config().Index; r.header.Get(HeaderIndex) != strconv.FormatUint(want, 10) {
				t.Fatalf("%s = %s, want the leader's %d", HeaderIndex, r.header.Get(HeaderIndex), want)
			}
			if tc.check != nil {
				tc.check(t, leader.store)
			}
			if follower.store.Config().Index != 0 {
				t.Fatal("the follower's store changed")
			}
		})
	}
}

// A forwarded request that reaches a node that is not the leader either
// (leadership moved) is refused, never forwarded a second time.
func TestForwardOnlyOnce(t *testing.T) {
	third := &recorder{}
	c := newWrappedTestAPI(t, "n3", withTokens, third.wrap)

	second := &recorder{}
	b := newWrappedTestAPI(t, "n1", withTokens, second.wrap)
	b.store.setFollower("n3", c.srv.Listener.Addr().String())

	a := newTestAPI(t, "n2", withTokens)
	a.store.setFollower("n1", b.srv.Listener.Addr().String())

	tests := []struct{ method, path, body string }{
		{"PUT", "/v1/listeners/web", `{"port": 8080}`},
		{"POST", "/v1/apply", "kind: listener\nname: web\nspec: {port: 8080}\n"},
		{"GET", "/v1/listeners?consistent", ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := do(t, a.srv.URL, tc.method, tc.path, rwToken, tc.body)
			if r.status != http.StatusServiceUnavailable || r.errorBody(t).Code != CodeNoLeader || r.header.Get("Retry-After") != "1" {
				t.Fatalf("got %d %v %s, want 503 no_leader with Retry-After", r.status, r.header, r.body)
			}
		})
	}
	if n := len(second.requests()); n != len(tests) {
		t.Fatalf("the first hop saw %d requests, want %d", n, len(tests))
	}
	if seen := third.requests(); len(seen) != 0 {
		t.Fatalf("a request was forwarded twice: %+v", seen)
	}
}

func TestForwardLeaderUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := ln.Addr().String()
	ln.Close()

	a := newTestAPI(t, "n2", nil)
	a.store.setFollower("n1", gone)
	r := do(t, a.srv.URL, "PUT", "/v1/listeners/web", "", `{"port": 8080}`)
	if r.status != http.StatusServiceUnavailable || r.errorBody(t).Code != CodeNoLeader || r.header.Get("Retry-After") != "1" {
		t.Fatalf("got %d %s, want 503 no_leader", r.status, r.body)
	}

	// A follower that knows no leader address answers 503 too.
	a.store.setFollower("n1", "")
	r = do(t, a.srv.URL, "PUT", "/v1/listeners/web", "", `{"port": 8080}`)
	if r.status != http.StatusServiceUnavailable || r.errorBody(t).Code != CodeNoLeader {
		t.Fatalf("got %d %s, want 503 no_leader", r.status, r.body)
	}
}
