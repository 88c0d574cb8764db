package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rafterlb/rafter/internal/systemtest"
	"github.com/rafterlb/rafter/internal/testutil"
)

const roToken = "dashboard-read-only"

// rig is a 3-node cluster proxying one route to three backends (one per
// zone), with one VIP, some traffic served, and a browser.
type rig struct {
	t        *testing.T
	c        *systemtest.Cluster
	leader   *systemtest.Agent
	port     int
	backends []string // addresses, one per zone a, b, c
}

func startRig(t *testing.T) *rig {
	t.Helper()
	c := systemtest.StartClusterWith(t, bin, 3, "--read-only-token", roToken)
	r := &rig{t: t, c: c, leader: c.Leader(30 * time.Second)}
	ports, err := testutil.FreePorts([]string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	r.port = ports[0]
	var backends []string
	for i, zone := range []string{"a", "b", "c"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			fmt.Fprintf(w, "backend %d in zone %s\n", i, zone)
		}))
		t.Cleanup(srv.Close)
		r.backends = append(r.backends, srv.Listener.Addr().String())
		backends = append(backends, fmt.Sprintf(`{"addr": %q, "zone": %q}`, srv.Listener.Addr().String(), zone))
	}
	r.put("/v1/listeners/web", fmt.Sprintf(`{"port": %d}`, r.port))
	r.put("/v1/pools/app", `{"zone_aware": true, "health_check": {"path": "/healthz", "interval": "1s"}, "backends": [`+
		backends[0]+","+backends[1]+","+backends[2]+`]}`)
	r.put("/v1/routes/app", `{"listener": "web", "match": {"path": {"prefix": "/"}}, "action": {"split": [{"pool": "app", "weight": 100}]}}`)
	r.put("/v1/vips/edge-a", `{"provider": "none", "home_node": "n1"}`)
	r.traffic(60)
	return r
}

// put writes through the leader and fails the test unless it applied.
func (r *rig) put(path, body string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := r.c.Do(ctx, r.leader, "PUT", path, []byte(body))
	if err != nil || resp.Status != 200 {
		r.t.Fatalf("PUT %s: %v %+v", path, err, resp)
	}
}

// traffic sends n requests, spread over the nodes' proxies, once every
// node serves the route.
func (r *rig) traffic(n int) {
	r.t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	get := func(a *systemtest.Agent) error {
		resp, err := client.Get("http://" + a.IP + ":" + strconv.Itoa(r.port) + "/hello")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s answered %d", a.ID, resp.StatusCode)
		}
		return nil
	}
	for _, a := range r.c.Agents {
		testutil.Eventually(r.t, 20*time.Second, a.ID+" proxies the route", func() error { return get(a) })
	}
	for i := 0; i < n; i++ {
		if err := get(r.c.Agents[i%len(r.c.Agents)]); err != nil {
			r.t.Fatal(err)
		}
	}
}

// currentLeader is the leader's id as the page's node knows it now.
func (r *rig) currentLeader() string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := r.c.Do(ctx, r.leader, "GET", "/v1/status", nil)
	if err != nil {
		return ""
	}
	return resp.Leader
}

// get reads path from the page's node into v.
func (r *rig) get(path string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := r.c.Do(ctx, r.leader, "GET", path, nil)
	if err != nil {
		return err
	}
	if resp.Status != 200 {
		return fmt.Errorf("GET %s: %d %s", path, resp.Status, resp.Body)
	}
	return json.Unmarshal(resp.Body, v)
}

// zoneEvacuated asks the API (not the page) whether zone is evacuated.
func (r *rig) zoneEvacuated(a *systemtest.Agent, zone string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := r.c.Do(ctx, a, "GET", "/v1/zones/"+zone, nil)
	if err != nil {
		return false, err
	}
	if resp.Status != 200 {
		return false, fmt.Errorf("GET /v1/zones/%s: %d %s", zone, resp.Status, resp.Body)
	}
	var z struct {
		Evacuated bool `json:"evacuated"`
	}
	return z.Evacuated, json.Unmarshal(resp.Body, &z)
}

// signIn opens the dashboard of agent a and signs in with token.
func signIn(t testing.TB, b *browser, a *systemtest.Agent, token string) {
	t.Helper()
	b.run(t, 60*time.Second, "open the dashboard and sign in",
		chromedp.Navigate(a.URL()+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#app")),
	)
}

// show switches the page to view and waits for sel to be visible in it.
func show(t testing.TB, b *browser, view, sel string) {
	t.Helper()
	b.run(t, 20*time.Second, "show "+view,
		chromedp.Click(chromedp.CSS(`nav a[data-view="`+view+`"]`)),
		chromedp.WaitVisible(chromedp.CSS("#view-"+view)),
		chromedp.WaitVisible(chromedp.CSS(sel)),
	)
}

// waitJS waits until the expression is true in the page.
func waitJS(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Poll[bool](expr)(ctx, t)
		return err
	})
}

