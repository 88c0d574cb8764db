package systemtest

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// leg is one weighted pool of a route's split.
type leg struct {
	pool   string
	weight int
}

// routeSpec is a proxying route on listener web whose headers_add carries
// the revision and the route's name, which the test backends echo.
func routeSpec(prefix, name string, rev int, legs ...leg) map[string]any {
	var split []map[string]any
	for _, l := range legs {
		split = append(split, map[string]any{"pool": l.pool, "weight": l.weight})
	}
	return map[string]any{
		"listener":    "web",
		"match":       map[string]any{"path": map[string]any{"prefix": prefix}},
		"headers_add": map[string]string{"X-Rev": strconv.Itoa(rev), "X-Route": name},
		"action":      map[string]any{"split": split},
	}
}

func poolOf(addrs ...string) map[string]any {
	var bs []map[string]any
	for _, a := range addrs {
		bs = append(bs, map[string]any{"addr": a})
	}
	return map[string]any{"backends": bs}
}

// routeChange is one write of the route-change sequence and what a node
// serves once it applied it.
type routeChange struct {
	what   string
	do     func(t *testing.T, c *Cluster, a *Agent) // sends the write through a
	path   string                                   // the proxied path that shows the change
	expect func(body string) bool
}

// routeScenario sets up listener web, pools v1 and v2 and route main (to
// v1, rev 0) and returns the changes to apply: the split moves between v1
// and v2, route extra on /extra/ comes and goes, headers_add changes with
// every write (the revision).
func routeScenario(t *testing.T, c *Cluster, port int) func(base int) []routeChange {
	t.Helper()
	v1, v2 := startBackend(t, "v1"), startBackend(t, "v2")
	leader := c.Leader(30 * time.Second)
	c.putJSON(t, leader, "listeners", "web", map[string]any{"port": port})
	c.putJSON(t, leader, "pools", "v1", poolOf(v1.Addr()))
	c.putJSON(t, leader, "pools", "v2", poolOf(v2.Addr()))
	c.putJSON(t, leader, "routes", "main", routeSpec("/", "main", 0, leg{"v1", 100}))

	mainIs := func(rev int, backends ...string) func(string) bool {
		return func(body string) bool {
			var ps []string
			for _, b := range backends {
				ps = append(ps, fmt.Sprintf("%s rev=%d route=main", b, rev))
			}
			return hasPrefixes(body, ps...)
		}
	}
	split := func(rev int, legs ...leg) routeChange {
		var names []string
		for _, l := range legs {
			names = append(names, l.pool)
		}
		return routeChange{
			what: fmt.Sprintf("rev %d: main split %v", rev, legs),
			do: func(t *testing.T, c *Cluster, a *Agent) {
				c.putJSON(t, a, "routes", "main", routeSpec("/", "main", rev, legs...))
			},
			path: "/app", expect: mainIs(rev, names...),
		}
	}
	addExtra := func(rev int, pool string) routeChange {
		return routeChange{
			what: fmt.Sprintf("rev %d: add route extra to %s", rev, pool),
			do: func(t *testing.T, c *Cluster, a *Agent) {
				c.putJSON(t, a, "routes", "extra", routeSpec("/extra/", "extra", rev, leg{pool, 100}))
			},
			path: "/extra/x", expect: func(b string) bool { return b == fmt.Sprintf("%s rev=%d route=extra", pool, rev) },
		}
	}
	// Removing extra sends /extra/ back to main, whose revision is mainRev.
	delExtra := func(mainRev int, backends ...string) routeChange {
		return routeChange{
			what: "delete route extra",
			do: func(t *testing.T, c *Cluster, a *Agent) {
				c.write(t, a, "DELETE", "/v1/routes/extra", nil)
			},
			path: "/extra/x", expect: mainIs(mainRev, backends...),
		}
	}
	// Revisions are base+1..base+10; the sequence ends as it starts (no
	// route extra) with main at v2, revision base+10.
	return func(base int) []routeChange {
		return []routeChange{
			split(base+1, leg{"v1", 50}, leg{"v2", 50}),
			addExtra(base+2, "v2"),
			split(base+3, leg{"v2", 100}),
			split(base+4, leg{"v2", 100}), // headers_add only
			delExtra(base+4, "v2"),
			split(base+6, leg{"v1", 100}),
			addExtra(base+7, "v1"),
			split(base+8, leg{"v1", 30}, leg{"v2", 70}),
			delExtra(base+8, "v1", "v2"),
			split(base+10, leg{"v2", 100}),
		}
	}
}

