package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

// versionBackend answers "NAME" with status 200, or 500 while failing is set.
type versionBackend struct {
	name    string
	srv     *httptest.Server
	failing atomic.Bool
}

func startVersion(t *testing.T, name string, failing bool) *versionBackend {
	t.Helper()
	b := &versionBackend{name: name}
	b.failing.Store(failing)
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if b.failing.Load() {
			http.Error(w, b.name+" failing", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, b.name)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// rolloutSetup makes listener web on port, pools v1 (stable) and v2
// (canary) and route app on v1, and waits until every node serves it.
func rolloutSetup(t *testing.T, c *Cluster, port int, canaryFails bool) {
	t.Helper()
	v1, v2 := startVersion(t, "v1", false), startVersion(t, "v2", canaryFails)
	leader := c.Leader(30 * time.Second)
	c.putJSON(t, leader, "listeners", "web", map[string]any{"port": port})
	c.putJSON(t, leader, "pools", "v1", poolOf(v1.srv.Listener.Addr().String()))
	c.putJSON(t, leader, "pools", "v2", poolOf(v2.srv.Listener.Addr().String()))
	c.putJSON(t, leader, "routes", "app", map[string]any{"listener": "web", "action": map[string]any{"split": []map[string]any{{"pool": "v1", "weight": 100}}}})
	client := newProxyClient(nil)
	for _, a := range c.Agents {
		waitServes(t, client, a, port, "/", func(b string) bool { return b == "v1" }, "v1")
	}
}

// rolloutItem is GET /v1/rollouts/NAME.
type rolloutItem struct {
	Spec   fsm.RolloutSpec    `json:"spec"`
	Status *fsm.RolloutStatus `json:"status"`
}

// rolloutStatus reads rollout name's status from agent a.
func (c *Cluster) rolloutStatus(a *Agent, name string) (*fsm.RolloutStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := c.Do(ctx, a, "GET", "/v1/rollouts/"+name, nil)
	if err != nil {
		return nil, err
	}
	if r.Status != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/rollouts/%s on %s: %d %s", name, a.ID, r.Status, r.Body)
	}
	var it rolloutItem
	if err := json.Unmarshal(r.Body, &it); err != nil {
		return nil, err
	}
	if it.Status == nil {
		return nil, fmt.Errorf("rollout %s has no status", name)
	}
	return it.Status, nil
}

// waitRollout polls the live agents until rollout name's status satisfies
// ok, and returns it.
func (c *Cluster) waitRollout(t *testing.T, live func() []*Agent, name string, within time.Duration, what string, ok func(*fsm.RolloutStatus) bool) *fsm.RolloutStatus {
	t.Helper()
	var got *fsm.RolloutStatus
	testutil.Eventually(t, within, what, func() error {
		var last error
		for _, a := range live() {
			st, err := c.rolloutStatus(a, name)
			if err != nil {
				last = err
				continue
			}
			if ok(st) {
				got = st
				return nil
			}
			last = fmt.Errorf("state %s step %d weight %d", st.State, st.Step, st.Weight)
		}
		return last
	})
	return got
}

// load sends GET / to the live agents' listeners from a few workers,
// round robin, each at most one request per loadPace, until it is
// stopped, has sent max requests or ran for maxFor, and counts what
// answered.
type load struct {
	sent, ok, failed, errs atomic.Int64
	byNode                 sync.Map // agent id -> *atomic.Int64
	byPool                 sync.Map // body -> *atomic.Int64
	stop                   context.CancelFunc
	done                   sync.WaitGroup
	started                time.Time
}

// loadPace keeps each worker at or below 200 requests a second, so that a
// test does not take the shared machine's cores for itself.
const loadPace = 5 * time.Millisecond

func startLoad(t *testing.T, live func() []*Agent, port, workers int, max int64, maxFor time.Duration) *load {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), maxFor)
	l := &load{stop: cancel, started: time.Now()}
	t.Cleanup(l.halt)
	for w := range workers {
		client := newProxyClient(nil)
		client.Timeout = 2 * time.Second
		l.done.Go(func() {
			pace := time.NewTicker(loadPace)
			defer pace.Stop()
			for i := w; ctx.Err() == nil; i++ {
				select {
				case <-ctx.Done():
					return
				case <-pace.C:
				}
				if l.sent.Add(1) > max {
					l.sent.Add(-1)
					return
				}
				agents := live()
				a := agents[i%len(agents)]
				code, body, err := get(client, proxyURL(a, port, "/"))
				switch {
				case err != nil:
					l.errs.Add(1)
					continue
				case code == http.StatusOK:
					l.ok.Add(1)
				case code >= 500:
					l.failed.Add(1)
				}
				counter(&l.byNode, a.ID).Add(1)
				counter(&l.byPool, strings.Fields(body + " ?")[0]).Add(1)
			}
		})
	}
	return l
}

func counter(m *sync.Map, k string) *atomic.Int64 {
	v, _ := m.LoadOrStore(k, new(atomic.Int64))
	return v.(*atomic.Int64)
}

// halt stops the workers and waits for them.
func (l *load) halt() {
	l.stop()
	l.done.Wait()
}

func (l *load) count(m *sync.Map, k string) int64 {
	if v, ok := m.Load(k); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// waitSplit polls agent a until its route app splits v1:v2 as wanted.
func (c *Cluster) waitSplit(t *testing.T, a *Agent, v1, v2 int) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, fmt.Sprintf("%s to split route app %d:%d", a.ID, v1, v2), func() error {
		cfg, _, err := c.Config(a)
		if err != nil {
			return err
		}
		var spec fsm.RouteSpec
		if err := json.Unmarshal(cfg["route/app"], &spec); err != nil {
			return err
		}
		got := map[string]int{}
		for _, wp := range spec.Action.Split {
			got[wp.Pool] = wp.Weight
		}
		if got["v1"] != v1 || got["v2"] != v2 {
			return fmt.Errorf("split %v", got)
		}
		return nil
	})
}

// checkHistory checks that the finished steps are 0..n-1, each once and in
// order, with the result want.
func checkHistory(t *testing.T, st *fsm.RolloutStatus, steps []int, n int, want string) {
	t.Helper()
	if len(st.History) != n {
		t.Fatalf("history has %d steps, want %d: %+v", len(st.History), n, st.History)
	}
	for i, h := range st.History {
		if h.Step != i || h.Weight != steps[i] || h.Result != want && !(i == n-1 && want == "") {
			t.Fatalf("history[%d] = step %d weight %d %s, want step %d weight %d %s (all: %+v)", i, h.Step, h.Weight, h.Result, i, steps[i], want, st.History)
		}
		if i > 0 && h.Index <= st.History[i-1].Index {
			t.Fatalf("history[%d] committed at index %d, not after %d", i, h.Index, st.History[i-1].Index)
		}
	}
}

// waitOnly polls agent a's listener until 20 requests in a row are
// answered 200 by backend want: the node's data plane serves the new split.
func waitOnly(t *testing.T, client *http.Client, a *Agent, port int, want string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, fmt.Sprintf("%s to send everything to %s", a.ID, want), func() error {
		for range 20 {
			code, body, err := get(client, proxyURL(a, port, "/"))
			if err != nil {
				return err
			}
			if code != http.StatusOK || body != want {
				return fmt.Errorf("%d %q", code, body)
			}
		}
		return nil
	})
}
