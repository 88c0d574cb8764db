package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/fsm"
)

// memberStore is a fakeStore whose status lists members.
type memberStore struct {
	*fakeStore
	members []cluster.Member
}

func (m *memberStore) Status() cluster.Status {
	st := m.fakeStore.Status()
	st.Members = m.members
	return st
}

// newClusterAPI serves an API (with tokens) whose store lists members.
func newClusterAPI(t *testing.T, members []cluster.Member, mod func(*Config)) (*memberStore, *httptest.Server, *server) {
	t.Helper()
	st := &memberStore{fakeStore: newFakeStore("n1"), members: members}
	cfg := DefaultConfig()
	cfg.Store = st
	cfg.NodeID = "n1"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	withTokens(&cfg)
	if mod != nil {
		mod(&cfg)
	}
	s, err := newServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return st, srv, s
}

// healthMember answers GET /v1/health with one verdict, and records the
// Authorization header it got.
func healthMember(t *testing.T, node string, gotAuth chan<- string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/health" {
			http.NotFound(w, r)
			return
		}
		select {
		case gotAuth <- r.Header.Get("Authorization"):
		default:
		}
		w.Header().Set(HeaderIndex, "42")
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"node":"`+node+`","targets":[{"pool":"app","addr":"10.0.0.1:80","healthy":false,"reason":"active: 3 consecutive failures","since":"2026-01-01T00:00:00Z","active_check":true,"active_failures":3,"active_successes":0,"checks":9,"ejections":0}],"listeners":[{"name":"web","bound":true}]}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// GET /v1/health/cluster gathers every member's verdicts with the
// caller's token, and a member that does not answer within the deadline
// (or cannot be reached) gets an error entry instead of holding the view.
func TestHealthClusterFanOut(t *testing.T) {
	gotAuth := make(chan string, 1)
	ok := healthMember(t, "n1", gotAuth)
	release := make(chan struct{})
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); silent.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()

	members := []cluster.Member{
		{ID: "n1", Zone: "a", AdminAddr: ok.Listener.Addr().String(), Suffrage: "Voter", Leader: true},
		{ID: "n2", Zone: "b", AdminAddr: silent.Listener.Addr().String(), Suffrage: "Voter"},
		{ID: "n3", Zone: "c", AdminAddr: closedAddr, Suffrage: "Voter"},
		{ID: "n4", Zone: "d", Suffrage: "Voter"},
	}
	_, srv, _ := newClusterAPI(t, members, nil)

	start := time.Now()
	r := do(t, srv.URL, "GET", "/v1/health/cluster?timeout=300ms", roToken, "")
	took := time.Since(start)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if took > 5*time.Second {
		t.Fatalf("took %v with a 300ms deadline", took)
	}
	if a := <-gotAuth; a != "Bearer "+roToken {
		t.Fatalf("member got Authorization %q, want the caller's", a)
	}
	var ch api.ClusterHealth
	r.decode(t, &ch)
	if ch.Node != "n1" || len(ch.Nodes) != 4 {
		t.Fatalf("view: %s", r.body)
	}
	n1 := ch.Nodes[0]
	if n1.Node != "n1" || n1.Zone != "a" || n1.Error != "" || n1.Index != 42 || n1.AnsweredAt.IsZero() ||
		n1.AgeSeconds < 0 || len(n1.Targets) != 1 || n1.Targets[0].Healthy || n1.Targets[0].Reason == "" ||
		!strings.Contains(string(n1.Listeners), `"web"`) {
		t.Errorf("n1: %+v", n1)
	}
	for i, want := range []string{"deadline", "refused", "admin address unknown"} {
		n := ch.Nodes[i+1]
		if !strings.Contains(n.Error, want) || len(n.Targets) != 0 || !n.AnsweredAt.IsZero() {
			t.Errorf("%s: error %q (want it to say %q), %d targets, answered %v", n.Node, n.Error, want, len(n.Targets), n.AnsweredAt)
		}
	}

	for _, bad := range []string{"timeout=0s", "timeout=forever", "timeout=31s"} {
		r := do(t, srv.URL, "GET", "/v1/health/cluster?"+bad, roToken, "")
		if r.status != 400 || r.errorBody(t).Field != "timeout" {
			t.Errorf("?%s: %d %s, want 400 naming timeout", bad, r.status, r.body)
		}
	}
	if r := do(t, srv.URL, "GET", "/v1/health/cluster", "", ""); r.status != 401 {
		t.Errorf("without a token: %d", r.status)
	}
}