// propagate applies ch through agent a and returns how long after the
// acknowledgement each node took to serve it (the slowest node's time).
func propagate(t *testing.T, c *Cluster, client *http.Client, port int, a *Agent, ch routeChange) time.Duration {
	t.Helper()
	ch.do(t, c, a)
	acked := time.Now()
	pending := map[*Agent]bool{}
	for _, n := range c.Agents {
		pending[n] = true
	}
	var slowest time.Duration
	last := map[*Agent]string{}
	// Generous: the target is ~100 ms; this only proves it arrives at all.
	const bound = 5 * time.Second
	for i := 0; i < 5000 && len(pending) > 0 && time.Since(acked) < bound; i++ {
		for n := range pending {
			code, body, err := get(client, proxyURL(n, port, ch.path))
			if err == nil && code == http.StatusOK && ch.expect(body) {
				slowest = max(slowest, time.Since(acked))
				delete(pending, n)
				continue
			}
			last[n] = fmt.Sprintf("%d %q %v", code, body, err)
		}
		if len(pending) > 0 {
			time.Sleep(5 * time.Millisecond) // polling interval
		}
	}
	for n := range pending {
		t.Errorf("%s: %s did not serve it within %s of the acknowledgement; last answer %s", ch.what, n.ID, bound, last[n])
	}
	return slowest
}

// TestRouteChangesUnderLoad applies route changes through the API while
// keep-alive clients load all three nodes: no request may fail and no
// client connection may be dropped.
func TestRouteChangesUnderLoad(t *testing.T) {
	c := StartCluster(t, bin, 3)
	port := dataPort(t, c.Agents)
	changes := routeScenario(t, c, port)(0)
	probe := newProxyClient(nil)
	for _, a := range c.Agents {
		waitServes(t, probe, a, port, "/app", func(b string) bool { return b == "v1 rev=0 route=main" }, "rev 0")
	}

	const workers, perWorker, minPerChange = 4, 60000, 200
	const loadBound = 20 * time.Second
	var (
		dials, requests, failures atomic.Int64
		mu                        sync.Mutex
		firstFailures             []string
		cappedEarly               atomic.Bool
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	loadStart := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := newProxyClient(&dials)
			defer client.CloseIdleConnections()
			paths := []string{"/app", "/extra/x"}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if i == perWorker || time.Since(loadStart) > loadBound {
					cappedEarly.Store(true)
					return
				}
				a := c.Agents[(i+w)%len(c.Agents)]
				code, body, err := get(client, proxyURL(a, port, paths[i%2]))
				requests.Add(1)
				if err == nil && code >= 200 && code < 300 {
					continue
				}
				failures.Add(1)
				mu.Lock()
				if len(firstFailures) < 10 {
					firstFailures = append(firstFailures, fmt.Sprintf("%s %s: %d %q %v", a.ID, paths[i%2], code, body, err))
				}
				mu.Unlock()
			}
		}()
	}

	var prop []time.Duration
	for i, ch := range changes {
		// Writes go to every node in turn: followers forward them.
		prop = append(prop, propagate(t, c, probe, port, c.Agents[i%len(c.Agents)], ch))
		// Let the load run on each version before the next swap, so that
		// every swap happens between requests of every worker.
		mark := requests.Load()
		testutil.Eventually(t, 10*time.Second, "the load to go on after "+ch.what, func() error {
			if n := requests.Load() - mark; n < minPerChange {
				return fmt.Errorf("%d requests since the change", n)
			}
			return nil
		})
	}
	final := func(b string) bool { return b == "v2 rev=10 route=main" }
	for _, a := range c.Agents {
		waitServes(t, probe, a, port, "/app", final, "the final version")
		waitServes(t, probe, a, port, "/extra/x", final, "the final version")
	}
	close(stop)
	wg.Wait()
	elapsed := time.Since(loadStart)

	t.Logf("load: %d workers, %d requests in %s across 3 nodes, %d failed, %d client connections opened",
		workers, requests.Load(), elapsed.Round(time.Millisecond), failures.Load(), dials.Load())
	t.Logf("propagation under load over %d changes (ack to all 3 nodes serving): p50 %s, max %s",
		len(prop), percentile(prop, 50).Round(time.Millisecond), percentile(prop, 100).Round(time.Millisecond))
	if cappedEarly.Load() {
		t.Errorf("the load ended (at %d requests per worker or %s) before the changes were done: the swaps were not all under load", perWorker, loadBound)
	}
	if n := failures.Load(); n != 0 {
		t.Errorf("%d of %d requests failed during route changes; first: %s", n, requests.Load(), strings.Join(firstFailures, "; "))
	}
	// Each worker holds one keep-alive connection per node; a connection
	// closed by a swap would have been dialled again.
	if got, want := dials.Load(), int64(workers*len(c.Agents)); got != want {
		t.Errorf("clients opened %d connections, want %d (one per worker and node): keep-alive connections were dropped", got, want)
	}

	// Every node serves only the final version now.
	for _, a := range c.Agents {
		for _, path := range []string{"/app", "/extra/x"} {
			for i := 0; i < 10; i++ {
				code, body, err := get(probe, proxyURL(a, port, path))
				if err != nil || code != http.StatusOK || !final(body) {
					t.Fatalf("%s %s after the last change: %d %q %v", a.ID, path, code, body, err)
				}
			}
		}
	}
}