// noProblems fails the test for every problem the page reported. With
// writesMayRetry, a write answered 503 (no leader for a moment: the
// shared test machine can stall a leader past its lease) is logged
// instead: the page tries such a write again, and the test checks
// through the API that the write took effect.
func noProblems(t *testing.T, b *browser, writesMayRetry bool) {
	t.Helper()
	for _, p := range b.problems() {
		if writesMayRetry && strings.Contains(p, "status of 503 (Service Unavailable)") {
			t.Logf("page (retried): %s", p)
			continue
		}
		t.Errorf("page: %s", p)
	}
}

// TestDashboard drives the dashboard of a real 3-node cluster in
// chromium: it loads without console errors and shows the three members
// and the leader; each view is captured; a zone evacuation and its
// restore, a VIP move and a backend drain from the page take effect
// (checked through the API); a read-only token is offered no action; and after kill -9 of a follower
// the page, without a reload, shows it unhealthy within 3 s.
func TestDashboard(t *testing.T) {
	r := startRig(t)
	dir := artifacts(t)
	b := newBrowser(t)
	signIn(t, b, r.leader, r.c.Token)

	t.Run("members and leader", func(t *testing.T) {
		b.run(t, 20*time.Second, "three members, one leader",
			chromedp.WaitVisible(chromedp.CSS(`#members tbody tr[data-member="n3"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#members tbody tr[data-leader="true"]`)),
		)
		n, err := eval[int](b, `document.querySelectorAll("#members tbody tr[data-member]").length`)
		if err != nil || n != 3 {
			t.Fatalf("member rows: %d, %v; want 3", n, err)
		}
		// The page names the leader the API names (polled: on a loaded
		// machine an election may move it meanwhile).
		testutil.Eventually(t, 20*time.Second, "the page shows the API's leader", func() error {
			leader := r.currentLeader()
			shown, err := eval[string](b, `(document.querySelector('#members tbody tr[data-leader="true"]') || {dataset: {}}).dataset.member || ""`)
			if err != nil {
				return err
			}
			line, err := eval[string](b, `document.querySelector("#leader").textContent`)
			if err != nil {
				return err
			}
			if shown != leader || !strings.HasPrefix(line, "leader "+leader+",") {
				return fmt.Errorf("page shows leader %q (%q), the API says %q", shown, line, leader)
			}
			return nil
		})
		b.run(t, 20*time.Second, "three healthy members",
			waitJS(`document.querySelectorAll('#members tbody tr[data-health="healthy"]').length === 3`))
	})

	t.Run("screenshots", func(t *testing.T) {
		show(t, b, "members", `#members tbody tr[data-member="n1"]`)
		t.Logf("saved %s", b.screenshot(t, dir, "members"))
		show(t, b, "vips", `#vips tbody tr[data-vip="edge-a"]`)
		t.Logf("saved %s", b.screenshot(t, dir, "vips"))
		show(t, b, "pools", `#pools [data-pool="app"] td[data-node="n3"] .badge`)
		t.Logf("saved %s", b.screenshot(t, dir, "pools"))
		// Traffic while the page watches: the route's rate over the
		// cluster comes from every node's counters.
		show(t, b, "routes", `#routes tbody tr[data-route="app"]`)
		r.traffic(90)
		b.run(t, 20*time.Second, "route app shows traffic",
			chromedp.WaitVisible(chromedp.CSS(`#routes tbody tr[data-route="app"]:not([data-rps="0"])`)))
		p99, err := eval[string](b, `document.querySelector('#routes tbody tr[data-route="app"] td:last-child').textContent`)
		if err != nil || !strings.HasSuffix(p99, " ms") {
			t.Errorf("p99 of route app: %q, %v; want a time in ms", p99, err)
		}
		// And per backend, summed over the nodes the same way.
		b.run(t, 20*time.Second, "a backend of pool app shows traffic",
			chromedp.WaitVisible(chromedp.CSS(`#backend-rates tbody tr[data-backend^="app/"]:not([data-rps="0"])`)))
		bp99, err := eval[string](b, `document.querySelector('#backend-rates tbody tr[data-backend^="app/"]:not([data-rps="0"]) td:last-child').textContent`)
		if err != nil || !strings.HasSuffix(bp99, " ms") {
			t.Errorf("p99 of a backend of pool app: %q, %v; want a time in ms", bp99, err)
		}
		if n, err := eval[int](b, `document.querySelectorAll('#backend-rates tbody tr[data-backend^="app/"]').length`); err != nil || n != len(r.backends) {
			t.Errorf("backend rows of pool app: %d, %v; want %d", n, err, len(r.backends))
		}
		t.Logf("saved %s", b.screenshot(t, dir, "routes"))
		show(t, b, "history", `#history tbody tr`)
		t.Logf("saved %s", b.screenshot(t, dir, "history"))
		// Loading the page and every view reported nothing.
		noProblems(t, b, false)
	})

	t.Run("evacuate and restore a zone", func(t *testing.T) {
		show(t, b, "pools", `#zones button[data-action="evacuate"][data-zone="c"]`)
		clickNow(t, b, `#zones button[data-action="evacuate"][data-zone="c"]`)
		b.run(t, 20*time.Second, "evacuate zone c",
			chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
			chromedp.Click(chromedp.CSS("#confirm-ok")),
		)
		for _, a := range r.c.Agents {
			testutil.Eventually(t, 30*time.Second, "zone c evacuated on "+a.ID, func() error {
				ev, err := r.zoneEvacuated(a, "c")
				if err == nil && !ev {
					err = fmt.Errorf("zone c not evacuated")
				}
				return err
			})
		}
		b.run(t, 20*time.Second, "the page shows zone c evacuated",
			chromedp.WaitVisible(chromedp.CSS(`#zones tr[data-zone="c"][data-evacuated="true"]`)))
		t.Logf("saved %s", b.screenshot(t, dir, "pools-evacuated"))
		b.run(t, 20*time.Second, "the restore button",
			chromedp.WaitVisible(chromedp.CSS(`#zones button[data-action="restore"][data-zone="c"]`)))
		clickNow(t, b, `#zones button[data-action="restore"][data-zone="c"]`)
		b.run(t, 20*time.Second, "restore zone c",
			chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
			chromedp.Click(chromedp.CSS("#confirm-ok")),
			chromedp.WaitVisible(chromedp.CSS(`#zones tr[data-zone="c"][data-evacuated="false"]`)),
		)
		testutil.Eventually(t, 30*time.Second, "zone c restored", func() error {
			ev, err := r.zoneEvacuated(r.leader, "c")
			if err == nil && ev {
				err = fmt.Errorf("zone c still evacuated")
			}
			return err
		})
	})

	t.Run("move a VIP", func(t *testing.T) {
		show(t, b, "vips", `#vips tr[data-vip="edge-a"] button[data-action="move-vip"]`)
		var before struct {
			Assignment struct {
				Holder string `json:"holder"`
			} `json:"assignment"`
		}
		if err := r.get("/v1/vips/edge-a", &before); err != nil {
			t.Fatal(err)
		}
		to := "n3"
		if before.Assignment.Holder == to {
			to = "n2"
		}
		// Choosing the target and pressing Move in one step: the row is
		// redrawn when the configuration changes.
		moved, err := eval[bool](b, `(() => {
			const row = document.querySelector('#vips tr[data-vip="edge-a"]');
			row.querySelector('select[data-action="vip-target"]').value = "`+to+`";
			row.querySelector('button[data-action="move-vip"]').click();
			return true;
		})()`)
		if err != nil || !moved {
			t.Fatalf("choosing %s and pressing Move: %v", to, err)
		}
		b.run(t, 20*time.Second, "confirm the move",
			chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
			chromedp.Click(chromedp.CSS("#confirm-ok")),
		)
		testutil.Eventually(t, 30*time.Second, "edge-a assigned to "+to, func() error {
			var item struct {
				Assignment struct {
					Holder string `json:"holder"`
					Reason string `json:"reason"`
				} `json:"assignment"`
			}
			if err := r.get("/v1/vips/edge-a", &item); err != nil {
				return err
			}
			if item.Assignment.Holder != to || item.Assignment.Reason != "operator" {
				return fmt.Errorf("assignment %+v", item.Assignment)
			}
			return nil
		})
		b.run(t, 20*time.Second, "the move on the timeline",
			chromedp.WaitVisible(chromedp.CSS(`#vips tr[data-vip="edge-a"]`)),
			waitJS(`[...document.querySelectorAll("#vip-moves li")].some(li => li.textContent.includes("→ `+to+` (operator)"))`))
		t.Logf("saved %s", b.screenshot(t, dir, "vips-moved"))
	})

	t.Run("drain a backend", func(t *testing.T) {
		addr := r.backends[1]
		sel := `#pools [data-pool="app"] tr[data-backend="` + addr + `"] button[data-action="drain"]`
		show(t, b, "pools", sel)
		clickNow(t, b, sel)
		b.run(t, 20*time.Second, "drain "+addr,
			chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
			chromedp.Click(chromedp.CSS("#confirm-ok")),
			chromedp.WaitVisible(chromedp.CSS(`#pools [data-pool="app"] tr[data-backend="`+addr+`"] button[data-action="undrain"]`)),
		)
		var item struct {
			Spec struct {
				Backends []struct {
					Addr  string `json:"addr"`
					Drain bool   `json:"drain"`
				} `json:"backends"`
			} `json:"spec"`
		}
		if err := r.get("/v1/pools/app", &item); err != nil {
			t.Fatal(err)
		}
		for _, be := range item.Spec.Backends {
			if (be.Addr == addr) != be.Drain {
				t.Errorf("backend %s drain %v after draining %s", be.Addr, be.Drain, addr)
			}
		}
	})

	t.Run("read-only token is offered no action", func(t *testing.T) {
		ro := b.tab()
		signIn(t, ro, r.leader, roToken)
		for view, sel := range map[string]string{
			"members": `#members tbody tr[data-member="n1"]`,
			"vips":    `#vips tbody tr[data-vip="edge-a"]`,
			"pools":   `#zones tbody tr[data-zone="c"]`,
			"routes":  `#routes tbody tr[data-route="app"]`,
			"history": `#history tbody tr`,
		} {
			show(t, ro, view, sel)
		}
		show(t, ro, "pools", `#pools [data-pool="app"] tr[data-backend]`)
		n, err := eval[int](ro, `document.querySelectorAll("[data-action], #confirm[open]").length`)
		if err != nil || n != 0 {
			t.Fatalf("read-only page offers %d actions (%v), want none", n, err)
		}
		access, err := eval[string](ro, `document.querySelector("#access").textContent`)
		if err != nil || !strings.HasPrefix(access, "read-only token") {
			t.Fatalf("access line %q, %v", access, err)
		}
		t.Logf("saved %s", ro.screenshot(t, dir, "pools-read-only"))
		noProblems(t, ro, false)
	})

	t.Run("killed follower shown unhealthy within 3s", func(t *testing.T) {
		show(t, b, "members", `#members tbody tr[data-member="n1"]`)
		// A follower that does not serve the page.
		leader := r.currentLeader()
		var follower *systemtest.Agent
		for _, a := range r.c.Agents {
			if a != r.leader && a.ID != leader {
				follower = a
				break
			}
		}
		origin, err := eval[float64](b, `performance.timeOrigin`)
		if err != nil {
			t.Fatal(err)
		}
		r.c.Kill(follower)
		killed := time.Now()
		b.run(t, 30*time.Second, follower.ID+" shown unhealthy",
			chromedp.WaitVisible(chromedp.CSS(`#members tbody tr[data-member="`+follower.ID+`"][data-health="unhealthy"]`)))
		took := time.Since(killed)
		t.Logf("%s shown unhealthy %v after kill -9", follower.ID, took.Round(time.Millisecond))
		if took > 3*time.Second {
			t.Errorf("%s shown unhealthy %v after kill -9, want within 3s", follower.ID, took)
		}
		after, err := eval[float64](b, `performance.timeOrigin`)
		if err != nil || after != origin {
			t.Fatalf("the page reloaded (time origin %v → %v, %v)", origin, after, err)
		}
		t.Logf("saved %s", b.screenshot(t, dir, "members-follower-killed"))

		// The cluster health view names the node that did not answer.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := r.c.Do(ctx, r.leader, "GET", "/v1/health/cluster?timeout=1s", nil)
		if err != nil || resp.Status != 200 {
			t.Fatalf("GET /v1/health/cluster: %v %+v", err, resp)
		}
		var ch struct {
			Nodes []struct {
				Node    string            `json:"node"`
				Error   string            `json:"error"`
				Targets []json.RawMessage `json:"targets"`
			} `json:"nodes"`
		}
		if err := json.Unmarshal(resp.Body, &ch); err != nil {
			t.Fatal(err)
		}
		for _, n := range ch.Nodes {
			switch {
			case n.Node == follower.ID && n.Error == "":
				t.Errorf("killed %s has no error entry: %s", n.Node, resp.Body)
			case n.Node != follower.ID && (n.Error != "" || len(n.Targets) != 3):
				t.Errorf("%s: error %q, %d targets; want its 3 verdicts", n.Node, n.Error, len(n.Targets))
			}
		}
	})

	noProblems(t, b, true)
}

// clickNow clicks the element sel finds, looked up and clicked in one
// step: the tables are redrawn when the configuration changes, and a
// click that looks its element up first can find it gone (chromedp's
// "Could not find node with given id").
func clickNow(t *testing.T, b *browser, sel string) {
	t.Helper()
	clicked, err := eval[bool](b, `(() => {
		const el = document.querySelector(`+strconv.Quote(sel)+`);
		if (!el) return false;
		el.click();
		return true;
	})()`)
	if err != nil || !clicked {
		t.Fatalf("clicking %s: found %v, %v", sel, clicked, err)
	}
}