// GET /v1/status/cluster takes health from the leader's answer and state
// and indexes from each member's own; a member that does not answer is
// unhealthy, with its error.
func TestStatusClusterUsesLeaderView(t *testing.T) {
	leaderStatus := api.Status{NodeID: "n1", State: "Leader", Leader: "n1", Term: 3, CommitIndex: 10, AppliedIndex: 10,
		Members: []api.Member{
			{ID: "n1", Zone: "a", Leader: true, Healthy: true, Health: "healthy"},
			{ID: "n2", Zone: "b", Healthy: true, Health: "healthy"},
			{ID: "n3", Zone: "c", Healthy: false, Health: "unhealthy"},
		}}
	followerStatus := api.Status{NodeID: "n2", State: "Follower", Leader: "n1", Term: 3, CommitIndex: 10, AppliedIndex: 7}
	serve := func(st api.Status) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 200, st)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	l, f := serve(leaderStatus), serve(followerStatus)
	members := []cluster.Member{
		{ID: "n1", AdminAddr: l.Listener.Addr().String()},
		{ID: "n2", AdminAddr: f.Listener.Addr().String()},
		{ID: "n3"},
	}
	_, srv, _ := newClusterAPI(t, members, nil)
	r := do(t, srv.URL, "GET", "/v1/status/cluster?timeout=1s", rwToken, "")
	var cs api.ClusterStatus
	r.decode(t, &cs)
	if r.status != 200 || cs.Leader != "n1" || cs.CommitIndex != 10 || len(cs.Members) != 3 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if m := cs.Members[0]; m.State != "Leader" || !m.Leader || m.Lag != 0 || m.HealthFrom != "n1" {
		t.Errorf("n1: %+v", m)
	}
	if m := cs.Members[1]; m.State != "Follower" || m.Lag != 3 || m.Health != "healthy" || m.Zone != "b" {
		t.Errorf("n2: %+v", m)
	}
	if m := cs.Members[2]; m.Error == "" || m.Healthy || m.Health != "unhealthy" {
		t.Errorf("n3: %+v", m)
	}
}

// GET /v1/auth says what the token may do.
func TestAuthSaysWhatTheTokenMay(t *testing.T) {
	_, srv, _ := newClusterAPI(t, nil, nil)
	for _, tc := range []struct {
		token  string
		status int
		write  bool
	}{{rwToken, 200, true}, {roToken, 200, false}, {"", 401, false}, {"wrong", 401, false}} {
		r := do(t, srv.URL, "GET", "/v1/auth", tc.token, "")
		var info api.TokenInfo
		if r.status == 200 {
			r.decode(t, &info)
		}
		if r.status != tc.status || info.Write != tc.write || (r.status == 200 && (!info.Auth || info.Node != "n1")) {
			t.Errorf("token %q: %d %s", tc.token, r.status, r.body)
		}
	}
}