// TestRouteChangePropagation measures, for each acknowledged write, the
// time until all three nodes' proxies serve it.
func TestRouteChangePropagation(t *testing.T) {
	c := StartCluster(t, bin, 3)
	port := dataPort(t, c.Agents)
	changes := routeScenario(t, c, port)
	probe := newProxyClient(nil)
	for _, a := range c.Agents {
		waitServes(t, probe, a, port, "/app", func(b string) bool { return b == "v1 rev=0 route=main" }, "rev 0")
	}
	var prop []time.Duration
	for round := 0; round < 3; round++ {
		for i, ch := range changes(10 * round) {
			prop = append(prop, propagate(t, c, probe, port, c.Agents[i%len(c.Agents)], ch))
		}
	}
	t.Logf("propagation over %d writes (ack to all 3 nodes serving, 5 ms polling): p50 %s, p90 %s, max %s",
		len(prop), percentile(prop, 50).Round(time.Millisecond), percentile(prop, 90).Round(time.Millisecond),
		percentile(prop, 100).Round(time.Millisecond))
}

// TestGracefulStop sends SIGTERM to an agent while a request is in flight
// through its proxy: the request completes in full, the listener stops
// accepting, and the process exits 0.
func TestGracefulStop(t *testing.T) {
	cases := []struct {
		name   string
		nodes  int
		victim func(tc *Cluster) *Agent
	}{
		{"single node", 1, func(tc *Cluster) *Agent { return tc.Agents[0] }},
		{"leader of three", 3, func(tc *Cluster) *Agent { return tc.Leader(30 * time.Second) }},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			tc := StartCluster(t, bin, tt.nodes)
			leader := tc.Leader(30 * time.Second)
			port := dataPort(t, tc.Agents)
			slow := startBackend(t, "slow")
			tc.putJSON(t, leader, "listeners", "web", map[string]any{"port": port})
			tc.putJSON(t, leader, "pools", "slow", poolOf(slow.Addr()))
			tc.putJSON(t, leader, "routes", "main", routeSpec("/", "main", 1, leg{"slow", 100}))
			victim := tt.victim(tc)
			client := newProxyClient(nil)
			waitServes(t, client, victim, port, "/", func(b string) bool { return b == "slow rev=1 route=main" }, "rev 1")

			type result struct {
				code int
				body string
				err  error
			}
			res := make(chan result, 1)
			go func() {
				code, body, err := get(newProxyClient(nil), proxyURL(victim, port, "/hold"))
				res <- result{code, body, err}
			}()
			select {
			case <-slow.arrived:
			case <-time.After(10 * time.Second):
				t.Fatal("the held request never reached the backend")
			}
			tc.Terminate(victim)
			termAt := time.Now()
			dataAddr := net.JoinHostPort(victim.IP, strconv.Itoa(port))
			// While the request is still held, new connections are refused.
			testutil.Eventually(t, 8*time.Second, "the stopping listener to refuse connections", func() error { return refused(dataAddr) })
			refusedAfter := time.Since(termAt)
			slow.Release()

			select {
			case r := <-res:
				if r.err != nil || r.code != http.StatusOK {
					t.Fatalf("in-flight request during SIGTERM: %d %v", r.code, r.err)
				}
				if r.body != string(holdBody) {
					t.Fatalf("in-flight request during SIGTERM: body of %d bytes, want the full %d", len(r.body), len(holdBody))
				}
			case <-time.After(20 * time.Second):
				t.Fatal("in-flight request during SIGTERM never completed")
			}
			completedAfter := time.Since(termAt)
			st := tc.WaitExit(victim, 40*time.Second)
			if !st.Success() {
				t.Fatalf("agent %s exited with %s after SIGTERM, want status 0", victim.ID, st)
			}
			t.Logf("after SIGTERM to %s: new connections refused within %s, held request completed (%d bytes) at %s, exit 0 by %s",
				victim.ID, refusedAfter.Round(time.Millisecond), len(holdBody), completedAfter.Round(time.Millisecond),
				time.Since(termAt).Round(time.Millisecond))
			for _, addr := range []string{dataAddr, victim.AdminAddr()} {
				if err := refused(addr); err != nil {
					t.Errorf("after exit: %v", err)
				}
			}
		})
	}
}

