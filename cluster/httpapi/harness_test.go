package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

const (
	rwToken = "rw-secret-token"
	roToken = "ro-secret"
)

// Specs fsm accepts, keyed by kind; a route needs the listener "web" and
// the pool "app".
var validSpecs = map[fsm.Kind]string{
	fsm.KindListener: `{"port": 8080}`,
	fsm.KindPool:     `{"balancer": "round_robin", "backends": [{"addr": "127.0.0.1:9000", "weight": 1}]}`,
	fsm.KindRoute:    `{"listener": "web", "match": {"path": {"prefix": "/"}}, "action": {"split": [{"pool": "app", "weight": 100}]}}`,
	fsm.KindVIP:      `{"provider": "none", "home_node": "n1"}`,
}

type testAPI struct {
	store *fakeStore
	srv   *httptest.Server
	api   *server
}

// newTestAPI serves an API over a fake leader store on 127.0.0.1. mod
// adjusts the Config before New.
func newTestAPI(t *testing.T, id string, mod func(*Config)) *testAPI {
	t.Helper()
	return newWrappedTestAPI(t, id, mod, nil)
}

// newWrappedTestAPI is newTestAPI with the server's handler wrapped by wrap.
func newWrappedTestAPI(t *testing.T, id string, mod func(*Config), wrap func(http.Handler) http.Handler) *testAPI {
	t.Helper()
	st := newFakeStore(id)
	cfg := DefaultConfig()
	cfg.Store = st
	cfg.NodeID = id
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if mod != nil {
		mod(&cfg)
	}
	api, err := newServer(cfg)
	if err != nil {
		t.Fatalf("newServer: %v", err)
	}
	var h http.Handler = api
	if wrap != nil {
		h = wrap(api)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	st.mu.Lock()
	st.leaderAddr = srv.Listener.Addr().String()
	st.mu.Unlock()
	return &testAPI{store: st, srv: srv, api: api}
}

func withTokens(c *Config) {
	c.ReadWriteTokens = []string{rwToken, "another-rw"}
	c.ReadOnlyTokens = []string{roToken}
}

type result struct {
	status int
	header http.Header
	body   []byte
}

func (r result) errorBody(t *testing.T) api.ErrorDetail {
	t.Helper()
	var eb api.ErrorBody
	if err := json.Unmarshal(r.body, &eb); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	return eb.Error
}

func (r result) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
}

// do sends one request; token "" sends no Authorization header.
func do(t *testing.T, base, method, path, token, body string) result {
	t.Helper()
	return doCtx(t, context.Background(), base, method, path, token, body, nil)
}

func doCtx(t *testing.T, ctx context.Context, base, method, path, token, body string, hdr http.Header) result {
	t.Helper()
	r, err := send(ctx, base, method, path, token, body, hdr)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// send is doCtx for goroutines other than the test's: it reports instead
// of failing the test.
func send(ctx context.Context, base, method, path, token, body string, hdr http.Header) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return result{}, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return result{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, fmt.Errorf("%s %s: reading body: %w", method, path, err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// put stores an object directly in a fake store, bypassing HTTP.
func (f *fakeStore) put(t *testing.T, kind fsm.Kind, name, spec string) uint64 {
	t.Helper()
	idx, err := f.Apply(context.Background(), fsm.PutCommand(fsm.Object{Kind: kind, Name: name, Spec: json.RawMessage(spec)}, nil))
	if err != nil {
		t.Fatalf("put %s/%s: %v", kind, name, err)
	}
	return idx
}

// putPrereqs stores what a route refers to.
func (f *fakeStore) putPrereqs(t *testing.T) {
	t.Helper()
	f.put(t, fsm.KindListener, "web", validSpecs[fsm.KindListener])
	f.put(t, fsm.KindPool, "app", validSpecs[fsm.KindPool])
}

// jsonEqual compares two JSON documents by value.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%q: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, what, cond)
}