// The history records creates, updates (with what a pool change did to
// drain flags), deletes and VIP moves at their Raft indexes; it is seeded
// from modify_index at start and stays within its size.
func TestHistoryRecordsChanges(t *testing.T) {
	st := newFakeStore("n1")
	seeded := st.put(t, fsm.KindListener, "web", `{"port": 8080}`)
	h := NewHistory(st, 4)
	v := h.View(10)
	if len(v.Entries) != 1 || v.Entries[0].Op != "set" || v.Entries[0].Index != seeded || !v.Entries[0].At.IsZero() {
		t.Fatalf("seeded: %+v", v.Entries)
	}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	h.now = func() time.Time { return now }

	created := st.put(t, fsm.KindPool, "app", `{"backends": [{"addr": "10.0.0.1:80"}, {"addr": "10.0.0.2:80"}]}`)
	drained := st.put(t, fsm.KindPool, "app", `{"backends": [{"addr": "10.0.0.1:80", "drain": true}, {"addr": "10.0.0.2:80"}]}`)
	h.observe(st.Config()) // two changes of one pool seen at once: the last one
	deleted, err := st.Apply(context.Background(), fsm.DeleteCommand(fsm.KindListener, "web", nil))
	if err != nil {
		t.Fatal(err)
	}
	h.observe(st.Config())
	v = h.View(10)
	want := []api.HistoryEntry{
		{Index: deleted, Op: "delete", Kind: "listener", Name: "web"},
		{Index: drained, Op: "create", Kind: "pool", Name: "app"},
		{Index: seeded, Op: "set", Kind: "listener", Name: "web"},
	}
	if len(v.Entries) != len(want) {
		t.Fatalf("entries: %+v", v.Entries)
	}
	for i, w := range want {
		e := v.Entries[i]
		if e.Index != w.Index || e.Op != w.Op || e.Kind != w.Kind || e.Name != w.Name {
			t.Errorf("entry %d: %+v, want %+v", i, e, w)
		}
	}
	if v.Entries[0].At != now || v.Index != deleted || created >= drained {
		t.Errorf("time %v, index %d", v.Entries[0].At, v.Index)
	}

	undrained := st.put(t, fsm.KindPool, "app", `{"backends": [{"addr": "10.0.0.1:80"}, {"addr": "10.0.0.3:80"}]}`)
	h.observe(st.Config())
	e := h.View(1).Entries[0]
	if e.Index != undrained || e.Op != "update" || e.Detail != "2 backends, +10.0.0.3:80, -10.0.0.2:80, undrain 10.0.0.1:80" {
		t.Errorf("pool update: %+v", e)
	}
	for i := 0; i < 5; i++ {
		st.put(t, fsm.KindListener, "l"+string(rune('a'+i)), `{"port": 900`+string(rune('0'+i))+`}`)
		h.observe(st.Config())
	}
	if n := len(h.View(100).Entries); n != 4 {
		t.Errorf("%d entries kept, want the size, 4", n)
	}
}

// p99 interpolates inside its bucket, as histogram_quantile does, and the
// rate window uses per-node deltas, so a restarted node's counters count
// from zero instead of going negative.
func TestRatesOverTheCluster(t *testing.T) {
	h := &api.Histogram{Bounds: []float64{0.001, 0.01, 0.1}, Counts: []uint64{90, 99, 100}, Count: 100}
	if q, ok := quantile(0.99, h); !ok || math.Abs(q-0.01) > 1e-9 {
		t.Errorf("p99 = %v, %v; want 0.01", q, ok)
	}
	if q, _ := quantile(0.5, h); math.Abs(q-0.001*50/90) > 1e-9 {
		t.Errorf("p50 = %v", q)
	}
	if _, ok := quantile(0.99, &api.Histogram{}); ok {
		t.Error("an empty histogram has a quantile")
	}

	sample := func(n1, n2 uint64) api.ClusterStats {
		node := func(name string, n uint64) api.NodeStatsAnswer {
			return api.NodeStatsAnswer{NodeAnswer: api.NodeAnswer{Node: name}, Stats: &api.NodeStats{Node: name,
				Routes: []api.RequestStats{{Name: "app", Requests: map[string]uint64{"2xx": n, "5xx": n / 10},
					Latency: &api.Histogram{Bounds: []float64{0.01}, Counts: []uint64{n + n/10}, Count: n + n/10}}},
				Pools: []api.RequestStats{{Name: "app", Requests: map[string]uint64{"2xx": n, "5xx": n / 10}}},
				Backends: []api.RequestStats{{Name: "app/10.0.0.1:80", Requests: map[string]uint64{"2xx": n, "5xx": n / 20, "failed": n / 20},
					Latency: &api.Histogram{Bounds: []float64{0.01}, Counts: []uint64{n}, Count: n}}}}}
		}
		return api.ClusterStats{Nodes: []api.NodeStatsAnswer{node("n1", n1), node("n2", n2)}}
	}
	w := rateWindow{keep: 10}
	w.add(0, sample(1000, 500))
	r := w.add(2, sample(1200, 100)) // n2 restarted: its 100 (+10) are all new
	if len(r.Routes) != 1 || r.WindowSeconds != 2 {
		t.Fatalf("rates: %+v", r)
	}
	// n1: 200 2xx + 20 5xx; n2: 100 2xx + 10 5xx; 330 in 2 s.
	if got := r.Routes[0]; got.RPS != 165 || math.Abs(got.ErrorRate-30.0/330) > 1e-9 || got.P99MS <= 0 || got.P99MS > 10 {
		t.Errorf("route: %+v", got)
	}
	if got := r.Pools[0]; got.RPS != 165 || got.P99MS != -1 {
		t.Errorf("pool: %+v", got)
	}
	// Backends: n1 200 + 10 + 10, n2 100 + 5 + 5: 330 in 2 s, of which 30
	// were 5xx or got no answer.
	if len(r.Backends) != 1 {
		t.Fatalf("backends: %+v", r.Backends)
	}
	if got := r.Backends[0]; got.Name != "app/10.0.0.1:80" || got.RPS != 165 || math.Abs(got.ErrorRate-30.0/330) > 1e-9 || got.P99MS <= 0 || got.P99MS > 10 {
		t.Errorf("backend: %+v", got)
	}
}