// TestHealthCheckEndToEnd fails one backend's /healthz: every node must
// judge it unhealthy and send it no traffic, and take it back once it
// recovers.
func TestHealthCheckEndToEnd(t *testing.T) {
	c := StartCluster(t, bin, 3)
	leader := c.Leader(30 * time.Second)
	port := dataPort(t, c.Agents)
	good, bad := startBackend(t, "good"), startBackend(t, "bad")
	c.putJSON(t, leader, "listeners", "web", map[string]any{"port": port})
	pool := poolOf(good.Addr(), bad.Addr())
	pool["health_check"] = map[string]any{"path": "/healthz", "interval": "200ms", "timeout": "100ms", "rise": 2, "fall": 2}
	c.putJSON(t, leader, "pools", "app", pool)
	c.putJSON(t, leader, "routes", "main", routeSpec("/", "main", 1, leg{"app", 100}))
	client := newProxyClient(nil)
	for _, a := range c.Agents {
		for _, name := range []string{"good", "bad"} {
			waitServes(t, client, a, port, "/", func(b string) bool { return strings.HasPrefix(b, name+" ") }, "backend "+name)
		}
	}
	c.waitHealth(t, "app", map[string]bool{good.Addr(): true, bad.Addr(): true})

	bad.healthFail.Store(true)
	c.waitHealth(t, "app", map[string]bool{good.Addr(): true, bad.Addr(): false})
	before := bad.hits.Load()
	const burst = 90
	for i := 0; i < burst; i++ {
		a := c.Agents[i%len(c.Agents)]
		code, body, err := get(client, proxyURL(a, port, "/"))
		if err != nil || code != http.StatusOK || !strings.HasPrefix(body, "good ") {
			t.Fatalf("request %d via %s with bad unhealthy: %d %q %v", i, a.ID, code, body, err)
		}
	}
	if n := bad.hits.Load() - before; n != 0 {
		t.Fatalf("the unhealthy backend received %d of %d proxied requests", n, burst)
	}

	bad.healthFail.Store(false)
	c.waitHealth(t, "app", map[string]bool{good.Addr(): true, bad.Addr(): true})
	for _, a := range c.Agents {
		waitServes(t, client, a, port, "/", func(b string) bool { return strings.HasPrefix(b, "bad ") }, "the recovered backend")
	}
}

