package dataplane

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// TestStickySplitThroughTheProxy: a sticky user stays on the canary as its
// weight grows, and without a key every run of requests is split in the
// legs' proportions; PoolCounts sees both pools.
func TestStickySplitThroughTheProxy(t *testing.T) {
	answer := func(name string) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) }
	}
	v1, v2 := newBackend(t, answer("v1")), newBackend(t, answer("v2"))
	split := func(index uint64, canary int) *fsm.Config {
		return config{
			index:     index,
			listeners: map[string]fsm.ListenerSpec{"web": {Port: 0}},
			pools: map[string]fsm.PoolSpec{"v1": {Backends: []fsm.Backend{{Addr: v1.addr}}},
				"v2": {Backends: []fsm.Backend{{Addr: v2.addr}}}},
			routes: map[string]fsm.RouteSpec{"app": {Listener: "web", Action: fsm.RouteAction{
				Split:  []fsm.WeightedPool{{Pool: "v1", Weight: 100 - canary}, {Pool: "v2", Weight: canary}},
				Sticky: &fsm.Sticky{Header: "X-User"}}}},
		}.build()
	}
	src := newFakeSource(split(1, 10))
	d := startDataplane(t, src, nil)
	client := &http.Client{Timeout: 5 * time.Second}
	ask := func(user string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+d.ListenerAddr("web")+"/", nil)
		if user != "" {
			req.Header.Set("X-User", user)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	users := make([]string, 200)
	onCanary := map[string]bool{}
	for i := range users {
		users[i] = fmt.Sprintf("user-%d", i)
		onCanary[users[i]] = ask(users[i]) == "v2"
		if again := ask(users[i]) == "v2"; again != onCanary[users[i]] {
			t.Fatalf("%s moved between two requests", users[i])
		}
	}
	canary := 0
	for range 200 {
		if ask("") == "v2" {
			canary++
		}
	}
	if canary < 17 || canary > 23 {
		t.Fatalf("%d of 200 unkeyed requests on a 10%% canary", canary)
	}
	src.Set(split(2, 50))
	waitFor(t, "the 50% table", func() bool { return d.table.Load().index == 2 })
	for _, u := range users {
		if onCanary[u] && ask(u) != "v2" {
			t.Fatalf("%s left the canary as it grew", u)
		}
	}
	counts := d.PoolCounts("app")
	if len(counts) != 2 || counts[0].Requests == 0 || counts[1].Requests == 0 {
		t.Fatalf("PoolCounts = %+v", counts)
	}
}