// GET /v1/events sends the configuration at once and again on a change,
// the gathered views every interval, and ends when the server shuts down.
func TestEventsStream(t *testing.T) {
	st, srv, s := newClusterAPI(t, nil, func(c *Config) { c.EventInterval = 50 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+roToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("%d %s", resp.StatusCode, ct)
	}
	events := make(chan [2]string, 64)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var name string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				events <- [2]string{name, strings.TrimPrefix(line, "data: ")}
			}
		}
	}()
	next := func(want string) string {
		t.Helper()
		for ev := range events {
			if ev[0] == want {
				return ev[1]
			}
		}
		t.Fatalf("stream ended before a %q event", want)
		return ""
	}
	var cv api.ConfigView
	if err := json.Unmarshal([]byte(next("config")), &cv); err != nil || cv.Index != 0 {
		t.Fatalf("first config: %+v %v", cv, err)
	}
	for _, name := range []string{"members", "health", "stats", "members"} {
		next(name)
	}
	idx := st.put(t, fsm.KindListener, "web", `{"port": 8080}`)
	for {
		if err := json.Unmarshal([]byte(next("config")), &cv); err != nil {
			t.Fatal(err)
		}
		if cv.Index == idx {
			break
		}
	}
	if len(cv.Listeners) != 1 || cv.Listeners[0].Name != "web" {
		t.Fatalf("config after the change: %+v", cv)
	}
	s.closeStreams()
	for range events {
	}
}

// A rollout appears in the history when it is created, and again with
// every change of its status (each verdict or operator action).
func TestHistoryRecordsRollouts(t *testing.T) {
	st := newFakeStore("n1")
	h := NewHistory(st, 16)
	st.put(t, fsm.KindListener, "web", `{"port": 8080}`)
	st.put(t, fsm.KindPool, "v1", `{"backends": [{"addr": "10.0.0.1:80"}]}`)
	st.put(t, fsm.KindPool, "v2", `{"backends": [{"addr": "10.0.0.2:80"}]}`)
	st.put(t, fsm.KindRoute, "app", `{"listener": "web", "action": {"split": [{"pool": "v1", "weight": 100}]}}`)
	h.observe(st.Config())
	created := st.put(t, fsm.KindRollout, "r1", `{"route": "app", "stable": "v1", "canary": "v2", "steps": [10, 100], "interval": "1s"}`)
	h.observe(st.Config())
	var sawSpec, sawStatus bool
	for _, e := range h.View(16).Entries {
		switch {
		case e.Kind == "rollout" && e.Name == "r1" && e.Op == "create" && e.Index == created:
			sawSpec = true
		case e.Kind == "rollout-status" && e.Name == "r1" && e.Index == created && strings.Contains(e.Detail, "canary 10%"):
			sawStatus = true
		}
	}
	if !sawSpec || !sawStatus {
		t.Fatalf("rollout entries missing (spec %v, status %v): %+v", sawSpec, sawStatus, h.View(16).Entries)
	}
}