// TestAllBackendsDown checks that a route whose pool has nothing to send
// to answers at once with the status that says why, never hangs.
func TestAllBackendsDown(t *testing.T) {
	c := StartCluster(t, bin, 3)
	leader := c.Leader(30 * time.Second)
	port := dataPort(t, c.Agents)
	c.putJSON(t, leader, "listeners", "web", map[string]any{"port": port})
	client := newProxyClient(nil)

	cases := []struct {
		name string
		pool func(t *testing.T) (spec map[string]any, down func())
		want []int // any of these
	}{
		{
			name: "health-checked backends stopped",
			pool: func(t *testing.T) (map[string]any, func()) {
				b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
				spec := poolOf(b1.Addr(), b2.Addr())
				spec["health_check"] = map[string]any{"path": "/healthz", "interval": "200ms", "timeout": "100ms", "rise": 2, "fall": 2}
				return spec, func() { b1.stop(); b2.stop() }
			},
			want: []int{http.StatusServiceUnavailable},
		},
		{
			name: "every backend draining",
			pool: func(t *testing.T) (map[string]any, func()) {
				b := startBackend(t, "b")
				return map[string]any{"backends": []map[string]any{{"addr": b.Addr(), "drain": true}}}, func() {}
			},
			want: []int{http.StatusServiceUnavailable},
		},
		{
			// Without health checks the proxy only learns by trying: a
			// refused connection is a failed backend (502); passive
			// ejection, where configured by default, may turn that
			// into no healthy backend (503). Either way, at once.
			name: "unchecked backends refusing connections",
			pool: func(t *testing.T) (map[string]any, func()) {
				return poolOf(deadAddr(t), deadAddr(t)), func() {}
			},
			want: []int{http.StatusBadGateway, http.StatusServiceUnavailable},
		},
	}
	for i, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			poolName, prefix := fmt.Sprintf("p%d", i), fmt.Sprintf("/c%d/", i)
			spec, down := tt.pool(t)
			c.putJSON(t, leader, "pools", poolName, spec)
			c.putJSON(t, leader, "routes", poolName, routeSpec(prefix, poolName, 1, leg{poolName, 100}))
			if _, checked := spec["health_check"]; checked {
				var addrs []string
				for _, b := range spec["backends"].([]map[string]any) {
					addrs = append(addrs, b["addr"].(string))
				}
				up := map[string]bool{}
				for _, a := range addrs {
					up[a] = true
				}
				c.waitHealth(t, poolName, up)
				for _, a := range c.Agents {
					waitServes(t, client, a, port, prefix, func(string) bool { return true }, "pool "+poolName)
				}
				down()
				for _, a := range addrs {
					up[a] = false
				}
				c.waitHealth(t, poolName, up)
			} else {
				down()
				// The route exists on every node once it answers anything
				// but the no-route 404.
				for _, a := range c.Agents {
					testutil.Eventually(t, 20*time.Second, a.ID+" to have route "+poolName, func() error {
						code, _, err := get(client, proxyURL(a, port, prefix+"x"))
						if err != nil || code == http.StatusNotFound {
							return fmt.Errorf("%d %v", code, err)
						}
						return nil
					})
				}
			}
			// Generous: a correctness check that nothing waits on a dead
			// backend, not a latency target.
			const bound = time.Second
			var slowest time.Duration
			seen := map[int]int{}
			for j := 0; j < 30; j++ {
				a := c.Agents[j%len(c.Agents)]
				start := time.Now()
				code, body, err := get(client, proxyURL(a, port, prefix+"x"))
				took := time.Since(start)
				slowest = max(slowest, took)
				seen[code]++
				if err != nil || !slices.Contains(tt.want, code) {
					t.Fatalf("request %d via %s: %d %q %v, want one of %v", j, a.ID, code, body, err, tt.want)
				}
				if took > bound {
					t.Fatalf("request %d via %s took %s to answer %d (bound %s)", j, a.ID, took, code, bound)
				}
			}
			t.Logf("%s: 30 requests answered %v (status: count), slowest %s", tt.name, seen, slowest.Round(time.Microsecond))
		})
	}
}
